"""One byte-reproducible bundle: a tree, its pinned requirements and their wheels.

The app artifact and the controller's operations bundle are both this tarball, named by the
hash of their content: ``SOURCE_HASH``, ``requirements.txt``, the tree under one top folder
(``app/`` or ``project/``) and ``wheels/``. Only which tree and which top folder differ.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Bundles kept per kind in the deployer's cache: every project change makes a new one.
KEEP_PER_KIND = 3


def tree_hash(tag: str, requirements: Sequence[str], root: Path, files: Sequence[Path]) -> str:
    """20 hex digits over the recipe tag, every pinned line and every file's path and bytes."""
    digest = hashlib.sha256(f"{tag}\n".encode())
    for line in requirements:
        digest.update(f"req {line}\n".encode())
    for path in files:
        data = path.read_bytes()
        digest.update(f"file {path.relative_to(root).as_posix()} {len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()[:20]


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def write(cache: Path, kind: str, content_hash: str, requirements: Sequence[str], root: Path,
          files: Sequence[Path], top: str, wheels: Path) -> Path:
    """``cache/<kind><content_hash>.tar.gz``: written once, then found by its name; the cache
    keeps the newest few of each kind."""
    target = cache / f"{kind}{content_hash}.tar.gz"
    if target.exists():
        return target
    buffer = io.BytesIO()
    # Fixed order, times and owners, and gzip without a timestamp: the same source gives the
    # same bytes, so a rebuilt bundle is never "new".
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped, tarfile.open(
        fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT
    ) as tar:
        _add(tar, "SOURCE_HASH", f"{content_hash}\n".encode())
        _add(tar, "requirements.txt", "".join(f"{r}\n" for r in requirements).encode())
        for path in files:
            name = f"{top}/" + path.relative_to(root).as_posix()
            _add(tar, name, path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644)
        for wheel in sorted(wheels.glob("*.whl")):
            _add(tar, f"wheels/{wheel.name}", wheel.read_bytes())
    cache.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=cache, prefix=f".{kind}")
    with os.fdopen(fd, "wb") as handle:
        handle.write(buffer.getvalue())
    os.replace(temporary, target)
    prune(cache, kind)
    return target


def prune(cache: Path, prefix: str, keep: int = KEEP_PER_KIND) -> None:
    """Drop all but the ``keep`` newest ``<prefix>*.tar.gz`` in ``cache``."""
    bundles = sorted(cache.glob(f"{prefix}*.tar.gz"), key=lambda p: p.stat().st_mtime,
                     reverse=True)
    for old in bundles[keep:]:
        old.unlink(missing_ok=True)
