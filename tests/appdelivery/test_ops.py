"""The controller's operations delivery over real SSH: the project at the deployed revision,
its venv from wheels, the pinned Pulumi CLI and the command provider plugin; sent once.

The "controller" is a real sshd on a random loopback address whose paths live under a temp
root; ``gemnar-install-ops`` is the rendered script.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from appdelivery.operations import OpsSource, runtime_requirements
from appdelivery.ops_push import plan_ops, run_ops
from appdelivery.source import AppSource
from engine import toolchain
from engine.toolchain import PROJECT_ROOT, tool_paths
from provisioning import toolchain as node_toolchain
from provisioning.files import render_install_ops
from provisioning.settings import ControllerPaths, ControllerSettings
from tests.support import daemons
from tests.support.ssh_node import Provisioned, ssh_node
from tests.support.tooling import missing


def test_node_pins_equal_the_deployer_pins() -> None:
    assert node_toolchain.PULUMI_CLI_VERSION == toolchain.PULUMI_CLI_VERSION
    assert node_toolchain.COMMAND_PROVIDER_VERSION == toolchain.COMMAND_PROVIDER_VERSION


def test_runtime_requirements_leave_out_the_test_tools() -> None:
    text = "# Engine\npulumi==3\n# Application (app/)\nDjango==5\n# Tests and checks\npytest==9\n"
    assert runtime_requirements(text) == ("pulumi==3", "Django==5")


Controller = Provisioned[ControllerSettings]


@pytest.fixture
def controller() -> Iterator[Controller]:
    with ssh_node("gemnar-ops-", lambda root: ControllerPaths.under(root).commands_dir) as ssh:
        settings = ControllerSettings(
            private_address=ssh.address, vpc_subnet="127.0.0.0/8", memory_mb=1024, vcpus=1,
            max_workers=2, paths=ControllerPaths.under(ssh.root),
        )
        # The node's python is the system one, as on Debian 12.
        settings = replace(settings, paths=replace(settings.paths,
                                                   system_python="/usr/bin/python3"))
        script = render_install_ops(settings)
        daemons.write_file(script.path, script.content, 0o755)
        yield Controller(ssh, settings)


def _push(node: Controller, scratch: Path) -> str:
    cli = tool_paths().cli
    if not cli.exists():
        missing(f"the Pulumi CLI at {cli}")
    paths = node.settings.paths
    plan = plan_ops(PROJECT_ROOT, OpsSource.of_project(PROJECT_ROOT).content_hash, cli,
                    toolchain.PULUMI_CLI_VERSION,
                    node.ssh.endpoint(node.ssh.host_key),
                    ops_dir=paths.ops_artifacts_dir,
                    install=str(Path(paths.commands_dir) / "gemnar-install-ops"),
                    app_cache_dir=f"{paths.scaler_state_dir}/artifacts")
    return run_ops(plan, node.ssh.private_key, scratch)


# The uid systemd gives the scaler's dynamic user (any uid other than root's will do).
SCALER_UID = 61234


def test_controller_gets_project_venv_cli_and_plugins_once(
    controller: Controller, tmp_path: Path
) -> None:
    paths = controller.settings.paths
    state = Path(paths.scaler_state_dir)
    # The scaler has run already (a redeploy): its state directory is its dynamic user's. What
    # the root deploy adds there must take that owner, or the scaler cannot read it (found on
    # the lab: the seeded app artifact, PermissionError in the scaler's `up`).
    state.mkdir(parents=True, mode=0o700)
    os.chown(state, SCALER_UID, SCALER_UID)
    first = _push(controller, tmp_path)
    assert first.splitlines()[:2] == ["cli sent", "bundle sent"]
    wrong_owner = {str(path.relative_to(state)): path.lstat().st_uid for path in state.rglob("*")
                   if path.lstat().st_uid != SCALER_UID}
    assert wrong_owner == {}, wrong_owner
    cli = Path(paths.tools_dir) / f"pulumi-cli-v{toolchain.PULUMI_CLI_VERSION}" / "bin" / "pulumi"
    env = {**os.environ, "PULUMI_HOME": str(Path(paths.scaler_state_dir) / "pulumi-home"),
           "PULUMI_SKIP_UPDATE_CHECK": "true"}
    version = subprocess.run([str(cli), "version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"v{toolchain.PULUMI_CLI_VERSION}"
    plugins = subprocess.run([str(cli), "plugin", "ls"], capture_output=True, text=True,
                             check=True, env=env).stdout
    rows = [line.split() for line in plugins.splitlines()]
    assert ["command", "resource", toolchain.COMMAND_PROVIDER_VERSION] in [r[:3] for r in rows]
    project = Path(paths.project_dir)
    assert project.is_symlink()
    assert (project / "scaler" / "__main__.py").exists()
    imported = subprocess.run(
        [str(project / ".venv" / "bin" / "python"), "-c",
         "import pulumi, httpx, yaml, ediri_vultr, pulumi_command, scaler.cli, healthmon"],
        cwd=project, capture_output=True, text=True, check=False)
    assert imported.returncode == 0, imported.stderr
    # The app artifact is seeded where the controller's scaler looks for it.
    assert first.splitlines()[-1] == "app sent"
    seed = state / "artifacts" / AppSource.of_project(PROJECT_ROOT).artifact_name
    # A seed left with root's owner (before this fix) gets the directory's owner back.
    os.chown(seed, 0, 0)
    second = _push(controller, tmp_path / "again")
    assert second.splitlines()[:2] == ["cli present", "bundle present"]
    assert second.splitlines()[-1] == "app present"
    assert seed.stat().st_uid == SCALER_UID
