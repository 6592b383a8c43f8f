"""Fixtures and helpers for the backup tests: a PgBouncer whose admin console ``postgres`` may
use (restore pauses the app through it), a real S3 server, and a seeded data set (several
tables, thousands of rows, binary media). ``conftest.py`` registers them together with the app
tests' PostgreSQL, Redis and app environment, which are reused, not copied."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from backups.config import BackupConfig
from backups.pgtools import PgTarget
from backups.retention import RetentionPolicy
from backups.store import S3Location
from tests.app.gemnar_app_fixtures import (
    DB_NAME,
    DB_USER,
    HOST,
    AppEnv,
    PgBouncer,
    Postgres,
    _require,
    start_pgbouncer,
)
from tests.support.s3_server import S3Server, s3_server

SECRET = "backup-test-secret-" + "k" * 40
MEDIA_FILES = 240


@pytest.fixture(scope="session")
def pgbouncer(workdir: Path, postgres: Postgres) -> Iterator[PgBouncer]:
    """Replaces the app tests' PgBouncer: the same pooling, plus an admin console."""
    _require("pgbouncer")
    bouncer = start_pgbouncer(workdir, "pgbouncer-backups", postgres.port,
                              admin=("postgres", postgres.superuser_password))
    try:
        yield bouncer
    finally:
        bouncer.daemon.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


_SEED_SQL = """
SELECT setseed(0.42);
CREATE SCHEMA shop;
CREATE TABLE shop.customer (
    id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, balance numeric(12, 2),
    created timestamptz NOT NULL);
INSERT INTO shop.customer (name, email, balance, created)
SELECT 'Kunde ' || i || ' ✓ ñ', 'c' || i || '@example.test', round((random() * 10000)::numeric, 2),
       timestamptz '2025-01-01 00:00:00+00' + i * interval '37 minutes'
FROM generate_series(1, 3000) AS i;
CREATE TABLE shop.orders (
    id bigserial PRIMARY KEY, customer_id int REFERENCES shop.customer (id), total float8,
    items jsonb, placed timestamptz, note text);
INSERT INTO shop.orders (customer_id, total, items, placed, note)
SELECT 1 + (i % 3000), random() * 500,
       jsonb_build_object('sku', 'S' || (i % 97), 'qty', i % 7, 'tags', jsonb_build_array(i, 'x')),
       now() - i * interval '1 hour', CASE WHEN i % 5 = 0 THEN NULL ELSE repeat('n', i % 40) END
FROM generate_series(1, 8000) AS i;
CREATE TABLE shop.blob (id int PRIMARY KEY, data bytea NOT NULL);
INSERT INTO shop.blob
SELECT i, decode(string_agg(lpad(to_hex((random() * 255)::int), 2, '0'), ''), 'hex')
FROM generate_series(1, 1500) AS i, generate_series(1, 300) AS j GROUP BY i;
CREATE SCHEMA audit;
CREATE TABLE audit.log (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz, took interval,
                        tags text[], ratio real, ok boolean);
INSERT INTO audit.log (at, took, tags, ratio, ok)
SELECT now() - i * interval '1 minute', i * interval '1 ms', ARRAY['a' || i, 'b'], random(),
       i % 2 = 0
FROM generate_series(1, 4000) AS i;
CREATE INDEX ON shop.orders (customer_id);
"""


@pytest.fixture(scope="session")
def seeded(postgres: Postgres, app_env: AppEnv) -> AppEnv:
    """The app's migrated database plus four tables (16,500 rows, bytea, jsonb, arrays) and
    binary media files, one larger than an encryption chunk."""
    with postgres.connect(DB_NAME) as conn:
        conn.execute(_SEED_SQL)  # type: ignore[arg-type]
    rng = random.Random(7)
    for i in range(MEDIA_FILES):
        path = app_env.media_root / f"uploads/{i % 12:02d}/file-{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(0, 60_000)))
    (app_env.media_root / "uploads/big.bin").write_bytes(rng.randbytes(3 * 2**20 + 17))
    return app_env


def media_checksums(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def make_config(tmp: Path, postgres: Postgres, s3: S3Server | None, media_root: Path | None,
                bouncer: PgBouncer | None = None, *, secret: str = SECRET,
                bucket: str | None = None, retention: RetentionPolicy | None = None,
                bin_dir: str = "/usr/lib/postgresql/15/bin") -> BackupConfig:
    offsite = None
    if s3 is not None:
        name = bucket or f"bk-{tmp.name.lower().replace('_', '-')[-40:]}".rstrip("-")
        existing = [b["Name"] for b in s3.client().list_buckets().get("Buckets", [])]
        if name not in existing:
            s3.create_bucket(name)
        offsite = S3Location(s3.endpoint, name, s3.access_key, s3.secret_key, s3.region)
    return BackupConfig(
        database=DB_NAME,
        app_user=DB_USER,
        pg=PgTarget(HOST, postgres.port, "postgres", postgres.superuser_password,
                    bin_dir=bin_dir),
        backup_dir=tmp / "backups",
        status_file=tmp / "state" / "backup-status.json",
        metrics_file=tmp / "textfile" / "gemnar_backup.prom",
        secret=secret,
        retention=retention or RetentionPolicy(),
        offsite=offsite,
        media_root=media_root,
        pgbouncer=(PgTarget(HOST, bouncer.port, "postgres", postgres.superuser_password)
                   if bouncer else None),
    )
