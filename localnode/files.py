"""Filesystem helpers for a node's root: directories and files with modes and owners.

PostgreSQL and PgBouncer refuse to run as root, so what they read or write is owned by the
``postgres`` system user.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Collection, Sequence
from pathlib import Path

from provisioning.files import RenderedFile

POSTGRES_USER = "postgres"


def _postgres_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(POSTGRES_USER)
    return entry.pw_uid, entry.pw_gid


def make_dirs(*paths: str | Path, owner_postgres: bool = False, mode: int = 0o755) -> None:
    """Create directories (and parents, world-traversable), optionally owned by postgres."""
    for path in paths:
        target = Path(path)
        target.mkdir(parents=True, exist_ok=True, mode=0o755)
        target.chmod(mode)
        if owner_postgres:
            os.chown(target, *_postgres_ids())


def write_file(
    path: str | Path, text: str, mode: int = 0o644, owner_postgres: bool = False
) -> Path:
    """Write ``text`` to ``path`` (parents created) with ``mode`` and optional postgres owner."""
    target = Path(path)
    make_dirs(target.parent)
    target.write_text(text)
    target.chmod(mode)
    if owner_postgres:
        os.chown(target, *_postgres_ids())
    return target


def install_rendered(files: Sequence[RenderedFile], names: Collection[str]) -> None:
    """Write those of ``files`` whose file name is in ``names``, with their permissions."""
    for rendered in files:
        if Path(rendered.path).name in names:
            write_file(rendered.path, rendered.content, int(rendered.permissions, 8))
