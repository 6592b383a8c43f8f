"""The program's off-site storage, with Pulumi mocks for Vultr only: Object Storage in another
region, protected, its keys and the backup secret only in the secret stdin of the SSH write
into the root-only ``backup.env``; and the config keys' rules."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from backups.config import (
    from_controller,
    media_bucket_from_env,
    offsite_from_env,
    parse_env_file,
    retention_from_env,
)
from components.host_secrets import derive_secret
from components.offsite_storage import (
    BACKUP_ENV,
    KEY_PURPOSE,
    OffsiteStorageArgs,
    backup_env,
    bucket_name,
)
from provisioning.settings import ControllerSettings
from stack_config import ConfigError
from tests.program.conftest import fresh_pulumi_runtime  # noqa: F401  (autouse, as there)
from tests.program.harness import (
    SEED,
    Declared,
    config,
    declare,
    is_secret,
    reveal,
)

STORAGE = "vultr:index/objectStorage:ObjectStorage"


def backup_storage(resources: list[Declared]) -> list[Declared]:
    """The backups' subscriptions (media have one of their own: components.media_storage)."""
    return [d for d in resources if d.type == STORAGE and d.name.startswith("gemnar-backups")]
OFFSITE = {"backupOffsiteRegion": "fra", "backupOffsiteClusterId": "7",
           "backupOffsiteTierId": "3", "backupKeepDaily": "5"}


@pulumi.runtime.test
def test_offsite_storage_and_its_secrets_reach_only_the_root_only_file() -> pulumi.Output[None]:
    exports, declared = declare(config(**OFFSITE))

    def check(values: list[Any]) -> None:
        resources: list[Declared] = values[0]
        storage = backup_storage(resources)
        assert len(storage) == 1
        assert storage[0].plain["clusterId"] == 7 and storage[0].plain["tierId"] == 3
        assert storage[0].opts.protect is True
        write = next(d for d in resources if d.name == "gemnar-backups-env-write")
        assert is_secret(write.inputs["stdin"])
        assert BACKUP_ENV in write.plain["create"]
        env = parse_env_file(reveal(write.inputs["stdin"]))
        assert env["GEMNAR_BACKUP_KEY"] == derive_secret(SEED, KEY_PURPOSE)
        assert env["GEMNAR_BACKUP_S3_SECRET_KEY"] == "mock-s3-secret-key"
        # What the controller's backup tool makes of that file.
        location = offsite_from_env(env)
        assert location is not None
        assert location.endpoint == "https://fra1.vultrobjects.com"
        assert location.bucket == bucket_name(SEED) and location.region == "fra"
        assert retention_from_env(env).daily == 5
        cfg = from_controller(ControllerSettings("10.20.0.3", "10.20.0.0/24", 16384, 6, 10), env)
        assert cfg.offsite == location and cfg.secret == env["GEMNAR_BACKUP_KEY"]
        for d in resources:
            if d.name != "gemnar-backups-env-write" and "userData" in d.plain:
                assert "mock-s3-secret-key" not in d.plain["userData"]
                assert env["GEMNAR_BACKUP_KEY"] not in d.plain["userData"]

    return pulumi.Output.all(declared, *exports.values()).apply(check)


@pulumi.runtime.test
def test_without_a_region_backups_stay_local_but_get_their_key() -> pulumi.Output[None]:
    _, declared = declare(config())

    def check(resources: list[Declared]) -> None:
        assert not backup_storage(resources)
        write = next(d for d in resources if d.name == "gemnar-backups-env-write")
        env = parse_env_file(reveal(write.inputs["stdin"]))
        assert "GEMNAR_BACKUP_S3_BUCKET" not in env and env["GEMNAR_BACKUP_KEY"]
        assert retention_from_env(env).monthly == 6

    return declared.apply(check)


@pytest.mark.parametrize(("overrides", "bad_key"), [
    ({"backupOffsiteRegion": "ams", "backupOffsiteClusterId": "1",
      "backupOffsiteTierId": "1"}, "backupOffsiteRegion"),
    ({"backupOffsiteRegion": "fra"}, "backupOffsiteRegion"),
    ({"backupKeepDaily": "0", "backupKeepWeekly": "0", "backupKeepMonthly": "0"},
     "backupKeepDaily"),
    ({"backupKeepWeekly": "-1"}, "backupKeepWeekly"),
])
def test_bad_backup_keys_are_named(overrides: dict[str, str], bad_key: str) -> None:
    with pytest.raises(ConfigError) as error:
        config(**overrides)
    assert bad_key in error.value.problems


def test_an_external_s3_server_fills_the_same_file() -> None:
    # The lab stack's own S3 server instead of a Vultr subscription.
    args = OffsiteStorageArgs(connection=None, node_identity="", path=BACKUP_ENV,  # type: ignore[arg-type]
                              seed=SEED, keep_daily=7, keep_weekly=4, keep_monthly=6)
    env = parse_env_file(backup_env(SEED, args, {
        "hostname": "http://10.99.0.2:9000", "access_key": "a", "secret_key": "s",
        "region": "lab"}))
    location = offsite_from_env(env)
    assert location is not None
    assert (location.endpoint, location.region) == ("http://10.99.0.2:9000", "lab")
    assert location.bucket == bucket_name(SEED)


def test_the_media_bucket_reaches_the_backup_as_the_app_names_it() -> None:
    args = OffsiteStorageArgs(connection=None, node_identity="", path=BACKUP_ENV,  # type: ignore[arg-type]
                              seed=SEED, keep_daily=7, keep_weekly=4, keep_monthly=6)
    media = {"GEMNAR_MEDIA_S3_ENDPOINT": "https://ams1.vultrobjects.com",
             "GEMNAR_MEDIA_S3_BUCKET": "gemnar-media-0123456789abcdef",
             "GEMNAR_MEDIA_S3_REGION": "us-east-1", "GEMNAR_MEDIA_S3_ACCESS_KEY": "ma",
             "GEMNAR_MEDIA_S3_SECRET_KEY": "ms"}
    location = media_bucket_from_env(parse_env_file(backup_env(SEED, args, None, media)))
    assert location is not None
    assert (location.endpoint, location.bucket, location.access_key, location.secret_key) == (
        "https://ams1.vultrobjects.com", "gemnar-media-0123456789abcdef", "ma", "ms")
    # Without a media bucket the backup copies the media directory.
    assert media_bucket_from_env(parse_env_file(backup_env(SEED, args, None))) is None
    with pytest.raises(ValueError, match="GEMNAR_MEDIA_S3_"):
        backup_env(SEED, args, None, {"GEMNAR_BACKUP_KEY": "overridden"})
