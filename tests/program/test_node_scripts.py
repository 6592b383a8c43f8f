"""The scripts the program's remote commands run, run for real by /bin/sh here.

Host secrets: any input change re-runs the remote command (upstream pulumi-command 1.2.1 runs
`create` again on every update, provider/pkg/provider/remote/commandController.go), so the
script itself decides whether the hook, which restarts services, has anything to do.

SSH gate: it must pass only once a real sshd answers key exchanges, and retry failed ones
itself (upstream does not, through a jump host: provider/pkg/provider/remote/connection.go).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from components.host_secrets import write_script
from components.ssh_gate import wait_for_ssh_script
from tests.command_provider.harness import free_port, keygen, loopback_address, running_sshd
from tests.command_provider.relay import tcp_relay
from tests.support.tooling import missing, require_executable


def _needs_root() -> None:
    if os.geteuid() != 0:
        missing("root (the script creates a root-owned directory)")


def _hook(tmp_path: Path, target: Path, exit_code: int = 0) -> Path:
    hook = tmp_path / "hook"
    hook.write_text(f'#!/bin/sh\ncat {target} >> {tmp_path / "hook.log"}\nexit {exit_code}\n')
    hook.chmod(0o755)
    return hook


def _run(script: str, content: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", script], input=content, text=True, capture_output=True, timeout=60
    )


def test_hook_and_then_run_only_when_the_content_changed(tmp_path: Path) -> None:
    _needs_root()
    target = tmp_path / "etc" / "secrets.env"
    hook_log, then_log = tmp_path / "hook.log", tmp_path / "then.log"
    script = write_script(str(target), str(_hook(tmp_path, target)), f"echo x >> {then_log}")

    assert _run(script, "A='1'\n").returncode == 0
    assert hook_log.read_text() == "A='1'\n" and then_log.read_text() == "x\n"
    assert target.stat().st_mode & 0o777 == 0o600

    # Same content (say, after a rotated SSH key re-ran the command): nothing restarts.
    again = _run(script, "A='1'\n")
    assert again.returncode == 0 and "unchanged" in again.stdout
    assert hook_log.read_text() == "A='1'\n" and then_log.read_text() == "x\n"

    assert _run(script, "A='2'\n").returncode == 0
    assert hook_log.read_text() == "A='1'\nA='2'\n" and then_log.read_text() == "x\nx\n"


def test_a_failed_hook_is_retried_next_time(tmp_path: Path) -> None:
    _needs_root()
    target = tmp_path / "etc" / "secrets.env"
    failing = write_script(str(target), str(_hook(tmp_path, target, exit_code=3)))
    assert _run(failing, "A='1'\n").returncode == 3
    working = write_script(str(target), str(_hook(tmp_path, target)))
    assert _run(working, "A='1'\n").returncode == 0
    assert (tmp_path / "hook.log").read_text() == "A='1'\nA='1'\n"


def test_a_missing_hook_is_no_error(tmp_path: Path) -> None:
    _needs_root()
    target = tmp_path / "etc" / "secrets.env"
    assert _run(write_script(str(target), str(tmp_path / "absent")), "A='1'\n").returncode == 0
    assert target.read_text() == "A='1'\n"


def test_ssh_gate_passes_on_a_real_sshd_despite_a_dropped_handshake(tmp_path: Path) -> None:
    require_executable("ssh-keyscan")
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(keygen(tmp_path / "id").with_suffix(".pub").read_text())
    with (
        running_sshd(tmp_path / "sshd", authorized) as sshd,
        tcp_relay(sshd.address, (sshd.address, sshd.port), drop_first=1) as flaky,
    ):
        result = _run(wait_for_ssh_script(flaky.address, flaky.port, deadline_s=60))
        assert result.returncode == 0, result.stderr
        assert "answers SSH" in result.stdout
        # The dropped connection did not count; three good key exchanges did.
        assert flaky.stats.dropped == 1 and flaky.stats.forwarded >= 3


def test_ssh_gate_gives_up_at_its_deadline(tmp_path: Path) -> None:
    require_executable("ssh-keyscan")
    address = loopback_address()
    started = time.monotonic()
    result = _run(wait_for_ssh_script(address, free_port(address), deadline_s=3))
    assert result.returncode == 1
    assert "no steady SSH handshake" in result.stderr
    assert time.monotonic() - started < 30
