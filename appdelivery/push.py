"""Push the bundled app artifact to one worker and install it there.

Sent only when the node lacks it (the remote side checks for the file by name, which is the
content hash); installed with the rendered ``gemnar-install-app``, which verifies the
sha256 and restarts the app when its secrets are in place. Exit status is the deploy's.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from appdelivery.artifact import build, sha256_of
from appdelivery.session import PushError, session
from appdelivery.source import AppSource
from appdelivery.ssh import Endpoint

INSTALL = "/usr/local/sbin/gemnar-install-app"
ARTIFACTS_DIR = "/var/lib/gemnar/artifacts"


__all__ = ["ARTIFACTS_DIR", "INSTALL", "PushError", "PushPlan", "plan", "run"]


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
    # gemnar-worker-roll: drain first, install, healthy again (or rolled back).
    roll: str | None = None
    worker: str = ""
    address: str = ""
    roll_timeout_s: int = 300
    release: str = ""

    @property
    def remote_path(self) -> str:
        return f"{self.artifacts_dir}/{self.artifact.name}"

    def install_command_plain(self) -> str:
        """Install, then (once the node holds its secrets) wait for the app to be healthy.

        With ``roll``: the worker's turn in a rolling update (drain, install, healthy or
        rolled back); a worker whose app has not started yet just installs."""
        if self.roll:
            return shlex.join([self.roll, self.worker, self.address or self.target.host,
                               str(self.roll_timeout_s), self.release, self.remote_path,
                               self.sha256])
        script = f"{shlex.quote(self.install)} {shlex.quote(self.remote_path)} {self.sha256}"
        if self.ready and self.secrets_file:
            script += (f" && if [ -f {shlex.quote(self.secrets_file)} ]; then "
                       f"{shlex.quote(self.ready)} {shlex.quote(self.target.host)}; fi")
        return script


def plan(project_root: Path, expected_hash: str, target: Endpoint, jump: Endpoint | None,
         cache: Path | None = None, artifacts_dir: str = ARTIFACTS_DIR,
         install: str = INSTALL, ready: str | None = None,
         secrets_file: str | None = None, roll: str | None = None, worker: str = "",
         address: str = "", roll_timeout_s: int = 300,
         app_dir: Path | None = None) -> PushPlan:
    source = AppSource.at(app_dir or project_root / "app", project_root)
    if source.content_hash != expected_hash:
        raise PushError(
            f"the app changed since the deploy was planned (now {source.content_hash}, "
            f"planned {expected_hash}); run the deploy again"
        )
    artifact = build(source, cache)
    return PushPlan(artifact, sha256_of(artifact), target, jump, artifacts_dir, install, ready,
                    secrets_file, roll, worker or target.host, address, roll_timeout_s,
                    source.content_hash)


def run(push: PushPlan, private_key: str | None) -> str:
    """Upload (when missing) and install; returns what the node said."""
    with session(push.target, push.jump, private_key) as node:
        _, sent = node.upload(push.artifact, push.artifacts_dir)
        installed = node.run(push.install_command_plain())
        return f"{sent}\n{installed}"
