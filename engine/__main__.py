"""Command line for the project's stacks: ``python -m engine up|preview|refresh|destroy|outputs``.

It runs the project's program through the Automation API with the project-owned Pulumi home
and file backend, streaming the engine's progress to the terminal.
"""

from __future__ import annotations

import argparse
import json
import sys

from pulumi import automation as auto

from engine.workspace import open_stack

ACTIONS = ("up", "preview", "refresh", "destroy", "outputs")


def _print_outputs(outputs: auto.OutputMap) -> None:
    for key, value in sorted(outputs.items()):
        shown = "[secret]" if value.secret else json.dumps(value.value)
        print(f"  {key}: {shown}")


def run(action: str, stack_name: str) -> int:
    """Carry out ``action`` on ``stack_name`` and return a process exit code."""
    stack = open_stack(stack_name)
    if action == "up":
        result = stack.up(on_output=print, color="never")
        print(f"\nupdate {result.summary.result}: {result.summary.resource_changes}")
        _print_outputs(result.outputs)
        site = result.outputs.get("siteUrl")
        if site is not None:
            print(f"\nSite: {site.value}")
    elif action == "preview":
        stack.preview(on_output=print, color="never")
    elif action == "refresh":
        stack.refresh(on_output=print, color="never")
    elif action == "destroy":
        stack.destroy(on_output=print, color="never")
    else:
        _print_outputs(stack.outputs())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("--stack", default="local", help="stack name (default: local)")
    args = parser.parse_args(argv)
    try:
        return run(args.action, args.stack)
    except auto.ConcurrentUpdateError:
        print(f"stack {args.stack} is locked by another update; try again", file=sys.stderr)
        return 75
    except auto.CommandError as err:
        print(f"pulumi {args.action} failed:\n{err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
