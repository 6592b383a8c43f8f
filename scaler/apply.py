"""The child that runs one scaler ``up``: ``python -m scaler.apply --stack S --record DIR``.

It is started in a session of its own (``scaler.process_group``) and does nothing until the
scaler has recorded its process group and sends one JSON line on stdin,
``{"targets": [...], "message": "..."}``; end of input instead means the scaler died first, and
the child leaves without touching the stack. It writes the engine's events to
``DIR/events.jsonl`` (one line per resource step, the evidence tests read) and, when the
update ends either way, ``DIR/result.json`` (with the strays it removed). Before the program
declares anything, it removes the workers the platform has and the state does not
(``strays``): inside the program, the update's lock is held. Exit status: 0 done, 75 stack
locked, 1 failed.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from pulumi.automation import EngineEvent
from pulumi.automation.errors import CommandError, ConcurrentUpdateError

from strays.sweep import platform_for, sweep

LOCKED = 75


def event_record(event: EngineEvent) -> dict[str, Any] | None:
    """The part of an engine event worth keeping: which resource, which step."""
    for kind in ("resource_pre_event", "res_outputs_event", "res_op_failed_event"):
        body = getattr(event, kind, None)
        if body is not None:
            meta = body.metadata
            return {"kind": kind, "urn": meta.urn, "type": meta.type, "op": str(meta.op.value)}
    summary = getattr(event, "summary_event", None)
    if summary is not None:
        changes = {str(getattr(k, "value", k)): v for k, v in summary.resource_changes.items()}
        return {"kind": "summary", "changes": changes}
    return None


def _writer(handle: TextIO) -> Any:
    def on_event(event: EngineEvent) -> None:
        record = event_record(event)
        if record is not None:
            # When the engine reported the step (the event's own timestamp is whole seconds):
            # what the scaling-reaction benchmark splits an update's time by.
            record["at"] = round(time.time(), 3)
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()

    return on_event


def sweep_strays(stack_name: str, stack: Any, swept: list[str]) -> None:
    """Remove the platform's workers the state does not hold (``strays``). Called inside the
    program, so under this update's lock: no other update can be creating a worker that is
    not in the state yet. A failure is logged, not raised: cleaning up must not block a
    scale-up, and the next tick lists again."""
    import pulumi

    if pulumi.runtime.is_dry_run():
        return
    try:
        name, platform = platform_for(stack_name, stack.get_all_config())
        found = sweep(name, platform, stack.export_stack, log=pulumi.log.warn)
    except Exception as error:
        pulumi.log.warn(f"strays not swept: {type(error).__name__}: {error}")
        return
    swept.extend(node.key for node in found)


def run(stack_name: str, record_dir: Path, order: dict[str, Any]) -> int:
    # The real engine: this child is the writer.
    from engine.workspace import open_stack, project_program

    targets = list(order.get("targets") or [])
    opened: list[Any] = []
    program = project_program(opened)
    swept: list[str] = []

    def sweep_then_program() -> None:
        sweep_strays(stack_name, opened[0], swept)
        program()

    stack = open_stack(stack_name, program=sweep_then_program)
    opened.append(stack)
    result: dict[str, Any] = {"status": "failed", "detail": ""}
    with (record_dir / "events.jsonl").open("a", encoding="utf-8") as events:
        try:
            stack.up(
                target=targets or None,
                target_dependents=True if targets else None,
                message=str(order.get("message", "scaler")),
                on_event=_writer(events),
                color="never",
            )
            result = {"status": "done", "detail": ""}
        except ConcurrentUpdateError as error:
            result = {"status": "locked", "detail": str(error)[-2000:]}
        except CommandError as error:
            result = {"status": "failed", "detail": str(error)[-2000:]}
    result["swept"] = swept
    (record_dir / "result.json").write_text(json.dumps(result), encoding="utf-8")
    print(result["detail"], file=sys.stderr, flush=True)
    return {"done": 0, "locked": LOCKED}.get(result["status"], 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scaler.apply", description=__doc__)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args(argv)
    # An interrupt is for the CLI (it cancels the update cleanly); this host must outlive it.
    # A no-op handler, not SIG_IGN: the CLI must not inherit an ignored SIGINT.
    signal.signal(signal.SIGINT, lambda _signum, _frame: None)
    line = sys.stdin.readline()
    if not line.strip():
        return 3  # the scaler died before it let us start: touch nothing
    args.record.mkdir(parents=True, exist_ok=True)
    return run(args.stack, args.record, json.loads(line))


if __name__ == "__main__":
    sys.exit(main())
