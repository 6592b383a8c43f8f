"""Media off-site: an incremental, encrypted, content-addressed copy, and its restore.

The plan is pure (``media_plan``); this module does the I/O: list the media (a directory, or
the app's bucket), hash what changed (a local cache keyed by size and mtime or ETag spares
re-reading unchanged files), upload new contents, write the set's index, and on restore fetch
and verify every file, into a new directory or back into the bucket.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mimetypes
import os
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from backups import crypto
from backups.layout import MEDIA_OBJECTS, media_index_key, media_object_key, media_object_name
from backups.media_plan import CachedHash, FileStat, needs_hashing, to_upload, unreferenced
from backups.store import S3Store, Store, sha256_file


class MediaError(Exception):
    """A media file could not be copied, fetched or verified."""


@dataclass(frozen=True)
class MediaResult:
    files: int
    bytes: int
    uploaded: int
    uploaded_bytes: int


class MediaSource(Protocol):
    """Where the site's media live: a directory (local stack, older nodes) or a bucket."""

    def scan(self) -> dict[str, FileStat]: ...

    def local(self, path: str, work: Path) -> AbstractContextManager[Path]:
        """A local file holding ``path``'s content while the context lasts."""
        ...


class DirectorySource:
    """Media in a directory tree; a file's version is its mtime."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def scan(self) -> dict[str, FileStat]:
        found = {}
        for directory, _dirs, names in os.walk(self.root):
            for name in names:
                path = Path(directory) / name
                if path.is_symlink() or not path.is_file():
                    continue
                stat = path.stat()
                found[path.relative_to(self.root).as_posix()] = FileStat(
                    stat.st_size, str(stat.st_mtime_ns))
        return found

    @contextlib.contextmanager
    def local(self, path: str, work: Path) -> Iterator[Path]:
        yield self.root / path


class BucketSource:
    """Media in an S3 bucket (the app's django-storages bucket); an object's version is its
    ETag. Each new or changed object is downloaded once: hashed and, if new, sealed from the
    same copy."""

    def __init__(self, bucket: S3Store) -> None:
        self.bucket = bucket

    def scan(self) -> dict[str, FileStat]:
        return {key: FileStat(size, etag) for key, (size, etag) in self.bucket.listing().items()
                if not key.endswith("/")}

    @contextlib.contextmanager
    def local(self, path: str, work: Path) -> Iterator[Path]:
        copy = work / "media-source.tmp"
        self.bucket.get(path, copy)
        try:
            yield copy
        finally:
            copy.unlink(missing_ok=True)


def _load_cache(path: Path) -> dict[str, CachedHash]:
    try:
        return {k: CachedHash(**v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError):
        return {}


def _save_cache(path: Path, cache: dict[str, CachedHash]) -> None:
    temp = path.with_name(path.name + ".new")
    temp.write_text(json.dumps({k: vars(v) for k, v in cache.items()}, sort_keys=True))
    os.replace(temp, path)


class _Hashing:
    """A reader that hashes what passes through it."""

    def __init__(self, inner: BinaryIO) -> None:
        self.inner, self.digest, self.size = inner, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data


def _encrypt_to(master: bytes, source: Path, target: Path) -> tuple[str, int]:
    """Encrypt ``source`` into ``target``; the plaintext's (sha256, size) as actually read."""
    with source.open("rb") as plain, target.open("wb") as sealed:
        reader = _Hashing(plain)
        crypto.encrypt_stream(master, reader, sealed)  # type: ignore[arg-type]
    return reader.digest.hexdigest(), reader.size


def sync(master: bytes, source: MediaSource, store: Store, stamp: str, work: Path,
         cache_file: Path) -> MediaResult:
    """Copy new and changed media files off-site and write this set's index."""
    files = source.scan()
    cache = {k: v for k, v in _load_cache(cache_file).items() if k in files}
    existing = {key.removeprefix(MEDIA_OBJECTS) for key in store.keys(MEDIA_OBJECTS)}
    uploaded = uploaded_bytes = 0
    sealed = work / "media-object.enc"

    def upload(path: str, local: Path) -> None:
        nonlocal uploaded, uploaded_bytes
        sha, size = _encrypt_to(master, local, sealed)
        if sha != cache[path].sha256:
            # Changed while we read it: store what we read, under the name of that content.
            cache[path] = CachedHash(size, "", sha)
        name = media_object_name(master, sha)
        store.put(media_object_key(name), sealed, sha256_file(sealed))
        existing.add(name)
        uploaded += 1
        uploaded_bytes += sealed.stat().st_size

    for path in needs_hashing(files, cache):
        with source.local(path, work) as local:
            sha = sha256_file(local)
            cache[path] = CachedHash(files[path].size, files[path].version, sha)
            if media_object_name(master, sha) not in existing:
                upload(path, local)
    # Contents whose hash was cached but whose object is not stored (yet): normally none.
    index = {path: cache[path].sha256 for path in files}
    names = {sha: media_object_name(master, sha) for sha in set(index.values())}
    for path in to_upload(index, existing, names).values():
        with source.local(path, work) as local:
            upload(path, local)
    sealed.unlink(missing_ok=True)
    entries = {
        path: {"sha256": cache[path].sha256, "size": files[path].size,
               "object": media_object_name(master, cache[path].sha256)}
        for path in sorted(files)
    }
    index_plain = work / "media-index.json"
    index_plain.write_text(json.dumps(entries, sort_keys=True))
    index_sealed = work / "media-index.enc"
    with index_plain.open("rb") as src, index_sealed.open("wb") as dst:
        crypto.encrypt_stream(master, src, dst)
    store.put(media_index_key(stamp), index_sealed, sha256_file(index_sealed))
    _save_cache(cache_file, cache)
    return MediaResult(len(entries), sum(f.size for f in files.values()), uploaded,
                       uploaded_bytes)


def read_index(master: bytes, store: Store, stamp: str, work: Path) -> dict[str, dict[str, str]]:
    sealed = work / f"media-index-{stamp}.enc"
    store.get(media_index_key(stamp), sealed)
    with sealed.open("rb") as handle:
        plain = b"".join(crypto.decrypt_chunks(master, handle))
    sealed.unlink()
    data: dict[str, dict[str, str]] = json.loads(plain)
    return data


def restore(master: bytes, store: Store, stamp: str, target: Path, work: Path) -> int:
    """Fetch every file of the set's index into ``target`` (which must not exist yet),
    verifying each against its SHA-256; returns the number of files."""
    if target.exists():
        raise MediaError(f"{target} exists; restore media into a new directory")
    index = read_index(master, store, stamp, work)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    sealed = work / "media-fetch.enc"
    for path, entry in sorted(index.items()):
        destination = (staging / path).resolve()
        if staging.resolve() not in destination.parents:
            raise MediaError(f"index path {path!r} escapes the media directory")
        destination.parent.mkdir(parents=True, exist_ok=True)
        store.get(media_object_key(entry["object"]), sealed)
        with sealed.open("rb") as src, destination.open("wb") as dst:
            crypto.decrypt_stream(master, src, dst)
        if sha256_file(destination) != entry["sha256"]:
            raise MediaError(f"media file {path}: content does not match its SHA-256")
    sealed.unlink(missing_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    os.replace(staging, target)
    return len(index)


def restore_to_bucket(master: bytes, store: Store, stamp: str, bucket: S3Store,
                      work: Path) -> int:
    """Put every file of the set's index back into the media bucket under its own key, each
    verified against its SHA-256 before it is written (and by the upload's own check). Keys are
    generated and never reused, so this only re-creates and repairs: nothing newer is touched."""
    index = read_index(master, store, stamp, work)
    present = bucket.listing()
    sealed, plain = work / "media-fetch.enc", work / "media-fetch"
    written = 0
    for path, entry in sorted(index.items()):
        if path in present and present[path][0] == int(entry["size"]):
            with BucketSource(bucket).local(path, work) as current:
                if sha256_file(current) == entry["sha256"]:
                    continue
        store.get(media_object_key(entry["object"]), sealed)
        with sealed.open("rb") as src, plain.open("wb") as dst:
            crypto.decrypt_stream(master, src, dst)
        if sha256_file(plain) != entry["sha256"]:
            raise MediaError(f"media file {path}: content does not match its SHA-256")
        bucket.put(path, plain, entry["sha256"], mimetypes.guess_type(path)[0])
        written += 1
    sealed.unlink(missing_ok=True)
    plain.unlink(missing_ok=True)
    return written


def prune(master: bytes, store: Store, keep: set[str], work: Path) -> int:
    """Delete indexes of sets not kept, then objects no kept index refers to."""
    index_keys = store.keys("media/index/")
    stamps = {k.removeprefix("media/index/").removesuffix(".enc") for k in index_keys}
    store.delete(media_index_key(s) for s in sorted(stamps - keep))
    kept_names = [
        [entry["object"] for entry in read_index(master, store, s, work).values()]
        for s in sorted(stamps & keep)
    ]
    existing = [k.removeprefix(MEDIA_OBJECTS) for k in store.keys(MEDIA_OBJECTS)]
    dead = unreferenced(existing, kept_names)
    store.delete(media_object_key(n) for n in sorted(dead))
    return len(dead)
