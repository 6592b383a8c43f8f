"""A stale SSH_AUTH_SOCK stops the program before any resource, with a message saying why.

Upstream pulumi-command 1.2.1 dials the agent for every remote command whenever the variable is
set, key or not (provider/pkg/provider/remote/connection.go `SSHConfig`,
connection_unix.go `tryGetDefaultAgentSocket`), and fails the command if it cannot.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pulumi
import pytest

import program
from components.ssh_agent import StaleAgentSocket, check_agent_socket
from tests.program.harness import BASE_VALUES, RECORDER


@pytest.mark.parametrize(
    ("environ", "answers", "stale"),
    [
        ({}, False, False),
        ({"SSH_AUTH_SOCK": ""}, False, False),
        ({"SSH_AUTH_SOCK": "/run/agent.sock"}, True, False),
        ({"SSH_AUTH_SOCK": "/run/agent.sock"}, False, True),
    ],
)
def test_only_a_set_socket_that_does_not_answer_is_stale(
    environ: dict[str, str], answers: bool, stale: bool
) -> None:
    if stale:
        with pytest.raises(StaleAgentSocket, match=r"SSH_AUTH_SOCK=/run/agent\.sock"):
            check_agent_socket(environ, lambda _path: answers)
    else:
        check_agent_socket(environ, lambda _path: answers)


def test_real_sockets(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    with pytest.raises(StaleAgentSocket):
        check_agent_socket({"SSH_AUTH_SOCK": str(path)})
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(1)
        check_agent_socket({"SSH_AUTH_SOCK": str(path)})
    # Left behind by an agent that has exited: the file exists, nothing listens.
    assert path.exists()
    with pytest.raises(StaleAgentSocket):
        check_agent_socket({"SSH_AUTH_SOCK": str(path)})


def test_main_stops_before_any_resource(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "gone.sock"))
    values = {f"gemnar:{k}": v for k, v in BASE_VALUES.items()}
    pulumi.runtime.set_all_config(values, secret_keys=["gemnar:secretSeed"])
    RECORDER.reset()
    try:
        with pytest.raises(StaleAgentSocket, match="env -u SSH_AUTH_SOCK"):
            program.main()
        assert RECORDER.seen == []
    finally:
        pulumi.runtime.set_all_config({}, secret_keys=[])
