"""Tests for the runners against real processes and a throwaway sshd, without the engine."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from tools.command_provider.execution import Cancelled, CancelRegistry
from tools.command_provider.local_runner import LocalInvocation, run_local
from tools.command_provider.ssh_runner import (
    Endpoint,
    RemoteInvocation,
    load_private_key,
    run_remote,
)

from .harness import current_user, free_port, keygen, loopback_address, running_sshd


def test_cancel_kills_running_local_command() -> None:
    cancel = CancelRegistry()
    threading.Timer(0.3, cancel.cancel_all).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        run_local(LocalInvocation(command="sleep 30"), lambda _s, _l: None, cancel)
    assert time.monotonic() - started < 10


def test_loads_openssh_ed25519_and_pem_rsa_keys(tmp_path: Path) -> None:
    ed25519 = keygen(tmp_path / "ed").read_text()
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "rsa",
            "-b",
            "2048",
            "-m",
            "PEM",
            "-N",
            "secret-pw",
            "-f",
            str(tmp_path / "rsa"),
        ],
        check=True,
    )
    assert load_private_key(ed25519, None).get_name() == "ssh-ed25519"
    rsa = load_private_key((tmp_path / "rsa").read_text(), "secret-pw")
    assert rsa.get_name() == "ssh-rsa"


def test_dial_gives_up_after_error_limit() -> None:
    address = loopback_address()
    endpoint = Endpoint(
        host=address, port=free_port(address), dial_error_limit=2, per_dial_timeout=1
    )
    with pytest.raises(ConnectionError, match="after 2 attempt"):
        run_remote(RemoteInvocation(endpoint, "true"), lambda _s, _l: None, CancelRegistry())


@pytest.mark.daemons
def test_remote_run_with_rsa_key_stdin_env_and_failure(tmp_path: Path) -> None:
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "rsa",
            "-b",
            "2048",
            "-m",
            "PEM",
            "-N",
            "",
            "-f",
            str(tmp_path / "rsa"),
        ],
        check=True,
    )
    authorized = tmp_path / "authorized_keys"
    authorized.write_text((tmp_path / "rsa.pub").read_text())
    with running_sshd(tmp_path / "sshd", authorized) as sshd:
        endpoint = Endpoint(
            host=sshd.address,
            port=sshd.port,
            user=current_user(),
            private_key=(tmp_path / "rsa").read_text(),
            host_key=sshd.host_key,
        )
        lines: list[str] = []
        result = run_remote(
            RemoteInvocation(endpoint, 'echo "$A"; cat; echo err >&2', {"A": "it's"}, "in\n"),
            lambda stream, line: lines.append(f"{stream}:{line}"),
            CancelRegistry(),
        )
        assert (result.stdout, result.stderr) == ("it's\nin", "err")
        assert "stderr:err" in lines
        with pytest.raises(Exception, match="exit status 4"):
            run_remote(RemoteInvocation(endpoint, "exit 4"), lambda _s, _l: None, CancelRegistry())
