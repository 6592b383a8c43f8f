"""Open Pulumi stacks of this project through the Automation API, isolated from the user.

The program runs inline (``program.main`` in this process), so the CLI needs no separate
Python language host: the Automation API serves the program to the engine over gRPC.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from pulumi import automation as auto

from engine.errors import StackNotDeployed
from engine.local_stack import (
    ensure_generated_secrets,
    is_local_stack,
    prepare_work_dir,
    scaler_secrets,
    stack_platform,
    sync_secrets,
)
from engine.toolchain import PROJECT_ROOT, ToolPaths, tool_paths
from lab import agent, s3

T = TypeVar("T")
PROJECT_NAME = "gemnar"
# The local stack's config secrets are encrypted with this passphrase. It protects nothing
# real (every local secret is generated per machine) and is documented in the README; prod
# stacks must set PULUMI_CONFIG_PASSPHRASE themselves.
LOCAL_PASSPHRASE = "gemnar-local-stack"
# Where a stack's config comes from. Unset: the project's stack file (or the local working
# copy). "state" (set by the controller's scaler and healer units): the release there is
# read-only and holds no stack file of its own, so the working copy lives under the state
# directory and takes the config the stack's last update recorded (`pulumi config refresh`).
CONFIG_SOURCE_VARIABLE = "GEMNAR_STACK_CONFIG"
CONFIG_FROM_STATE = "state"


def pulumi_env(paths: ToolPaths | None = None, passphrase: str | None = None) -> dict[str, str]:
    """Environment for every Pulumi invocation: project-owned home and backend, no phoning home."""
    paths = paths or tool_paths()
    env = {
        "PULUMI_HOME": str(paths.pulumi_home),
        # The environment's backend wins: the operator's `pulumi login` target for prod, the
        # controller's scaler.env (from stack secrets). Else the project's own file backend.
        "PULUMI_BACKEND_URL": os.environ.get("PULUMI_BACKEND_URL") or paths.backend_url,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "false",
        "PULUMI_CONFIG_PASSPHRASE": passphrase
        or os.environ.get("PULUMI_CONFIG_PASSPHRASE", LOCAL_PASSPHRASE),
    }
    return env


def _lab_service(stack_name: str, paths: ToolPaths | None, load: Callable[[Path], T | None],
                 what: str) -> T:
    """The record of one of a lab stack's host services, or an error saying how to start it."""
    record = load((paths or tool_paths()).state_dir / "lab" / stack_name)
    if record is None:
        raise RuntimeError(
            f"lab stack {stack_name} has no {what}: run `bash tools/lab.sh` "
            "(or `python -m lab.hypervisor net-up --stack NAME`) first"
        )
    return record


def lab_backend_env(stack_name: str, paths: ToolPaths | None = None) -> dict[str, str]:
    """A lab stack's state backend: its S3 server inside the lab network, as prod's is Vultr
    Object Storage (docs/lab.md). The caller must run inside the lab's namespace."""
    return _lab_service(stack_name, paths, s3.load, "S3 server for its state").backend_env()


def lab_hypervisor_token(stack_name: str, paths: ToolPaths | None = None) -> str:
    """The token of the lab stack's hypervisor API (``lab/agent.py``)."""
    return _lab_service(stack_name, paths, agent.load, "hypervisor agent").token


def stack_env(stack_name: str, work_dir: Path, paths: ToolPaths | None = None) -> dict[str, str]:
    """``pulumi_env`` with the backend the stack's platform keeps its state in."""
    env = pulumi_env(paths)
    if stack_platform(stack_name, work_dir) == "lab":
        env |= lab_backend_env(stack_name, paths)
    return env


def pulumi_command(paths: ToolPaths | None = None) -> auto.PulumiCommand:
    """The project's CLI, refusing a missing binary or one of another version."""
    paths = paths or tool_paths()
    if not paths.cli.exists():
        raise RuntimeError(
            f"Pulumi CLI not found at {paths.cli}; run `bash tools/bootstrap.sh` first"
        )
    return auto.PulumiCommand(root=str(paths.cli_dir))


