"""Media in the app's bucket (django-storages on S3-compatible storage): the nightly backup
copies them from that bucket off-site, incrementally, and a restore puts them back into it.

Both buckets live on the same real S3 server (moto) here; on Vultr they are two subscriptions
in two regions. The media bucket is named to the backup by the same ``GEMNAR_MEDIA_S3_*``
variables the workers' app reads.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backups.backup import run_backup
from backups.config import media_bucket_from_env
from backups.restore import RestoreRequest, run_restore
from tests.app.gemnar_app_fixtures import AppEnv, Postgres
from tests.backups.fixtures import make_config
from tests.support.s3_server import S3Server

pytestmark = pytest.mark.daemons


def bucket_contents(client: Any, bucket: str) -> dict[str, tuple[str, str]]:
    """Key -> (SHA-256, Content-Type) of every object in ``bucket``."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            got = client.get_object(Bucket=bucket, Key=obj["Key"])
            found[obj["Key"]] = (hashlib.sha256(got["Body"].read()).hexdigest(),
                                 got["ContentType"])
    return found


def test_media_are_copied_from_the_bucket_and_restored_into_it(
    tmp_path: Path, postgres: Postgres, s3: S3Server, seeded: AppEnv
) -> None:
    client = s3.client()
    media = s3.create_bucket("gemnar-media-test")
    rng = random.Random(18)
    for i in range(60):
        kind = ("png", "image/png") if i % 3 else ("pdf", "application/pdf")
        client.put_object(Bucket=media, Key=f"uploads/{i:032x}.{kind[0]}",
                          Body=rng.randbytes(rng.randrange(0, 40_000)), ContentType=kind[1])
    client.put_object(Bucket=media, Key="uploads/big.bin", Body=rng.randbytes(3 * 2**20 + 5),
                      ContentType="application/octet-stream")
    before = bucket_contents(client, media)
    bucket = media_bucket_from_env({
        "GEMNAR_MEDIA_S3_ENDPOINT": s3.endpoint, "GEMNAR_MEDIA_S3_BUCKET": media,
        "GEMNAR_MEDIA_S3_REGION": s3.region, "GEMNAR_MEDIA_S3_ACCESS_KEY": s3.access_key,
        "GEMNAR_MEDIA_S3_SECRET_KEY": s3.secret_key,
    })
    # The directory is there too, and ignored: the bucket is where the app keeps media.
    cfg = replace(make_config(tmp_path, postgres, s3, seeded.media_root), media_bucket=bucket)

    first = run_backup(cfg)
    assert first.media is not None
    assert (first.media.files, first.media.uploaded) == (61, 61)

    nightly = datetime.fromisoformat(first.manifest.created) + timedelta(days=1)
    unchanged = run_backup(cfg, now=nightly)
    assert unchanged.media is not None and unchanged.media.uploaded == 0
    client.put_object(Bucket=media, Key=f"uploads/{0:032x}.pdf", Body=b"replaced",
                      ContentType="application/pdf")
    client.put_object(Bucket=media, Key="uploads/new.png", Body=b"\x89PNG new",
                      ContentType="image/png")
    changed = run_backup(cfg, now=nightly + timedelta(days=1))
    assert changed.media is not None
    assert (changed.media.files, changed.media.uploaded) == (62, 2)
    latest = bucket_contents(client, media)

    # The media bucket is lost: every object comes back, checked, with its type.
    keys = list(latest)
    client.delete_objects(Bucket=media, Delete={"Objects": [{"Key": k} for k in keys]})
    assert bucket_contents(client, media) == {}
    restored = run_restore(cfg, RestoreRequest(source="offsite", swap_media=True))
    assert restored.media_files == 62
    assert bucket_contents(client, media) == latest
    assert latest[f"uploads/{1:032x}.png"] == before[f"uploads/{1:032x}.png"]
    # Again, with everything in place: nothing to write.
    again = run_restore(cfg, RestoreRequest(source="offsite", swap_media=True,
                                            into="gemnar_media_again"))
    assert again.media_files == 0
    with postgres.connect() as conn:
        for database in (restored.database, again.database):
            conn.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
