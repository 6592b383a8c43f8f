"""ssh-audit against a real sshd running the rendered drop-in, as every node runs it.

The server is this test's own: Debian 12's OpenSSH on a random loopback address, with the
host keys Debian generates (RSA, ECDSA, Ed25519) and the gemnar drop-in read first, as
``/etc/ssh/sshd_config`` includes it. Before the drop-in, stock Debian 12 measured 6 fails
(3 NIST ECDH kex, the ECDSA host key, ``hmac-sha1``, ``hmac-sha1-etm``) and 18 warnings.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from localnode.services import port_open
from localnode.sshd import render_sshd_config
from provisioning.sshd import DOCUMENTED_WARNINGS, PER_SOURCE_MAX_STARTUPS, render_sshd_hardening
from tests.support.daemons import (
    Daemon,
    free_port,
    random_loopback_address,
    state_directory,
    wait_until,
)
from tests.support.tooling import require_executable

VENV_BIN = str(Path(__file__).resolve().parents[2] / ".venv" / "bin")


@pytest.fixture(params=["worker", "controller", "local"])
def sshd(request: pytest.FixtureRequest) -> Iterator[Daemon]:
    """A node's sshd: the prod drop-in with Debian's host keys (worker, controller), or the
    local stack's whole config as ``localnode.sshd`` renders it (its own Ed25519 host key)."""
    binary = require_executable("sshd", "/usr/sbin")
    keygen = require_executable("ssh-keygen")
    address = random_loopback_address()
    port = free_port(address)
    with state_directory("gemnar-harden-sshd-") as root:
        config = root / "sshd_config"
        if request.param == "local":
            (root / "ssh").mkdir()
            (root / "run").mkdir()
            subprocess.run([str(keygen), "-q", "-t", "ed25519", "-N", "", "-f",
                            str(root / "ssh" / "host_ed25519")], check=True)
            config.write_text(render_sshd_config(address, port, root, root / "keys", []))
        else:
            keys = []
            for kind in ("rsa", "ecdsa", "ed25519"):
                key = root / f"ssh_host_{kind}_key"
                subprocess.run([str(keygen), "-q", "-t", kind, "-N", "", "-f", str(key)],
                               check=True)
                keys.append(f"HostKey {key}")
            config.write_text(
                render_sshd_hardening(jump_host=request.param == "controller") + "\n".join([
                    f"ListenAddress {address}:{port}", *keys, f"PidFile {root / 'sshd.pid'}",
                    "UsePAM no", "",
                ]))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation
        subprocess.run([str(binary), "-t", "-f", str(config)], check=True)
        log = root / "sshd.log"
        with open(log, "ab") as out:
            process = subprocess.Popen([str(binary), "-D", "-e", "-f", str(config)],
                                       stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        daemon = Daemon("sshd", process, address, port, log)
        try:
            wait_until(lambda: port_open(address, port), daemon)
            yield daemon
        finally:
            daemon.stop()


def audit(daemon: Daemon) -> dict[str, list[str]]:
    """ssh-audit's fails and warnings, each as ``algorithm: note``."""
    tool = require_executable("ssh-audit", VENV_BIN)
    result = subprocess.run([str(tool), "-j", "-p", str(daemon.port), daemon.address],
                            capture_output=True, text=True, check=False, timeout=120)
    report = json.loads(result.stdout)
    found: dict[str, list[str]] = {"fail": [], "warn": []}
    for section in ("kex", "key", "enc", "mac"):
        for entry in report[section]:
            for level in ("fail", "warn"):
                found[level] += [f"{entry['algorithm']}: {note}"
                                 for note in entry.get("notes", {}).get(level, [])]
    return found


def test_ssh_audit_no_fails_and_only_documented_warnings(sshd: Daemon) -> None:
    found = audit(sshd)
    print(f"\nssh-audit: {len(found['fail'])} fails, {len(found['warn'])} warnings: "
          f"{found['warn']}")
    assert found["fail"] == []
    assert set(found["warn"]) <= set(DOCUMENTED_WARNINGS), found["warn"]


def test_unauthenticated_connections_are_limited_per_source(sshd: Daemon) -> None:
    """PerSourceMaxStartups: one source's next unauthenticated connection is dropped at once,
    while those already open still get the server's banner."""
    held: list[socket.socket] = []
    try:
        for _ in range(PER_SOURCE_MAX_STARTUPS):
            conn = socket.create_connection((sshd.address, sshd.port), timeout=10)
            assert conn.recv(64).startswith(b"SSH-2.0-")
            held.append(conn)
        extra = socket.create_connection((sshd.address, sshd.port), timeout=10)
        held.append(extra)
        # Refused at once: sshd's notice instead of a banner, then the connection closes.
        assert extra.recv(64) == b"Exceeded MaxStartups\r\n"
        assert extra.recv(64) == b""
    finally:
        for conn in held:
            conn.close()
