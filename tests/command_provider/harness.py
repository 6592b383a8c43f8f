"""Test harness: the real Pulumi engine with the stand-in registered, and throwaway sshd servers."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from pulumi import automation as auto
from pulumi_command import remote

from engine.toolchain import PROJECT_ROOT, tool_paths
from tests.support.net import free_port, loopback_address, port_open
from tests.support.ssh_node import keygen
from tests.support.tooling import missing
from tests.support.waiting import wait_until
from tools.command_provider import PROVIDER_VERSION

SSHD = Path("/usr/sbin/sshd")
PASSPHRASE = "command-provider-test"


@dataclass(frozen=True)
class Engine:
    home: Path
    backend: Path
    cli_root: Path
    work_dir: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            "PULUMI_HOME": str(self.home),
            "PULUMI_BACKEND_URL": f"file://{self.backend}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        }

    def stack(self, name: str, program: Callable[[], None]) -> auto.Stack:
        opts = auto.LocalWorkspaceOptions(
            work_dir=str(self.work_dir),
            pulumi_home=str(self.home),
            env_vars=self.env,
            pulumi_command=auto.PulumiCommand(root=str(self.cli_root)),
        )
        return auto.create_or_select_stack(
            stack_name=name, project_name="command-provider-test", program=program, opts=opts
        )

    def failed_up(self, name: str, program: Callable[[], None]) -> tuple[str, str]:
        """``up`` of a throwaway stack that must fail: its error and the engine's output. The
        stack is destroyed and removed either way."""
        stack = self.stack(name, program)
        log: list[str] = []
        try:
            with pytest.raises(auto.CommandError) as failure:
                stack.up(on_output=log.append)
            return str(failure.value), "".join(log)
        finally:
            stack.destroy()
            stack.workspace.remove_stack(name, force=True)


def cli_root() -> Path:
    root = tool_paths().cli_dir
    if not (root / "bin" / "pulumi").exists():
        missing(f"the Pulumi CLI at {root}/bin/pulumi")
    return root


def render_launcher(into: Path) -> Path:
    template = (PROJECT_ROOT / "tools" / "pulumi-resource-command.in").read_text()
    launcher = into / "pulumi-resource-command"
    python = PROJECT_ROOT / ".venv" / "bin" / "python"
    launcher.write_text(
        template.replace("@PYTHON@", str(python)).replace("@ROOT@", str(PROJECT_ROOT))
    )
    launcher.chmod(0o755)
    return launcher


def prepare_engine(base: Path) -> Engine:
    root = cli_root()
    engine = Engine(base / "home", base / "backend", root, base / "project")
    for directory in (engine.home, engine.backend, engine.work_dir, base / "launcher"):
        directory.mkdir(parents=True)
    launcher = render_launcher(base / "launcher")
    subprocess.run(
        [
            str(root / "bin" / "pulumi"),
            "plugin",
            "install",
            "resource",
            "command",
            PROVIDER_VERSION,
            "--file",
            str(launcher),
        ],
        env={**os.environ, **engine.env},
        check=True,
        capture_output=True,
        text=True,
    )
    return engine


def trusted_key(base: Path, name: str = "id_ed25519", key_type: str = "ed25519",
                passphrase: str = "") -> Path:
    """A client key pair ``base/name`` (PEM for rsa) and ``base/authorized_keys`` trusting it,
    for ``running_sshd``."""
    if key_type == "ed25519":
        key = keygen(base / name)
    else:
        subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-b", "2048", "-m", "PEM",
                        "-N", passphrase, "-f", str(base / name)], check=True)
        key = base / name
    (base / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    return key


@dataclass(frozen=True)
class Sshd:
    address: str
    port: int
    host_key: str  # public host key, "ssh-ed25519 AAAA... comment"
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def connection(self, key: Path, **fields: Any) -> remote.ConnectionArgs:
        """This server as the current user with ``key``; ``fields`` add to or override it."""
        args: dict[str, Any] = {"host": self.address, "port": self.port, "user": current_user(),
                                "private_key": key.read_text(), **fields}
        return remote.ConnectionArgs(**args)


@contextmanager
def running_sshd(
    base: Path, authorized_keys: Path, log_level: str = "VERBOSE", extra: Sequence[str] = ()
) -> Iterator[Sshd]:
    """An sshd on a random loopback address; DEBUG1 logging also leaks into sessions' stderr."""
    if not SSHD.exists():
        missing("openssh-server (`sshd`)")
    base.mkdir(parents=True)
    host_key = keygen(base / "host_ed25519")
    address = loopback_address()
    port = free_port(address)
    config = base / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized_keys}",
                "PidFile none",
                "UsePAM no",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "AllowTcpForwarding yes",
                f"LogLevel {log_level}",
                *extra,
                "",
            ]
        )
    )
    log = base / "sshd.log"
    # sshd refuses to start without its privilege separation directory.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    with log.open("wb") as log_sink:
        process = _spawn_sshd(config, address, port, log_sink)
    try:
        wait_until(
            lambda: port_open(address, port, timeout_s=0.2),
            timeout_s=10,
            what=f"sshd listening on {address}:{port}",
            abort=lambda: None if process.poll() is None else "sshd exited",
            detail=lambda: log.read_text(errors="replace"),
        )
        public = (base / "host_ed25519.pub").read_text().strip()
        yield Sshd(address, port, public, log)
    finally:
        _stop_group(process)


def _spawn_sshd(config: Path, address: str, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(SSHD),
            "-D",
            "-e",
            "-f",
            str(config),
            "-p",
            str(port),
            "-o",
            f"ListenAddress={address}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        # Own process group, so teardown also ends per-connection session processes.
        start_new_session=True,
    )


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def current_user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


@contextmanager
def running_agent(base: Path, key: Path) -> Iterator[Path]:
    """An `ssh-agent` on its own socket holding `key`; yields the socket path."""
    if not Path("/usr/bin/ssh-agent").exists():
        missing("openssh-client (`ssh-agent`)")
    base.mkdir(parents=True, exist_ok=True)
    sock = base / "agent.sock"
    process = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(sock.exists, timeout_s=10, what="ssh-agent's socket",
                   abort=lambda: None if process.poll() is None else "ssh-agent exited")
        subprocess.run(
            ["ssh-add", "-q", str(key)],
            env={**os.environ, "SSH_AUTH_SOCK": str(sock)},
            check=True,
            capture_output=True,
        )
        yield sock
    finally:
        _stop_group(process)
