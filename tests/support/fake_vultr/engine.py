"""The real Pulumi engine running the prod program (platform ``vultr``) with Vultr faked.

``prepare(base)`` makes a throwaway backend and two throwaway Pulumi homes, each with the
project's CLI and the fake ``vultr`` 2.27.1 plugin registered as ``tools/bootstrap.sh``
registers the command stand-in (``pulumi plugin install resource NAME VERSION --file``):

- ``setup``: ``command`` 1.2.1 is ``hosts.py`` (the stand-in with its runners faked), used
  only to bring the stack to a worker count, since the fake instances have no SSH;
- ``real``: ``command`` 1.2.1 is the unmodified stand-in (``tools/command_provider``), for
  the previews a test asserts on.

Both homes share the backend, so a stack made in one is previewed in the other. The program
is the project's own, run inline by the Automation API (``engine.workspace``).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pulumi import automation as auto

from engine.toolchain import COMMAND_PROVIDER_VERSION, PROJECT_ROOT, ToolPaths, tool_paths
from engine.workspace import PROJECT_NAME, project_program
from tests.support.tooling import missing
from worker_count import GENERATION_KEY, next_generation

from . import PROVIDER_NAME, PROVIDER_VERSION

PASSPHRASE = "fake-vultr-prod-preview"
STACK = "prod"
LAUNCHER = """#!/bin/sh
PYTHONPATH="{root}${{PYTHONPATH:+:$PYTHONPATH}}"
export PYTHONPATH
exec "{python}" -m {module} "$@"
"""


@dataclass(frozen=True)
class ProdEngine:
    base: Path
    # The project's own CLI (tools/bootstrap.sh installs it).
    tools: ToolPaths = field(default_factory=tool_paths)

    @property
    def backend(self) -> Path:
        return self.base / "backend"

    def home(self, kind: str) -> Path:
        return self.base / f"home-{kind}"

    @property
    def work_dir(self) -> Path:
        return self.base / "project"

    def env(self, kind: str) -> dict[str, str]:
        return {
            "PULUMI_HOME": str(self.home(kind)),
            "PULUMI_BACKEND_URL": f"file://{self.backend}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        }

    def stack(self, kind: str) -> auto.Stack:
        """The prod stack, its program the project's own, its plugins those of ``kind``."""
        opened: list[auto.Stack] = []
        stack = auto.create_or_select_stack(
            stack_name=STACK, project_name=PROJECT_NAME, program=project_program(opened),
            opts=auto.LocalWorkspaceOptions(
                work_dir=str(self.work_dir), env_vars=self.env(kind),
                pulumi_home=str(self.home(kind)),
                pulumi_command=auto.PulumiCommand(root=str(self.tools.cli_dir))),
        )
        opened.append(stack)
        return stack


def _launcher(into: Path, module: str) -> Path:
    path = into / f"{module.replace('.', '-')}.sh"
    path.write_text(LAUNCHER.format(root=PROJECT_ROOT, python=PROJECT_ROOT / ".venv/bin/python",
                                    module=module))
    path.chmod(0o755)
    return path


def _install(cli: Path, env: dict[str, str], name: str, version: str, launcher: Path) -> None:
    subprocess.run([str(cli), "plugin", "install", "resource", name, version, "--file",
                    str(launcher)], env={**os.environ, **env}, check=True,
                   capture_output=True, text=True)


def prepare(base: Path, operator_values: dict[str, str], secret_seed: str) -> ProdEngine:
    """Homes, backend and a working copy holding Pulumi.prod.yaml plus ``operator_values``."""
    engine = ProdEngine(base)
    cli = engine.tools.cli
    if not cli.exists():
        missing(f"the Pulumi CLI at {cli}")
    launchers = base / "launchers"
    for directory in (engine.backend, engine.work_dir, launchers,
                      engine.home("setup"), engine.home("real")):
        directory.mkdir(parents=True)
    vultr = _launcher(launchers, "tests.support.fake_vultr")
    commands = {"setup": _launcher(launchers, "tests.support.fake_vultr.hosts"),
                "real": _launcher(launchers, "tools.command_provider")}
    for kind, command in commands.items():
        _install(cli, engine.env(kind), PROVIDER_NAME, PROVIDER_VERSION, vultr)
        _install(cli, engine.env(kind), "command", COMMAND_PROVIDER_VERSION, command)
    (engine.work_dir / "Pulumi.yaml").write_text((PROJECT_ROOT / "Pulumi.yaml").read_text())
    committed = yaml.safe_load((PROJECT_ROOT / "Pulumi.prod.yaml").read_text())
    # Lists and objects as YAML values, as `pulumi config set --path` would store them.
    committed["config"].update({f"gemnar:{k}": json.loads(v) if v[:1] in "[{" else v
                                for k, v in operator_values.items()})
    (engine.work_dir / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(committed))
    engine.stack("setup").set_config("gemnar:secretSeed", auto.ConfigValue(secret_seed, True))
    return engine


def request_count(stack: auto.Stack, workers: int) -> None:
    """Ask for ``workers`` as an operator does (``python -m scaler set-count``)."""
    generation = next_generation({k: v.value for k, v in stack.outputs().items()})
    stack.set_config("gemnar:workerCount", auto.ConfigValue(str(workers)))
    stack.set_config(f"gemnar:{GENERATION_KEY}", auto.ConfigValue(str(generation)))
