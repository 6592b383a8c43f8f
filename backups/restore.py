"""Restore: fetch a set, verify it, restore into a fresh database, check it, maybe swap it in.

Every check happens before anything live is touched: the manifest decrypts (else: wrong key),
each file's SHA-256 matches the manifest (else: damaged or truncated upload), the dump decrypts
chunk by chunk with authentication, ``pg_restore --list`` reads it, it restores into a database
that did not exist, and every table's row count and content checksum equal the manifest's. Only
then, and only when asked, is the restored database swapped in (``swap``) and media moved.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backups import crypto, media, pgtools
from backups.backup import complete_sets, locked, stores, timed, work_dir
from backups.config import BackupConfig
from backups.layout import choose, set_key, stamp_of
from backups.manifest import Manifest, compare_tables
from backups.store import S3Store, Store, StoreError, sha256_file
from backups.swap import SwapError, check_admin, swap_in

log = logging.getLogger("backups")


@dataclass(frozen=True)
class RestoreRequest:
    wanted: str = "latest"
    source: str = "auto"
    into: str | None = None
    swap: bool = False
    media_into: Path | None = None
    swap_media: bool = False
    keep_restored_on_failure: bool = False
    # Apply the saved roles and tablespaces first (a new cluster); existing ones are reported.
    with_globals: bool = False


class RestoreError(Exception):
    """The restore stopped; nothing live was changed."""


@dataclass(frozen=True)
class RestoreResult:
    stamp: str
    store: str
    database: str
    tables: int
    rows: int
    swapped: bool
    kept_as: str | None
    media_files: int
    media_dir: Path | None
    durations: dict[str, float]


def _pick(cfg: BackupConfig, request: RestoreRequest) -> tuple[Store, str]:
    candidates = stores(cfg)
    if request.source != "auto":
        candidates = [s for s in candidates if s.name == request.source]
        if not candidates:
            raise RestoreError(f"no store named {request.source!r} is configured")
    for store in candidates:
        stamp = choose(complete_sets(store), request.wanted)
        if stamp is not None:
            return store, stamp
    names = ", ".join(s.name for s in candidates)
    raise RestoreError(f"no complete backup matching {request.wanted!r} in {names}")


def _fetch(store: Store, key: str, sha256: str, target: Path) -> None:
    store.get(key, target)
    actual = sha256_file(target)
    if actual != sha256:
        raise RestoreError(
            f"{store.name}: {key} is damaged or truncated: its SHA-256 {actual[:12]}... is not "
            f"the manifest's {sha256[:12]}... ({target.stat().st_size} bytes stored); "
            "nothing was restored"
        )


def _decrypt(master: bytes, sealed: Path, plain: Path, what: str) -> None:
    try:
        with sealed.open("rb") as src, plain.open("wb") as dst:
            crypto.decrypt_stream(master, src, dst)
    except crypto.DecryptError as error:
        plain.unlink(missing_ok=True)
        raise RestoreError(f"{what}: {error}; nothing was restored") from None


def fetch_manifest(master: bytes, store: Store, stamp: str, work: Path) -> Manifest:
    sealed, plain = work / "manifest.enc", work / "manifest"
    store.get(set_key(stamp, "manifest"), sealed)
    _decrypt(master, sealed, plain, f"the manifest of {stamp}")
    return Manifest.from_json(plain.read_bytes())


def run_restore(cfg: BackupConfig, request: RestoreRequest) -> RestoreResult:
    master = crypto.master_key_from_secret(cfg.secret)
    now = stamp_of(datetime.now(UTC))
    durations: dict[str, float] = {}
    try:
        with locked(cfg), work_dir(cfg, f"restore-{now}") as work:
            store, stamp = _pick(cfg, request)
            log.info("restoring %s from %s", stamp, store.name)
            done = timed(durations, "fetch")
            manifest = fetch_manifest(master, store, stamp, work)
            if request.swap:
                # A swap that cannot happen is known before the dump is fetched or restored.
                if cfg.pgbouncer is None:
                    raise RestoreError("no PgBouncer admin console configured for --swap")
                check_admin(cfg.pgbouncer, cfg.database)
            plain: dict[str, Path] = {}
            for name in ("dump", "globals"):
                entry = manifest.files[name]
                sealed = work / f"{name}.enc"
                _fetch(store, entry.key, entry.sha256, sealed)
                plain[name] = work / name
                _decrypt(master, sealed, plain[name], f"{stamp}/{name}")
                sealed.unlink()
                if sha256_file(plain[name]) != entry.plain_sha256:
                    raise RestoreError(f"{stamp}/{name}: decrypted content differs from the "
                                       "manifest; nothing was restored")
            try:
                entries = pgtools.toc(cfg.pg, plain["dump"])
            except pgtools.PgToolError as error:
                raise RestoreError(f"the dump does not read: {error}") from None
            lacking = pgtools.missing_from_toc(entries, sorted(manifest.tables))
            if lacking:
                raise RestoreError(f"the dump lacks tables {', '.join(lacking[:5])}")

            done()
            if request.with_globals:
                notes = pgtools.apply_globals(cfg.pg, plain["globals"])
                log.info("globals applied%s", f"; notes: {notes.strip()[:500]}" if notes else "")
            target = request.into or f"{cfg.database}_restore_{stamp.lower()}"
            if pgtools.database_exists(cfg.pg, target):
                raise RestoreError(f"database {target!r} exists; restore into a new one")
            owner = (pgtools.database_owner(cfg.pg, cfg.database)
                     if pgtools.database_exists(cfg.pg, cfg.database) else cfg.app_user)
            pgtools.create_database(cfg.pg, target, owner)
            try:
                done = timed(durations, "pg_restore")
                pgtools.restore(cfg.pg, target, plain["dump"])
                done()
                done = timed(durations, "check")
                with cfg.pg.connect(target) as conn:
                    actual = pgtools.table_stats(conn)
                done()
                problems = compare_tables(manifest.tables, actual)
                if problems:
                    raise RestoreError("the restored database differs from the backup: "
                                       + "; ".join(problems[:5]))
            except (RestoreError, pgtools.PgToolError):
                if not request.keep_restored_on_failure:
                    pgtools.drop_database(cfg.pg, target)
                raise
            log.info("restored %s into %s: %d tables checked", stamp, target,
                     len(manifest.tables))

            media_files, media_dir = 0, None
            into_bucket = request.swap_media and cfg.media_bucket is not None
            if manifest.media_index and into_bucket and not request.media_into:
                assert cfg.media_bucket is not None
                # Before the database swap: the restored rows then name files that exist.
                # Additive (keys are never reused), each file verified before it is written.
                done = timed(durations, "media")
                media_files = media.restore_to_bucket(
                    master, store, stamp, S3Store(cfg.media_bucket, name="media"), work)
                done()
            elif manifest.media_index and (request.media_into or request.swap_media):
                if cfg.media_root is None:
                    raise RestoreError("no media root is configured")
                media_dir = request.media_into or cfg.media_root.with_name(
                    f"{cfg.media_root.name}.restore-{stamp}")
                done = timed(durations, "media")
                media_files = media.restore(master, store, stamp, media_dir, work)
                done()

            kept_as = None
            if request.swap and cfg.pgbouncer is not None:
                kept_as = f"{cfg.database}_pre_restore_{now.lower()}"
                done = timed(durations, "swap")
                swap_in(cfg.pg, cfg.pgbouncer, cfg.database, target, kept_as)
                done()
                log.info("swapped in: %s is now %s, the previous one is %s",
                         target, cfg.database, kept_as)
            if (request.swap_media and not into_bucket and media_dir is not None
                    and cfg.media_root is not None):
                _swap_media(cfg.media_root, media_dir, now)
    except (StoreError, pgtools.PgToolError, media.MediaError, SwapError, OSError,
            ValueError) as error:
        raise RestoreError(f"{type(error).__name__}: {error}") from error
    return RestoreResult(
        stamp=stamp, store=store.name,
        database=cfg.database if request.swap else target,
        tables=len(manifest.tables), rows=sum(t.rows for t in manifest.tables.values()),
        swapped=request.swap, kept_as=kept_as, media_files=media_files, media_dir=media_dir,
        durations=durations,
    )


def _swap_media(live: Path, restored: Path, now: str) -> None:
    """Move the restored tree into place, with the live tree's owner; keep the old tree."""
    if live.exists():
        stat = live.stat()
        if os.geteuid() == 0:
            for directory, dirs, names in os.walk(restored):
                for name in [*dirs, *names, ""]:
                    os.chown(Path(directory) / name, stat.st_uid, stat.st_gid)
        os.chmod(restored, stat.st_mode & 0o7777)
        os.replace(live, live.with_name(f"{live.name}.pre-restore-{now}"))
    shutil.move(str(restored), str(live))
