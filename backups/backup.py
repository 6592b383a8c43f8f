"""One backup run: dump, verify, encrypt, store locally and off-site, then prune.

Order matters for "keep the previous good backups": every check runs before anything is
stored; a set's manifest is stored last (a set without one is not a backup); retention runs
only after both stores hold the new set. Any failure raises ``BackupError`` and deletes nothing.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backups import crypto, media, pgtools
from backups.config import BackupConfig
from backups.layout import parse_stamp, set_key, sets_in, stamp_of
from backups.manifest import FileEntry, Manifest, TableEntry
from backups.retention import plan_retention
from backups.store import LocalStore, S3Store, Store, StoreError, sha256_file

log = logging.getLogger("backups")


class BackupError(Exception):
    """A backup run failed; nothing was pruned and earlier sets are untouched."""


@dataclass(frozen=True)
class BackupResult:
    stamp: str
    manifest: Manifest
    sizes: dict[str, int]
    durations: dict[str, float]
    pruned: dict[str, list[str]]
    media: media.MediaResult | None = None


def stores(cfg: BackupConfig) -> list[Store]:
    local: Store = LocalStore(cfg.backup_dir / "sets")
    return [local] + ([S3Store(cfg.offsite)] if cfg.offsite else [])


@contextmanager
def locked(cfg: BackupConfig) -> Iterator[None]:
    """One backup, prune or restore at a time (a prune must not race a run's uploads)."""
    cfg.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (cfg.backup_dir / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError("another backup, prune or restore is running") from None
        yield


@contextmanager
def work_dir(cfg: BackupConfig, name: str) -> Iterator[Path]:
    path = cfg.work_dir / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _seal(master: bytes, plain: Path, key: str) -> tuple[Path, FileEntry]:
    sealed = plain.with_name(plain.name + ".enc")
    with plain.open("rb") as src, sealed.open("wb") as dst:
        crypto.encrypt_stream(master, src, dst)
    entry = FileEntry(key=key, size=sealed.stat().st_size, sha256=sha256_file(sealed),
                      plain_size=plain.stat().st_size, plain_sha256=sha256_file(plain))
    return sealed, entry


def timed(durations: dict[str, float], name: str) -> Callable[[], None]:
    start = time.monotonic()

    def done() -> None:
        durations[name] = round(time.monotonic() - start, 3)

    return done


def media_source(cfg: BackupConfig) -> media.MediaSource | None:
    """The app's media bucket when there is one, else the media directory if it exists."""
    if cfg.media_bucket is not None:
        return media.BucketSource(S3Store(cfg.media_bucket, name="media"))
    if cfg.media_root is not None and cfg.media_root.is_dir():
        return media.DirectorySource(cfg.media_root)
    return None


def run_backup(cfg: BackupConfig, now: datetime | None = None) -> BackupResult:
    """Back up the database (and media off-site); raises ``BackupError`` on any failure."""
    moment = now or datetime.now(UTC)
    stamp = stamp_of(moment)
    master = crypto.master_key_from_secret(cfg.secret)
    durations: dict[str, float] = {}
    targets = stores(cfg)
    try:
        with locked(cfg), work_dir(cfg, stamp) as work:
            for store in targets:
                if isinstance(store, S3Store) and store.ensure_bucket():
                    log.info("%s: created bucket %s", store.name, store.location.bucket)
            done = timed(durations, "dump")
            dump_file, globals_file = work / "dump", work / "globals"
            with (
                pgtools.exported_snapshot(cfg.pg, cfg.database) as (snapshot, stats),
                dump_file.open("wb") as sink,
            ):
                pgtools.dump(cfg.pg, cfg.database, snapshot, sink)
            with globals_file.open("wb") as sink:
                pgtools.dump_globals(cfg.pg, sink)
            done()

            done = timed(durations, "verify")
            try:
                entries = pgtools.toc(cfg.pg, dump_file)
            except pgtools.PgToolError as error:
                raise BackupError(f"the dump does not read back (pg_restore --list): {error}") \
                    from None
            lacking = pgtools.missing_from_toc(entries, sorted(stats))
            if lacking:
                raise BackupError(
                    f"the dump's table of contents lacks {len(lacking)} table(s): "
                    f"{', '.join(lacking[:5])}"
                )
            done()

            done = timed(durations, "encrypt")
            files: dict[str, FileEntry] = {}
            sealed: dict[str, Path] = {}
            for name, plain in (("dump", dump_file), ("globals", globals_file)):
                sealed[name], files[name] = _seal(master, plain, set_key(stamp, name))
            done()

            media_result = None
            offsite = next((s for s in targets if isinstance(s, S3Store)), None)
            source = media_source(cfg)
            if offsite is not None and source is not None:
                done = timed(durations, "media")
                media_result = media.sync(master, source, offsite, stamp, work,
                                          cfg.backup_dir / "media-hashes.json")
                done()

            manifest = Manifest(
                stamp=stamp,
                database=cfg.database,
                created=moment.isoformat(),
                tables={k: TableEntry(rows, checksum) for k, (rows, checksum) in stats.items()},
                files=files,
                toc_entries=len(entries),
                media_index=f"media/index/{stamp}.enc" if media_result else None,
                media_files=media_result.files if media_result else 0,
                media_bytes=media_result.bytes if media_result else 0,
                durations=dict(durations),
            )
            manifest_plain = work / "manifest"
            manifest_plain.write_bytes(manifest.to_json())
            sealed["manifest"], manifest_entry = _seal(master, manifest_plain,
                                                        set_key(stamp, "manifest"))

            done = timed(durations, "store")
            for store in targets:
                for name in ("dump", "globals", "manifest"):
                    entry = manifest_entry if name == "manifest" else files[name]
                    store.put(entry.key, sealed[name], entry.sha256)
            done()

            done = timed(durations, "prune")
            pruned = {store.name: prune_store(cfg, store, master, work) for store in targets}
            done()
    except (pgtools.PgToolError, StoreError, media.MediaError, crypto.DecryptError,
            OSError) as error:
        raise BackupError(f"{type(error).__name__}: {error}") from error
    sizes = {name: entry.size for name, entry in files.items()}
    sizes["manifest"] = manifest_entry.size
    if media_result:
        sizes["media_uploaded"] = media_result.uploaded_bytes
    return BackupResult(stamp, manifest, sizes, durations, pruned, media_result)


def complete_sets(store: Store) -> list[str]:
    complete, _ = sets_in(store.keys("db/"))
    return sorted(complete)


def prune_store(cfg: BackupConfig, store: Store, master: bytes, work: Path) -> list[str]:
    """Apply retention to one store; returns the stamps deleted."""
    complete, seen = sets_in(store.keys("db/"))
    if not complete:
        return []
    keep = plan_retention((parse_stamp(s) for s in complete), cfg.retention)
    keep_stamps = {s for s in complete if parse_stamp(s) in keep}
    newest = max(complete)
    # Interrupted runs older than the newest good set are debris; a newer one may be running.
    doomed = sorted((complete - keep_stamps) | {s for s in seen - complete if s < newest})
    keys = store.keys("db/")
    store.delete(k for k in keys if k.split("/")[1] in doomed)
    if isinstance(store, S3Store):
        media.prune(master, store, keep_stamps, work)
    for stamp in doomed:
        log.info("%s: pruned %s", store.name, stamp)
    return doomed
