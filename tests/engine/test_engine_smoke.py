"""Smoke test of the bootstrapped toolchain: the real engine through the Automation API.

A throwaway stack on a temporary file backend runs an inline program holding a
``pulumi_command.local.Command``; ``up`` must run the command and export its stdout, and
``destroy`` must run its delete command.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pulumi
import pulumi_command
import pytest
from pulumi import automation as auto

from engine.toolchain import COMMAND_PROVIDER_VERSION, PULUMI_CLI_VERSION, tool_paths
from engine.workspace import pulumi_command as project_cli
from engine.workspace import pulumi_env
from tests.support.tooling import missing


@pytest.fixture(scope="module")
def cli() -> auto.PulumiCommand:
    paths = tool_paths()
    if not paths.cli.exists():
        missing(f"the Pulumi CLI at {paths.cli}")
    return project_cli(paths)


def test_cli_version_is_pinned(cli: auto.PulumiCommand) -> None:
    out = subprocess.run(
        [str(tool_paths().cli), "version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == f"v{PULUMI_CLI_VERSION}"


def test_command_plugin_is_registered() -> None:
    paths = tool_paths()
    out = subprocess.run(
        [str(paths.cli), "plugin", "ls"],
        capture_output=True,
        text=True,
        check=True,
        env=pulumi_env(paths) | {"PATH": "/usr/bin:/bin"},
    ).stdout
    rows = [line.split() for line in out.splitlines()]
    assert ["command", "resource", COMMAND_PROVIDER_VERSION] in [row[:3] for row in rows], out


def test_inline_program_with_local_command(cli: auto.PulumiCommand, tmp_path: Path) -> None:
    marker = tmp_path / "deleted"

    def program() -> None:
        cmd = pulumi_command.local.Command(
            "greet",
            create="printf 'hello %s' \"$WHO\"",
            delete=f"touch {marker}",
            environment={"WHO": "engine"},
        )
        pulumi.export("greeting", cmd.stdout)

    paths = tool_paths()
    env = pulumi_env(paths) | {"PULUMI_BACKEND_URL": f"file://{tmp_path / 'backend'}"}
    (tmp_path / "backend").mkdir()
    stack = auto.create_or_select_stack(
        stack_name="smoke",
        project_name="gemnar-smoke",
        program=program,
        opts=auto.LocalWorkspaceOptions(
            env_vars=env, pulumi_home=str(paths.pulumi_home), pulumi_command=cli
        ),
    )
    try:
        result = stack.up()
        assert result.outputs["greeting"].value == "hello engine"
        assert result.summary.resource_changes == {"create": 2}
        # A second run changes nothing.
        assert stack.preview().change_summary.get(auto.OpType.SAME) == 2
    finally:
        stack.destroy()
        stack.workspace.remove_stack("smoke")
    assert marker.exists(), "destroy did not run the delete command"