def open_stack(
    stack_name: str,
    program: Callable[[], None] | None = None,
    work_dir: Path = PROJECT_ROOT,
    extra_env: Mapping[str, str] | None = None,
    paths: ToolPaths | None = None,
    refresh_config: bool = False,
) -> auto.Stack:
    """Create or select ``stack_name`` of the project in ``work_dir`` with an inline program.

    With ``$GEMNAR_STACK_CONFIG=state`` (the controller): select only, never create, in a
    working copy under the state directory whose config is the last update's, fetched when
    the copy is new or ``refresh_config`` asks (a scaler tick; its update child then uses the
    copy with the tick's count request in it).
    """
    paths = paths or tool_paths()
    if os.environ.get(CONFIG_SOURCE_VARIABLE) == CONFIG_FROM_STATE:
        return open_deployed_stack(stack_name, program, paths, refresh_config)
    paths.backend_dir.mkdir(parents=True, exist_ok=True)
    paths.pulumi_home.mkdir(parents=True, exist_ok=True)
    existing_work = paths.state_dir / "work" / stack_name
    if (
        work_dir == PROJECT_ROOT
        and (existing_work / f"Pulumi.{stack_name}.yaml").exists()
        and not (PROJECT_ROOT / f"Pulumi.{stack_name}.yaml").exists()
    ):
        # A local stack made from another directory (tests): keep using its working copy.
        work_dir = existing_work
    local = is_local_stack(stack_name, work_dir)
    if local and work_dir != existing_work:
        # Keeps the salt and generated secrets out of the repository (see engine.local_stack).
        work_dir = prepare_work_dir(stack_name, paths.state_dir, work_dir)
    opened: list[auto.Stack] = []
    if program is None:
        program = project_program(opened)

    env = stack_env(stack_name, Path(work_dir), paths) | dict(extra_env or {})
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(work_dir),
        env_vars=env,
        pulumi_home=str(paths.pulumi_home),
        pulumi_command=pulumi_command(paths),
    )
    stack = auto.create_or_select_stack(
        stack_name=stack_name, project_name=PROJECT_NAME, program=program, opts=opts
    )
    opened.append(stack)
    if local:
        ensure_generated_secrets(stack)
        if stack_platform(stack_name, work_dir) == "lab":
            # What the operator sets by hand on prod (docs/prod.md): the scaler's backend, its
            # keys and the passphrase, here the lab's S3 server's (new keys on a new server).
            # And the hypervisor API's token, the lab's Vultr API key.
            sync_secrets(stack, scaler_secrets(
                {**lab_backend_env(stack_name, paths),
                 "PULUMI_CONFIG_PASSPHRASE": env["PULUMI_CONFIG_PASSPHRASE"]})
                | {"gemnar:labHypervisorToken": lab_hypervisor_token(stack_name, paths)})
        stack_file = Path(work_dir) / f"Pulumi.{stack_name}.yaml"
        if stack_file.exists():
            stack_file.chmod(0o600)  # as prepare_work_dir left it, whatever Pulumi rewrote
    return stack


def open_deployed_stack(
    stack_name: str,
    program: Callable[[], None] | None,
    paths: ToolPaths,
    refresh_config: bool,
) -> auto.Stack:
    """The deployed stack from a working copy ``<state>/work/<stack>`` (see ``open_stack``)."""
    work_dir = paths.state_dir / "work" / stack_name
    fresh = not (work_dir / f"Pulumi.{stack_name}.yaml").exists()
    work_dir.mkdir(parents=True, exist_ok=True)
    work_dir.chmod(0o700)
    shutil.copyfile(PROJECT_ROOT / "Pulumi.yaml", work_dir / "Pulumi.yaml")
    paths.pulumi_home.mkdir(parents=True, exist_ok=True)
    opened: list[auto.Stack] = []
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(work_dir),
        env_vars=pulumi_env(paths),
        pulumi_home=str(paths.pulumi_home),
        pulumi_command=pulumi_command(paths),
    )
    # Selecting never creates: a stack missing from the backend is an error, not a new stack
    # (a tick once made an empty `prod` in a local backend this way).
    stack = auto.select_stack(stack_name=stack_name, project_name=PROJECT_NAME,
                              program=program or project_program(opened), opts=opts)
    opened.append(stack)
    if fresh or refresh_config:
        try:
            stack.refresh_config()
        except auto.errors.CommandError as error:
            if "no previous deployment" in str(error):
                raise StackNotDeployed(
                    f"stack {stack_name} has no finished update yet (its first `up` is still "
                    "running)") from error
            raise
    return stack


def project_program(opened: list[auto.Stack]) -> Callable[[], None]:
    """The project's program, reading the stack's last outputs through this workspace."""
    from program import main  # the project's wiring, imported lazily

    def run() -> None:
        # The worker count's source of truth is the stack's own last outputs (worker_count.py).
        main(last_outputs=lambda: {k: v.value for k, v in opened[0].outputs().items()})

    return run


def repair_interrupted_checkpoint(stack_name: str, paths: ToolPaths | None = None) -> list[Path]:
    """Remove the empty attributes file a CLI killed while saving leaves in the file backend.

    The file backend (gocloud.dev fileblob, as the CLI v3.274.1 pins it: blob/fileblob
    ``writer.Close``) saves a checkpoint by writing a temporary file, then truncating and
    rewriting ``<checkpoint>.attrs``, then renaming the temporary file into place. A CLI killed
    between the truncation and the write leaves an empty ``.attrs``, and every later command
    fails with "failed to load checkpoint: EOF", although the checkpoint is the previous
    complete one (the rename had not happened). Without the file the reader takes default
    attributes. Only an empty file is removed, only in this project's own file backend (an S3
    backend writes an object and its metadata at once). Call it only when no ``pulumi`` of
    this stack can be running.
    """
    paths = paths or tool_paths()
    stacks = paths.backend_dir / ".pulumi" / "stacks" / PROJECT_NAME
    removed = []
    for name in (f"{stack_name}.json.attrs", f"{stack_name}.json.gz.attrs"):
        attrs = stacks / name
        if attrs.is_file() and attrs.stat().st_size == 0:
            attrs.unlink()
            removed.append(attrs)
    return removed
