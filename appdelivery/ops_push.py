"""Push the controller's operations bundle and the pinned Pulumi CLI, then install both.

The CLI is large and changes only with its version: it is uploaded under a name carrying its
version and digest, so it is sent once; the bundle is named by its content hash. Plugins to
fetch the official way (``NAME:VERSION``) are passed through to ``gemnar-install-ops``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from appdelivery.artifact import build, sha256_of
from appdelivery.operations import OpsSource, build_bundle
from appdelivery.session import PushError, session
from appdelivery.source import AppSource
from appdelivery.ssh import Endpoint

INSTALL_OPS = "/usr/local/sbin/gemnar-install-ops"
OPS_DIR = "/var/lib/gemnar/ops"


@dataclass(frozen=True)
class OpsPlan:
    bundle: Path
    bundle_sha256: str
    cli: Path
    cli_version: str
    target: Endpoint
    fetch_plugins: tuple[str, ...] = ()
    ops_dir: str = OPS_DIR
    install: str = INSTALL_OPS
    # The app artifact, seeded into the controller's artifact cache: the scaler's `up` then
    # pushes it to new workers without building (the lab's controller has no index).
    app_artifact: Path | None = None
    app_cache_dir: str | None = None

    @property
    def cli_upload_name(self) -> str:
        return f"pulumi-v{self.cli_version}-{sha256_of(self.cli)[:12]}"


def plan_ops(project_root: Path, expected_hash: str, cli: Path, cli_version: str,
             target: Endpoint, fetch_plugins: tuple[str, ...] = (), ops_dir: str = OPS_DIR,
             install: str = INSTALL_OPS, cache: Path | None = None,
             app_cache_dir: str | None = None) -> OpsPlan:
    source = OpsSource.of_project(project_root)
    if source.content_hash != expected_hash:
        raise PushError(
            f"the project changed since the deploy was planned (now {source.content_hash}, "
            f"planned {expected_hash}); run the deploy again")
    if not cli.exists():
        raise PushError(f"no Pulumi CLI at {cli}; run tools/bootstrap.sh")
    bundle = build_bundle(source, cache)
    artifact = build(AppSource.of_project(project_root), cache) if app_cache_dir else None
    return OpsPlan(bundle, sha256_of(bundle), cli, cli_version, target, fetch_plugins,
                   ops_dir, install, artifact, app_cache_dir)


def run_ops(ops: OpsPlan, private_key: str | None, scratch: Path) -> str:
    """Upload what is missing, install; returns what the controller said."""
    # The CLI goes up under its versioned name (a symlink keeps the upload logic one piece).
    scratch.mkdir(parents=True, exist_ok=True)
    named_cli = scratch / ops.cli_upload_name
    if not named_cli.exists():
        named_cli.symlink_to(ops.cli.resolve())
    with session(ops.target, None, private_key) as node:
        cli_path, cli_sent = node.upload(named_cli, ops.ops_dir)
        bundle_path, bundle_sent = node.upload(ops.bundle, ops.ops_dir)
        app = ""
        if ops.app_artifact is not None and ops.app_cache_dir:
            # Seeded before the install gives the scaler its Python (its units' condition):
            # on a first deploy the scaler's first start then finds the seed and chowns it
            # with its state directory; later seeds take the directory's owner on the way in.
            state_dir = str(PurePosixPath(ops.app_cache_dir).parent)
            app = "\napp " + node.upload(ops.app_artifact, ops.app_cache_dir,
                                          owner_like=state_dir)[1]
        installed = node.run(shlex.join([ops.install, bundle_path, ops.bundle_sha256, cli_path,
                                         *ops.fetch_plugins]))
    return f"cli {cli_sent}\nbundle {bundle_sent}\n{installed}{app}"
