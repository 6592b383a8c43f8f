"""Every failure is caught before anything is replaced, says what is wrong, and leaves the
previous good backups, the live database and the live media as they were; a failed run shows
in the status file and the textfile metric, and exits non-zero."""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from backups import pgtools
from backups.__main__ import cmd_backup
from backups.backup import BackupError, complete_sets, run_backup, stores
from backups.config import BackupConfig
from backups.layout import parse_stamp, set_key
from backups.restore import RestoreError, RestoreRequest, run_restore
from backups.status import read_status
from tests.app.gemnar_app_fixtures import DB_NAME, AppEnv, PgBouncer, Postgres
from tests.backups.fixtures import make_config, media_checksums
from tests.support.s3_server import S3Server

pytestmark = pytest.mark.daemons
REAL_BIN = "/usr/lib/postgresql/15/bin"


def state(cfg: BackupConfig) -> dict[str, list[str]]:
    return {store.name: complete_sets(store) for store in stores(cfg)}


def databases(postgres: Postgres) -> set[str]:
    with postgres.connect() as conn:
        return {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def live(postgres: Postgres) -> dict[str, tuple[int, str]]:
    with postgres.connect(DB_NAME) as conn:
        return pgtools.table_stats(conn)


def metric(cfg: BackupConfig, name: str) -> float:
    assert cfg.metrics_file is not None
    for line in cfg.metrics_file.read_text().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in {cfg.metrics_file}")


@pytest.fixture
def good(tmp_path: Path, postgres: Postgres, pgbouncer: PgBouncer, s3: S3Server,
         seeded: AppEnv) -> BackupConfig:
    """A config with one good backup in both stores, recorded as a success."""
    cfg = make_config(tmp_path, postgres, s3, seeded.media_root, pgbouncer)
    assert cmd_backup(cfg) == 0
    assert metric(cfg, "gemnar_backup_last_attempt_success") == 1
    return cfg


def truncating_bin_dir(tmp: Path) -> str:
    """The real client programs, except a pg_dump whose output is cut short (a full disk, a
    killed pipe) while it still exits 0."""
    directory = tmp / "bin"
    directory.mkdir()
    for name in ("pg_dumpall", "pg_restore", "psql"):
        os.symlink(f"{REAL_BIN}/{name}", directory / name)
    script = directory / "pg_dump"
    script.write_text(f'#!/bin/sh\n{REAL_BIN}/pg_dump "$@" | head -c 20000\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(directory)


def test_a_truncated_dump_fails_the_run_and_keeps_the_good_backups(
    good: BackupConfig, tmp_path: Path, postgres: Postgres, s3: S3Server, seeded: AppEnv
) -> None:
    before = state(good)
    success = read_status(good.status_file)["last_success"]
    cfg = make_config(tmp_path, postgres, s3, seeded.media_root,
                      bucket=good.offsite.bucket if good.offsite else None,
                      bin_dir=truncating_bin_dir(tmp_path))
    with pytest.raises(BackupError, match=r"pg_restore --list|table of contents"):
        run_backup(cfg)
    assert cmd_backup(cfg) == 1
    assert state(cfg) == before and all(before.values())
    status = read_status(cfg.status_file)
    assert status["healthy"] is False
    assert "pg_restore" in status["last_attempt"]["error"] or "table" in status[
        "last_attempt"]["error"]
    assert status["last_success"] == success
    assert metric(cfg, "gemnar_backup_last_attempt_success") == 0
    assert metric(cfg, "gemnar_backup_last_success_timestamp_seconds") == success["finished"]
    assert not list((cfg.backup_dir / ".work").iterdir())


def test_an_unreachable_bucket_fails_the_run_and_prunes_nothing(
    good: BackupConfig, tmp_path: Path, postgres: Postgres, seeded: AppEnv
) -> None:
    before = state(good)
    assert good.offsite is not None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cfg = make_config(tmp_path, postgres, None, seeded.media_root)
    cfg = replace(cfg, offsite=replace(good.offsite, endpoint=closed))
    assert cmd_backup(cfg) == 1
    assert "offsite: bucket" in read_status(cfg.status_file)["last_attempt"]["error"]
    assert state(good)["offsite"] == before["offsite"]
    assert metric(cfg, "gemnar_backup_last_attempt_success") == 0


def corrupt(s3: S3Server, cfg: BackupConfig, key: str, how: str) -> None:
    assert cfg.offsite is not None
    client = s3.client()
    body = client.get_object(Bucket=cfg.offsite.bucket, Key=key)["Body"].read()
    if how == "flip":
        changed = body[:5000] + bytes([body[5000] ^ 0x40]) + body[5001:]
    else:
        changed = body[: len(body) // 2]
    client.put_object(Bucket=cfg.offsite.bucket, Key=key, Body=changed)


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_a_damaged_upload_is_refused_before_anything_is_restored(
    good: BackupConfig, postgres: Postgres, s3: S3Server, seeded: AppEnv, how: str
) -> None:
    first = state(good)["offsite"][-1]
    # The next night's backup (a second one the same day would replace the first: retention
    # keeps the newest of each day).
    second = run_backup(good, now=parse_stamp(first) + timedelta(days=1)).stamp
    corrupt(s3, good, set_key(second, "dump"), how)
    dbs, stats, media = databases(postgres), live(postgres), media_checksums(seeded.media_root)
    with pytest.raises(RestoreError, match=r"damaged or truncated: its SHA-256"):
        run_restore(good, RestoreRequest(source="offsite", swap=True, swap_media=True))
    assert databases(postgres) == dbs
    assert live(postgres) == stats
    assert media_checksums(seeded.media_root) == media
    # The previous good backup still restores.
    result = run_restore(good, RestoreRequest(wanted=first, source="offsite",
                                              into=f"check_{how}"))
    # run_restore compared every table with the first set's manifest before returning.
    assert result.database == f"check_{how}" and result.stamp == first
    assert result.tables == len(stats)
    pgtools.drop_database(good.pg, f"check_{how}")


def test_a_wrong_key_is_named_and_nothing_is_restored(
    good: BackupConfig, tmp_path: Path, postgres: Postgres, s3: S3Server, seeded: AppEnv
) -> None:
    other = make_config(tmp_path / "other", postgres, s3, seeded.media_root,
                        bucket=good.offsite.bucket if good.offsite else None,
                        secret="another-stack-secret-" + "z" * 40)
    dbs = databases(postgres)
    with pytest.raises(RestoreError, match="wrong key"):
        run_restore(other, RestoreRequest(source="offsite", swap=True))
    assert databases(postgres) == dbs
    assert state(good)["offsite"]


def test_restore_refuses_an_existing_database(good: BackupConfig, postgres: Postgres) -> None:
    dbs = databases(postgres)
    with pytest.raises(RestoreError, match="exists; restore into a new one"):
        run_restore(good, RestoreRequest(source="local", into="postgres"))
    assert databases(postgres) == dbs
