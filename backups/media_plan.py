"""Pure planning for the off-site media copy: what to hash, upload, keep and forget.

Files are content-addressed: an index per backup maps each relative path to its SHA-256, and
an object is uploaded only when no object with that content exists off-site yet (new or
changed files only). A file deleted from the site stays in the indexes of older backups, so
its object is kept until the last backup that references it is pruned by retention.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FileStat:
    size: int
    # What changes when the content may have: a file's mtime (ns), an object's ETag.
    version: str


@dataclass(frozen=True)
class CachedHash(FileStat):
    """A file's hash and the stat it was taken at."""

    sha256: str


def needs_hashing(files: Mapping[str, FileStat], cache: Mapping[str, CachedHash]) -> list[str]:
    """Paths whose cached hash cannot be trusted: new, or size or version changed."""
    stale = []
    for path, stat in files.items():
        cached = cache.get(path)
        if cached is None or (cached.size, cached.version) != (stat.size, stat.version):
            stale.append(path)
    return sorted(stale)


def to_upload(index: Mapping[str, str], existing: Iterable[str],
              name_of: Mapping[str, str]) -> dict[str, str]:
    """Object name -> one local path holding that content, for contents not stored yet."""
    have = set(existing)
    uploads: dict[str, str] = {}
    for path in sorted(index):
        name = name_of[index[path]]
        if name not in have and name not in uploads:
            uploads[name] = path
    return uploads


def unreferenced(existing: Iterable[str], kept_indexes: Iterable[Iterable[str]]) -> set[str]:
    """Stored object names that no kept backup's index refers to any more."""
    referenced: set[str] = set()
    for names in kept_indexes:
        referenced.update(names)
    return set(existing) - referenced
