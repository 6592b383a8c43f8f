"""App releases on a local node: the part of ``gemnar-install-app`` a local node needs.

A prod worker installs a pushed artifact (app tree + wheels) into its own release directory
and points ``/opt/gemnar/app`` at it. A local node shares this machine's filesystem and the
project's virtualenv, so its "artifact" is the bundled app directory itself: the tree is copied
into ``releases/<content hash>/app`` with a ``SOURCE_HASH`` beside it, exactly the layout a
prod release has, and the app directory symlink is swapped to it. The hash is checked against
the one the deploy planned, as prod checks the artifact's sha256.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from appdelivery.source import AppSource, app_files
from project import PROJECT_ROOT

INSTALLED = ".installed"


def app_source(app_dir: Path) -> AppSource:
    """The bundled app in ``app_dir`` with the project's pinned app requirements."""
    return AppSource.at(app_dir, PROJECT_ROOT)


def install(source_dir: Path, expected_hash: str, releases_dir: Path) -> Path:
    """``releases_dir/<hash>`` holding a copy of ``source_dir``; built once per hash."""
    source = app_source(source_dir)
    if source.content_hash != expected_hash:
        raise ValueError(f"{source_dir} has content hash {source.content_hash}, the deploy "
                         f"planned {expected_hash}; run the deploy again")
    release = releases_dir / expected_hash
    if (release / INSTALLED).exists():
        return release
    partial = releases_dir / f".{expected_hash}.part"
    shutil.rmtree(partial, ignore_errors=True)
    for path in app_files(source_dir):
        target = partial / "app" / path.relative_to(source_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    (partial / "SOURCE_HASH").write_text(f"{expected_hash}\n")
    (partial / INSTALLED).write_text("")
    shutil.rmtree(release, ignore_errors=True)
    partial.rename(release)
    return release


def activate(release: Path, app_dir: Path) -> None:
    """Point ``app_dir`` at ``release``'s app tree in one rename."""
    if not (release / INSTALLED).exists():
        raise ValueError(f"{release} is not an installed release")
    app_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = app_dir.with_name(app_dir.name + ".new")
    staged.unlink(missing_ok=True)
    staged.symlink_to(release / "app")
    os.replace(staged, app_dir)


def current(app_dir: Path) -> str | None:
    """The SOURCE_HASH of the release ``app_dir`` points at, if any."""
    try:
        return (app_dir.resolve().parent / "SOURCE_HASH").read_text().strip()
    except OSError:
        return None
