"""One node reached over SSH by the system client: upload a file once, run a command.

Uploads are named by content (the caller's hash in the file name): a file already on the node
is not sent again. A host key other than the pinned one ends the session with a clear error.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from appdelivery.ssh import Endpoint, as_root, known_hosts, ssh_argv


class PushError(RuntimeError):
    pass


@dataclass(frozen=True)
class Session:
    target: Endpoint
    jump: Endpoint | None
    known_hosts_file: Path
    identity: Path | None

    def run(self, command: str, stdin: Path | None = None) -> str:
        argv = ssh_argv(self.target, self.jump, self.known_hosts_file, self.identity,
                        as_root(command, self.target.user))
        with open(stdin, "rb") if stdin else open(os.devnull, "rb") as source:
            result = subprocess.run(argv, stdin=source, capture_output=True, check=False)
        text = (result.stdout + result.stderr).decode(errors="replace").strip()
        if result.returncode != 0:
            if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or (
                    "Host key verification failed" in text):
                raise PushError(
                    f"{self.target.host}: its SSH host key is not the pinned one; the deploy "
                    "stops here. If the machine was legitimately rebuilt, replace its host-key "
                    f"pin; otherwise investigate.\n{text}")
            raise PushError(f"{self.target.host}: {command!r} failed:\n{text}")
        return text

    def upload(self, local: Path, remote_dir: str,
               owner_like: str | None = None) -> tuple[str, str]:
        """Send ``local`` to ``remote_dir`` unless a file of that name is there already;
        returns (remote path, "sent" or "present").

        With ``owner_like``, the directory and the file belong to that path's owner (followed
        through a symlink) before the file appears under its name: a service's state
        directory whose owner is a dynamic user (the scaler's) is chowned by systemd only
        when its top level has the wrong owner, so a root-owned file added later stays
        unreadable to the service.
        """
        path = f"{remote_dir}/{local.name}"
        quoted, directory = shlex.quote(path), shlex.quote(remote_dir)

        def own(target: str) -> str:
            return f"chown --reference={shlex.quote(owner_like)} {target}; " if owner_like else ""

        said = self.run(
            f"set -e; umask 077; mkdir -p {directory}; {own(directory)}"
            f"if [ -e {quoted} ]; then cat >/dev/null; {own(quoted)}echo present; "
            f"else cat > {quoted}.part; {own(quoted + '.part')}"
            f"mv -f {quoted}.part {quoted}; echo sent; fi",
            stdin=local,
        )
        return path, said.splitlines()[-1]


@contextmanager
def session(target: Endpoint, jump: Endpoint | None, private_key: str | None) -> Iterator[Session]:
    with tempfile.TemporaryDirectory(prefix="gemnar-push-") as scratch:
        directory = Path(scratch)
        hosts = directory / "known_hosts"
        hosts.write_text(known_hosts([e for e in (target, jump) if e]))
        identity = None
        if private_key:
            identity = directory / "id"
            fd = os.open(identity, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(private_key.rstrip("\n") + "\n")
        yield Session(target, jump, hosts, identity)
