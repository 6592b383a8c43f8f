"""Back up, wipe, restore: against the real PostgreSQL, PgBouncer and S3 server."""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from backups import pgtools
from backups.backup import run_backup
from backups.restore import RestoreRequest, run_restore
from tests.app.gemnar_app_fixtures import DB_NAME, AppEnv, PgBouncer, Postgres
from tests.backups.fixtures import make_config, media_checksums
from tests.support.s3_server import S3Server

pytestmark = pytest.mark.daemons


def test_backup_wipe_restore_matches_every_table_and_media_file(
    tmp_path: Path, postgres: Postgres, pgbouncer: PgBouncer, s3: S3Server, seeded: AppEnv,
    record_property: object,
) -> None:
    cfg = make_config(tmp_path, postgres, s3, seeded.media_root, pgbouncer)
    with postgres.connect(DB_NAME) as conn:
        before = pgtools.table_stats(conn)
    media_before = media_checksums(seeded.media_root)
    assert {"shop.customer", "shop.orders", "shop.blob", "audit.log"} <= before.keys()
    assert sum(rows for rows, _ in before.values()) > 16_000
    assert len(media_before) > 200

    started = time.monotonic()
    result = run_backup(cfg)
    backup_s = time.monotonic() - started
    assert {k: (t.rows, t.checksum) for k, t in result.manifest.tables.items()} == before
    assert result.manifest.media_files == len(media_before)

    # Wipe: the data tables and every media file are gone.
    with postgres.connect(DB_NAME) as conn:
        conn.execute("DROP SCHEMA shop CASCADE")
        conn.execute("DROP SCHEMA audit CASCADE")
        conn.execute("DELETE FROM django_session")
    shutil.rmtree(seeded.media_root)
    # The local copies are lost with the controller: restore from off-site only.
    shutil.rmtree(cfg.backup_dir)

    started = time.monotonic()
    restored = run_restore(cfg, RestoreRequest(source="offsite", swap=True, swap_media=True))
    restore_s = time.monotonic() - started
    assert restored.swapped and restored.stamp == result.stamp
    with postgres.connect(DB_NAME) as conn:
        after = pgtools.table_stats(conn)
    assert after == before
    assert media_checksums(seeded.media_root) == media_before
    assert restored.kept_as is not None
    with postgres.connect() as conn:
        conn.execute(f'DROP DATABASE "{restored.kept_as}" WITH (FORCE)')

    # The next night: only new and changed media contents are uploaded.
    nightly = datetime.fromisoformat(result.manifest.created) + timedelta(days=1)
    started = time.monotonic()
    unchanged = run_backup(cfg, now=nightly)
    incremental_s = time.monotonic() - started
    assert unchanged.media is not None and unchanged.media.uploaded == 0
    (seeded.media_root / "uploads/new.bin").write_bytes(b"\x00new" * 999)
    (seeded.media_root / "uploads/00/file-0000.bin").write_bytes(b"changed")
    changed = run_backup(cfg, now=nightly + timedelta(days=1))
    assert changed.media is not None and changed.media.uploaded == 2
    assert changed.media.files == len(media_before) + 1

    figures = {
        "rows": sum(rows for rows, _ in before.values()),
        "tables": len(before),
        "media_files": len(media_before),
        "media_bytes": result.manifest.media_bytes,
        "dump_plain_bytes": result.manifest.files["dump"].plain_size,
        "dump_encrypted_bytes": result.sizes["dump"],
        "backup_seconds": round(backup_s, 2),
        "restore_seconds": round(restore_s, 2),
        "incremental_backup_seconds": round(incremental_s, 2),
        "incremental_durations": unchanged.durations,
        "backup_durations": result.durations,
        "restore_durations": restored.durations,
    }
    print("BACKUP-FIGURES", json.dumps(figures))
