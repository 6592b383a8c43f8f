"""A node's own OpenSSH server on its loopback address.

In prod the membership, readiness and drain commands reach nodes over SSH (workers through
the controller as jump host). A local node runs a real sshd on its 127.x address so those
commands take the same path. The server accepts only the local stack's key and puts the
node's own ``bin`` directory first on PATH, where prod has ``/usr/local/sbin``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from localnode.supervise import running, start_detached, stop_pidfile, wait_for
from provisioning.sshd import render_sshd_hardening

SSHD = "/usr/sbin/sshd"


def render_sshd_config(
    address: str, port: int, node_dir: Path, authorized_keys: Path, path_dirs: list[Path]
) -> str:
    path = ":".join([*(str(d) for d in path_dirs), "/usr/local/sbin", "/usr/sbin", "/usr/bin",
                     "/sbin", "/bin"])
    # The prod drop-in first (sshd keeps the first value of each keyword), then what only a
    # server living in a state dir needs. Every local node may be a jump host here.
    return render_sshd_hardening(jump_host=True) + "\n".join(
        [
            f"ListenAddress {address}:{port}",
            f"HostKey {node_dir / 'ssh' / 'host_ed25519'}",
            f"PidFile {node_dir / 'run' / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized_keys}",
            # PAM and strict modes assume a system install; this server lives in a state dir.
            "UsePAM no",
            "StrictModes no",
            f"SetEnv PATH={path}",
            "LogLevel ERROR",
            "",
        ]
    )


def start_sshd(
    address: str, port: int, node_dir: Path, authorized_keys: Path, path_dirs: list[Path]
) -> None:
    ssh_dir = node_dir / "ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    (node_dir / "run").mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
    host_key = ssh_dir / "host_ed25519"
    if not host_key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True
        )
    config = ssh_dir / "sshd_config"
    config.write_text(render_sshd_config(address, port, node_dir, authorized_keys, path_dirs))
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
    pidfile = node_dir / "run" / "sshd.pid"
    if running(pidfile):
        return
    # -D keeps sshd in the foreground of its own session, so the pid we record is the one
    # sshd writes to its PidFile (the same file); -e logs to stderr.
    # Not under the restarting supervisor: sshd writes this pid file itself.
    start_detached([SSHD, "-D", "-e", "-f", str(config)], pidfile, node_dir / "log" / "sshd.log",
                   restart=False)
    wait_for(lambda: running(pidfile), 10, f"sshd on {address}:{port}")


def stop_sshd(node_dir: Path) -> None:
    stop_pidfile(node_dir / "run" / "sshd.pid")
