"""The controller's view of a stack (``GEMNAR_STACK_CONFIG=state``), through the real CLI.

An operator's working copy runs ``up`` on a file backend; a second "machine" (another state
directory, no stack file anywhere) opens the stack as the controller's scaler does: the config
must be the operator's (secrets included), a count request must land in the controller's own
working copy and never in the project, and a stack missing from the backend must be an error,
never a new empty stack. Also the lab's scaler secrets, derived from the backend environment.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pulumi
import pytest
from pulumi import automation as auto

from engine.errors import StackNotDeployed
from engine.local_stack import scaler_secrets
from engine.toolchain import PROJECT_ROOT, ToolPaths, tool_paths
from engine.workspace import (
    CONFIG_FROM_STATE,
    CONFIG_SOURCE_VARIABLE,
    PROJECT_NAME,
    open_stack,
    pulumi_command,
    pulumi_env,
)
from tests.support.tooling import missing


def program() -> None:
    pulumi.export("workerCount", pulumi.Config("gemnar").get_int("workerCount"))


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if not tool_paths().cli.exists():
        missing(f"the Pulumi CLI at {tool_paths().cli}")
    (tmp_path / "backend").mkdir()
    url = f"file://{tmp_path / 'backend'}"
    monkeypatch.setenv("PULUMI_BACKEND_URL", url)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "test-passphrase")
    return url


def operator_up(tmp_path: Path, name: str) -> None:
    paths = ToolPaths(cache_dir=tool_paths().cache_dir, state_dir=tmp_path / "operator")
    work = tmp_path / "checkout"
    work.mkdir()
    shutil.copyfile(PROJECT_ROOT / "Pulumi.yaml", work / "Pulumi.yaml")
    paths.pulumi_home.mkdir(parents=True)
    stack = auto.create_or_select_stack(
        stack_name=name, project_name=PROJECT_NAME, program=program,
        opts=auto.LocalWorkspaceOptions(work_dir=str(work), env_vars=pulumi_env(paths),
                                        pulumi_home=str(paths.pulumi_home),
                                        pulumi_command=pulumi_command(paths)))
    stack.set_config("gemnar:workerCount", auto.ConfigValue("3"))
    stack.set_config("gemnar:secretSeed", auto.ConfigValue("seed-from-operator", secret=True))
    assert stack.up().outputs["workerCount"].value == 3


def test_the_controller_opens_the_operators_stack_from_its_state(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    operator_up(tmp_path, "labx")
    monkeypatch.setenv(CONFIG_SOURCE_VARIABLE, CONFIG_FROM_STATE)
    controller = ToolPaths(cache_dir=tool_paths().cache_dir, state_dir=tmp_path / "controller")
    stack = open_stack("labx", program=program, paths=controller)
    config = stack.get_all_config()
    assert config["gemnar:workerCount"].value == "3"
    assert config["gemnar:secretSeed"].value == "seed-from-operator"
    stack.set_config("gemnar:workerCount", auto.ConfigValue("4"))
    copy = controller.state_dir / "work" / "labx" / "Pulumi.labx.yaml"
    assert "workerCount: \"4\"" in copy.read_text() or "workerCount: '4'" in copy.read_text()
    assert not (PROJECT_ROOT / "Pulumi.labx.yaml").exists()
    # Opened again without a refresh (the update child): the request is still there.
    assert open_stack("labx", program=program, paths=controller).get_all_config()[
        "gemnar:workerCount"].value == "4"
    # A tick refreshes: the stack's recorded config (the count the last update applied).
    assert open_stack("labx", program=program, paths=controller, refresh_config=True
                      ).get_all_config()["gemnar:workerCount"].value == "3"
    with pytest.raises(auto.errors.StackNotFoundError):
        open_stack("nosuchstack", program=program, paths=controller)


def test_a_stack_in_its_first_update_is_not_deployed_yet(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The controller's first tick can come while the first `up` runs: no config recorded."""
    paths = ToolPaths(cache_dir=tool_paths().cache_dir, state_dir=tmp_path / "operator")
    paths.pulumi_home.mkdir(parents=True)
    (tmp_path / "checkout").mkdir()
    shutil.copyfile(PROJECT_ROOT / "Pulumi.yaml", tmp_path / "checkout" / "Pulumi.yaml")
    auto.create_stack("fresh", project_name=PROJECT_NAME, program=program,
                      opts=auto.LocalWorkspaceOptions(
                          work_dir=str(tmp_path / "checkout"), env_vars=pulumi_env(paths),
                          pulumi_home=str(paths.pulumi_home),
                          pulumi_command=pulumi_command(paths)))
    monkeypatch.setenv(CONFIG_SOURCE_VARIABLE, CONFIG_FROM_STATE)
    controller = ToolPaths(cache_dir=tool_paths().cache_dir, state_dir=tmp_path / "controller")
    with pytest.raises(StackNotDeployed, match="no finished update"):
        open_stack("fresh", program=program, paths=controller)


@pytest.mark.parametrize(("env", "expected"), [
    ({}, {}),
    ({"PULUMI_BACKEND_URL": "s3://b?endpoint=192.0.2.2:9000", "AWS_ACCESS_KEY_ID": "a",
      "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "us-east-1", "PULUMI_CONFIG_PASSPHRASE": "p"},
     {"gemnar:scalerBackendUrl": "s3://b?endpoint=192.0.2.2:9000",
      "gemnar:scalerBackendAccessKeyId": "a", "gemnar:scalerBackendSecretAccessKey": "s",
      "gemnar:scalerConfigPassphrase": "p"}),
    ({"VULTR_API_KEY": "v", "HOME": "/root"}, {"gemnar:scalerVultrApiKey": "v"}),
])
def test_scaler_secrets_from_an_environment(env: dict[str, str], expected: dict[str, str]
                                            ) -> None:
    assert scaler_secrets(env) == expected
