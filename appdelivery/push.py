"""Push the bundled app artifact to one worker and install it there.

Sent only when the node lacks it (the remote side checks for the file by name, which is the
content hash); installed with the rendered ``gemnar-install-app``, which verifies the
sha256 and restarts the app when its secrets are in place. Exit status is the deploy's.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from appdelivery.artifact import build, sha256_of
from appdelivery.source import AppSource
from appdelivery.ssh import Endpoint, as_root, known_hosts, ssh_argv

INSTALL = "/usr/local/sbin/gemnar-install-app"
ARTIFACTS_DIR = "/var/lib/gemnar/artifacts"


class PushError(RuntimeError):
    pass


@dataclass(frozen=True)
class PushPlan:
    artifact: Path
    sha256: str
    target: Endpoint
    jump: Endpoint | None
    artifacts_dir: str = ARTIFACTS_DIR
    install: str = INSTALL
    # Once the node holds its secrets the install restarts the app; then wait for it.
    ready: str | None = None
    secrets_file: str | None = None

    @property
    def remote_path(self) -> str:
        return f"{self.artifacts_dir}/{self.artifact.name}"

    def upload_command(self) -> str:
        path = shlex.quote(self.remote_path)
        # Only when missing: an unchanged app is never sent twice to the same node.
        script = (
            f"set -e; umask 077; mkdir -p {shlex.quote(self.artifacts_dir)}; "
            f"if [ -e {path} ]; then cat >/dev/null; echo present; "
            f"else cat > {path}.part && mv -f {path}.part {path}; echo sent; fi"
        )
        return as_root(script, self.target.user)

    def install_command(self) -> str:
        script = f"{shlex.quote(self.install)} {shlex.quote(self.remote_path)} {self.sha256}"
        if self.ready and self.secrets_file:
            script += (f" && if [ -f {shlex.quote(self.secrets_file)} ]; then "
                       f"{shlex.quote(self.ready)} {shlex.quote(self.target.host)}; fi")
        return as_root(script, self.target.user)


def plan(project_root: Path, expected_hash: str, target: Endpoint, jump: Endpoint | None,
         cache: Path | None = None, artifacts_dir: str = ARTIFACTS_DIR,
         install: str = INSTALL, ready: str | None = None,
         secrets_file: str | None = None) -> PushPlan:
    source = AppSource.of_project(project_root)
    if source.content_hash != expected_hash:
        raise PushError(
            f"the app changed since the deploy was planned (now {source.content_hash}, "
            f"planned {expected_hash}); run the deploy again"
        )
    artifact = build(source, cache)
    return PushPlan(artifact, sha256_of(artifact), target, jump, artifacts_dir, install, ready,
                    secrets_file)


def run(push: PushPlan, private_key: str | None) -> str:
    """Upload (when missing) and install; returns what the node said."""
    with tempfile.TemporaryDirectory(prefix="gemnar-push-") as scratch:
        directory = Path(scratch)
        hosts = directory / "known_hosts"
        hosts.write_text(known_hosts([e for e in (push.target, push.jump) if e]))
        identity = None
        if private_key:
            identity = directory / "id"
            fd = os.open(identity, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(private_key.rstrip("\n") + "\n")
        outputs = []
        for command, stdin in ((push.upload_command(), push.artifact), (push.install_command(),
                                                                        None)):
            argv = ssh_argv(push.target, push.jump, hosts, identity, command)
            with open(stdin, "rb") if stdin else open(os.devnull, "rb") as source:
                result = subprocess.run(argv, stdin=source, capture_output=True, check=False)
            text = (result.stdout + result.stderr).decode(errors="replace").strip()
            if result.returncode != 0:
                if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or (
                        "Host key verification failed" in text):
                    raise PushError(
                        f"{push.target.host}: its SSH host key is not the pinned one; the "
                        "deploy stops here. If the machine was legitimately rebuilt, replace "
                        f"its host-key pin; otherwise investigate.\n{text}")
                raise PushError(f"{push.target.host}: {command!r} failed:\n{text}")
            outputs.append(text)
        return "\n".join(outputs)
