"""Tests for the runners against real processes and throwaway sshd servers, without the engine.

The SSH behaviour asserted is upstream's, read from pulumi-command v1.2.1
provider/pkg/provider/remote/connection.go (dialWithRetry, Dial, SSHConfig),
connection_unix.go (SSH_AUTH_SOCK) and commandOutputs.go (Setenv, failure text), on
golang.org/x/crypto v0.48.0 ssh/client.go (NewClientConn closes the connection on a failed
handshake; Dial's timeout covers the TCP connect only) and ssh/client_auth.go (each method
name is tried once), and pulumi sdk go/common/util/retry/until.go (pauses).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.command_provider.execution import Cancelled, CancelRegistry, CommandFailed
from tools.command_provider.local_runner import LocalInvocation, run_local
from tools.command_provider.ssh_runner import (
    DialError,
    Endpoint,
    RemoteInvocation,
    SetenvRefused,
    load_private_key,
    run_remote,
)

from .harness import (
    Sshd,
    current_user,
    free_port,
    keygen,
    loopback_address,
    running_agent,
    running_sshd,
    trusted_key,
)
from .relay import tcp_relay


@dataclass(frozen=True)
class Site:
    """A client key and two real sshd servers trusting it: a jump host and a target."""

    key_path: Path
    jump: Sshd
    target: Sshd

    @property
    def key(self) -> str:
        return self.key_path.read_text()

    def endpoint(self, server: Sshd, **changes: object) -> Endpoint:
        fields: dict[str, object] = {
            "host": server.address,
            "port": server.port,
            "user": current_user(),
            "private_key": self.key,
            "dial_error_limit": 3,
        }
        fields.update(changes)
        return Endpoint(**fields)  # type: ignore[arg-type]


@contextmanager
def site(tmp_path: Path, target_extra: tuple[str, ...] = ()) -> Iterator[Site]:
    key = trusted_key(tmp_path)
    authorized = tmp_path / "authorized_keys"
    with (
        running_sshd(tmp_path / "jump", authorized) as jump,
        running_sshd(tmp_path / "target", authorized, extra=target_extra) as target,
    ):
        yield Site(key, jump, target)


def quiet(_stream: str, _line: str) -> None:
    pass


def test_cancel_kills_running_local_command() -> None:
    cancel = CancelRegistry()
    threading.Timer(0.3, cancel.cancel_all).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        run_local(LocalInvocation(command="sleep 30"), lambda _s, _l: None, cancel)
    assert time.monotonic() - started < 10


def test_loads_openssh_ed25519_and_pem_rsa_keys(tmp_path: Path) -> None:
    ed25519 = keygen(tmp_path / "ed").read_text()
    trusted_key(tmp_path, "rsa", "rsa", "secret-pw")
    assert load_private_key(ed25519, None).get_name() == "ssh-ed25519"
    rsa = load_private_key((tmp_path / "rsa").read_text(), "secret-pw")
    assert rsa.get_name() == "ssh-rsa"


def test_dial_error_limit_n_allows_n_plus_one_attempts() -> None:
    # reachedDialingErrorLimit(dials, limit) is `dials > limit`; the message counts `try`.
    address = loopback_address()
    endpoint = Endpoint(
        host=address, port=free_port(address), dial_error_limit=2, per_dial_timeout=1
    )
    notes: list[str] = []
    with pytest.raises(DialError, match=r"^after 2 failed attempts: .*refused"):
        run_remote(
            RemoteInvocation(endpoint, "true"),
            lambda st, line: notes.append(f"{st}:{line}"),
            CancelRegistry(),
        )
    assert notes == ["status:Dial 1/2 failed: retrying", "status:Dial 2/2 failed: retrying"]


@pytest.mark.daemons
def test_remote_run_with_rsa_key_and_stdin(tmp_path: Path) -> None:
    trusted_key(tmp_path, "rsa", "rsa")
    authorized = tmp_path / "authorized_keys"
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
            RemoteInvocation(endpoint, "cat; echo err >&2", stdin="in\n"),
            lambda stream, line: lines.append(f"{stream}:{line}"),
            CancelRegistry(),
        )
        assert (result.stdout, result.stderr) == ("in", "err")
        assert "stderr:err" in lines


@pytest.mark.daemons
def test_proxied_handshake_failure_is_fatal_but_direct_is_retried(tmp_path: Path) -> None:
    # The target drops its first TCP connection before the SSH banner, like an sshd that
    # restarts during first boot. Directly, each retry dials anew and the second one works.
    # Through a jump host, upstream dials the tunnel once and retries the handshake on it after
    # the first failure closed it: every retry fails and the command never runs.
    with site(tmp_path) as s:
        target = (s.target.address, s.target.port)
        with tcp_relay(s.target.address, target, drop_first=1) as flaky:
            direct = s.endpoint(s.target, host=flaky.address, port=flaky.port)
            assert (
                run_remote(RemoteInvocation(direct, "echo ok"), quiet, CancelRegistry()).stdout
                == "ok"
            )
            assert flaky.stats.dropped == 1 and flaky.stats.forwarded == 1
        with tcp_relay(s.target.address, target, drop_first=1) as flaky:
            proxied = s.endpoint(
                s.target, host=flaky.address, port=flaky.port, proxy=s.endpoint(s.jump)
            )
            with pytest.raises(
                DialError, match=r"^proxy: after 3 failed attempts: ssh: handshake failed: EOF$"
            ):
                run_remote(RemoteInvocation(proxied, "echo ok"), quiet, CancelRegistry())
            # One tunnel, one TCP connection to the target: the retries never dialled again.
            assert flaky.stats.accepted == 1


@pytest.mark.daemons
def test_handshake_has_no_timeout(tmp_path: Path) -> None:
    # perDialTimeout becomes ssh.ClientConfig.Timeout, which ssh.Dial applies to the TCP
    # connect only: a server slower than it to start the handshake is waited for.
    with site(tmp_path) as s:
        target = (s.target.address, s.target.port)
        with tcp_relay(s.target.address, target, delay=2.5) as slow:
            endpoint = s.endpoint(
                s.target, host=slow.address, port=slow.port, per_dial_timeout=1, dial_error_limit=0
            )
            started = time.monotonic()
            result = run_remote(RemoteInvocation(endpoint, "echo late"), quiet, CancelRegistry())
            assert result.stdout == "late"
            assert time.monotonic() - started >= 2.5
            assert slow.stats.accepted == 1


@pytest.mark.daemons
def test_dead_agent_socket_fails_even_with_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SSHConfig dials the agent whenever SSH_AUTH_SOCK is set, before any dial, unretried.
    with site(tmp_path) as s:
        dead = tmp_path / "gone.sock"
        monkeypatch.setenv("SSH_AUTH_SOCK", str(dead))
        with pytest.raises(DialError, match=f"^dial unix {dead}: connect: no such file"):
            run_remote(RemoteInvocation(s.endpoint(s.target), "true"), quiet, CancelRegistry())
        # Through a proxy the target's config is built first; the proxy's own is prefixed.
        proxied = s.endpoint(
            s.target, agent_socket_path=None, proxy=s.endpoint(s.jump, agent_socket_path=str(dead))
        )
        monkeypatch.delenv("SSH_AUTH_SOCK")
        with pytest.raises(DialError, match=r"^proxy: dial unix"):
            run_remote(RemoteInvocation(proxied, "true"), quiet, CancelRegistry())


@pytest.mark.daemons
def test_agent_keys_used_without_a_key_and_skipped_with_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with site(tmp_path) as s, running_agent(tmp_path / "agent", s.key_path) as sock:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        keyless = s.endpoint(s.target, private_key=None)
        assert (
            run_remote(RemoteInvocation(keyless, "echo agent"), quiet, CancelRegistry()).stdout
            == "agent"
        )
        # A wrong key plus a good agent: Go tries "publickey" once (the given key) and never
        # offers the agent's keys, so authentication fails.
        wrong = keygen(tmp_path / "wrong").read_text()
        endpoint = s.endpoint(s.target, private_key=wrong, dial_error_limit=0)
        with pytest.raises(DialError, match=r"attempted methods \[none publickey\]"):
            run_remote(RemoteInvocation(endpoint, "true"), quiet, CancelRegistry())


@pytest.mark.daemons
def test_environment_is_setenv_refused_by_stock_sshd(tmp_path: Path) -> None:
    with site(tmp_path) as s:
        notes: list[str] = []
        invocation = RemoteInvocation(s.endpoint(s.target), "echo ran", {"V": "1"})
        with pytest.raises(SetenvRefused, match='could not set environment variable "V"'):
            run_remote(invocation, lambda st, _line: notes.append(st), CancelRegistry())
        assert notes == ["error"]
        # The previous outputs are only a warning: the command runs without them.
        notes.clear()
        previous = RemoteInvocation(
            s.endpoint(s.target),
            'echo "[$PULUMI_COMMAND_STDOUT]"',
            previous_output={"PULUMI_COMMAND_STDOUT": "old"},
        )
        result = run_remote(previous, lambda st, _line: notes.append(st), CancelRegistry())
        assert result.stdout == "[]"
        assert notes == ["warning", "stdout"]


@pytest.mark.daemons
def test_environment_arrives_when_accept_env_allows(tmp_path: Path) -> None:
    with site(tmp_path, target_extra=("AcceptEnv V PULUMI_COMMAND_*",)) as s:
        invocation = RemoteInvocation(
            s.endpoint(s.target),
            'echo "$V|$PULUMI_COMMAND_STDOUT|${PULUMI_COMMAND_STDERR-unset}"',
            {"V": "it's"},
            previous_output={"PULUMI_COMMAND_STDOUT": "old"},
        )
        assert run_remote(invocation, quiet, CancelRegistry()).stdout == "it's|old|unset"


@pytest.mark.daemons
def test_remote_failure_text(tmp_path: Path) -> None:
    # commandOutputs.go: "%w: running %q:\n%s" with *ssh.ExitError and combined output.
    with site(tmp_path) as s:
        command = "echo err >&2; exit 4"
        with pytest.raises(CommandFailed) as failure:
            run_remote(RemoteInvocation(s.endpoint(s.target), command), quiet, CancelRegistry())
        assert str(failure.value) == f'Process exited with status 4: running "{command}":\nerr\n'
