"""Retention through real runs: both stores keep exactly the planned sets, and media deleted
from the site stays off-site exactly as long as a kept set refers to it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backups import crypto, media
from backups.backup import complete_sets, run_backup, stores
from backups.layout import MEDIA_OBJECTS, parse_stamp, stamp_of
from backups.retention import RetentionPolicy, plan_retention
from backups.store import S3Store
from tests.app.gemnar_app_fixtures import AppEnv, PgBouncer, Postgres
from tests.backups.fixtures import make_config
from tests.support.s3_server import S3Server

pytestmark = pytest.mark.daemons

# Eleven runs over two and a half months, newest last: some days twice, a gap of weeks.
MOMENTS = [datetime(2026, 9, 2, 3, tzinfo=UTC) + offset for offset in (
    timedelta(0), timedelta(days=20), timedelta(days=35), timedelta(days=50),
    timedelta(days=60), timedelta(days=64), timedelta(days=65), timedelta(days=65, hours=9),
    timedelta(days=66), timedelta(days=67), timedelta(days=67, hours=12),
)]


def test_both_stores_keep_exactly_the_configured_sets(
    tmp_path: Path, postgres: Postgres, pgbouncer: PgBouncer, s3: S3Server, seeded: AppEnv
) -> None:
    policy = RetentionPolicy(daily=3, weekly=2, monthly=2)
    root = tmp_path / "media"
    for i in range(len(MOMENTS)):
        (root / f"f{i}").parent.mkdir(parents=True, exist_ok=True)
    cfg = make_config(tmp_path, postgres, s3, root, pgbouncer, retention=policy)
    master = crypto.master_key_from_secret(cfg.secret)
    offsite = next(s for s in stores(cfg) if isinstance(s, S3Store))
    deleted_object = None
    for i, moment in enumerate(MOMENTS):
        # One new file per run; the file of run 0 is deleted after run 1.
        (root / f"f{i}").write_bytes(f"content {i}".encode() * 100)
        if i == 2:
            deleted_object = media.read_index(master, offsite, stamp_of(MOMENTS[0]),
                                              tmp_path)["f0"]["object"]
            (root / "f0").unlink()
        run_backup(cfg, now=moment)

    expected = sorted(stamp_of(m) for m in plan_retention(MOMENTS, policy))
    # By hand: daily 3 = Nov 8 15:00, Nov 7, Nov 6 12:00; weekly 2 adds Nov 1 (ISO week 44);
    # monthly 2 adds Oct 22.
    assert expected == ["20261022T030000Z", "20261101T030000Z", "20261106T120000Z",
                        "20261107T030000Z", "20261108T150000Z"]
    for store in stores(cfg):
        assert complete_sets(store) == expected, store.name
    assert not [k for k in offsite.keys("db/") if k.split("/")[1] not in expected]

    # Media: every kept set's index is there and every object it names exists; nothing else.
    objects = {k.removeprefix(MEDIA_OBJECTS) for k in offsite.keys(MEDIA_OBJECTS)}
    referenced: set[str] = set()
    for stamp in expected:
        referenced |= {e["object"] for e in media.read_index(master, offsite, stamp,
                                                              tmp_path).values()}
    assert objects == referenced
    # f0 was deleted from the site before run 2; the oldest kept set is from run 2 or later
    # only if retention dropped runs 0 and 1, and then f0's object must be gone too.
    oldest_kept = min(parse_stamp(s) for s in expected)
    assert (deleted_object in objects) == (oldest_kept <= MOMENTS[1])
