"""What a backup run needs: from the controller's settings (paths, ports, names) and from the
root-only ``backup.env`` delivered over SSH (encryption secret, off-site bucket and keys,
retention).

Why retention and the bucket are in ``backup.env`` and not in the rendered settings: those come
from stack config and Pulumi outputs, and user data that changes replaces the controller; the
env file is rewritten in place by ``components/offsite_storage.py``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from backups.pgtools import PgTarget
from backups.retention import RetentionPolicy
from backups.status import STATUS_FILE_NAME
from backups.store import S3Location
from provisioning.settings import ControllerPaths, ControllerSettings

ENV_FILE_NAME = "backup.env"
METRICS_NAME = "gemnar_backup.prom"
METRICS_FILE = f"{ControllerPaths().node_exporter_textfile_dir}/{METRICS_NAME}"


class BackupConfigError(ValueError):
    """A missing or bad setting; the message names it."""


@dataclass(frozen=True)
class BackupConfig:
    database: str
    app_user: str
    pg: PgTarget
    backup_dir: Path
    status_file: Path
    metrics_file: Path | None
    secret: str = field(repr=False)
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    offsite: S3Location | None = None
    media_root: Path | None = None
    # The app's media bucket (django-storages), when media live in object storage: backed up
    # from there instead of ``media_root``.
    media_bucket: S3Location | None = None
    # The PgBouncer admin console, for pausing the app while a restored database is swapped in.
    pgbouncer: PgTarget | None = None

    @property
    def work_dir(self) -> Path:
        return self.backup_dir / ".work"


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY='value'`` lines as ``render_env_file`` writes them (comments and blanks skipped)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep:
            raise BackupConfigError(f"env file line is not KEY=value: {key[:40]!r}")
        parts = shlex.split(raw)
        values[key.strip()] = parts[0] if parts else ""
    return values


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise BackupConfigError(f"{key}={raw!r} is not an integer") from None


def retention_from_env(env: Mapping[str, str]) -> RetentionPolicy:
    try:
        return RetentionPolicy(
            daily=_int(env, "GEMNAR_BACKUP_KEEP_DAILY", 7),
            weekly=_int(env, "GEMNAR_BACKUP_KEEP_WEEKLY", 4),
            monthly=_int(env, "GEMNAR_BACKUP_KEEP_MONTHLY", 6),
        )
    except ValueError as error:
        raise BackupConfigError(str(error)) from None


def offsite_from_env(env: Mapping[str, str]) -> S3Location | None:
    """The off-site bucket, or None when the env file names none (the dump stays local)."""
    return _bucket_from_env(env, "BACKUP", "off-site bucket",
                            prefix=env.get("GEMNAR_BACKUP_S3_PREFIX", ""))


def media_bucket_from_env(env: Mapping[str, str]) -> S3Location | None:
    """The media bucket, named by the same ``GEMNAR_MEDIA_S3_*`` variables the workers' app
    reads, or None when media are a directory. No key prefix: the app writes none."""
    return _bucket_from_env(env, "MEDIA", "media bucket")


def _bucket_from_env(env: Mapping[str, str], kind: str, what: str,
                     prefix: str = "") -> S3Location | None:
    """The bucket ``GEMNAR_<kind>_S3_*`` names, or None without a bucket name; an endpoint
    without a scheme is https. Both buckets upload with the backup's checksum setting."""
    def var(name: str) -> str:
        return f"GEMNAR_{kind}_S3_{name}"

    if not env.get(var("BUCKET")):
        return None
    missing = [k for k in (var("ENDPOINT"), var("ACCESS_KEY"), var("SECRET_KEY"))
               if not env.get(k)]
    if missing:
        raise BackupConfigError(f"{what} set but {', '.join(missing)} missing")
    endpoint = env[var("ENDPOINT")]
    return S3Location(
        endpoint=endpoint if "://" in endpoint else f"https://{endpoint}",
        bucket=env[var("BUCKET")],
        access_key=env[var("ACCESS_KEY")],
        secret_key=env[var("SECRET_KEY")],
        region=env.get(var("REGION")) or "us-east-1",
        prefix=prefix,
        checksum_algorithm=env.get("GEMNAR_BACKUP_S3_CHECKSUM", "SHA256"),
    )


def from_controller(settings: ControllerSettings, env: Mapping[str, str]) -> BackupConfig:
    """The prod/local layout: PostgreSQL and PgBouncer on their sockets as ``postgres``."""
    secret = env.get("GEMNAR_BACKUP_KEY", "")
    if len(secret) < 32:
        raise BackupConfigError("GEMNAR_BACKUP_KEY is missing or shorter than 32 characters")
    paths = settings.paths
    admin = settings.db.admin_user
    pg = PgTarget(paths.postgres_run_dir, settings.ports.postgres, admin,
                  env.get("GEMNAR_BACKUP_PG_PASSWORD") or None,
                  bin_dir=paths.postgres_bin_dir)
    bouncer_password = env.get("GEMNAR_PGBOUNCER_ADMIN_PASSWORD") or None
    return BackupConfig(
        database=settings.db.database,
        app_user=settings.db.app_user,
        pg=pg,
        backup_dir=Path(paths.backup_dir),
        status_file=Path(PurePosixPath(paths.state_dir) / STATUS_FILE_NAME),
        metrics_file=Path(env.get("GEMNAR_BACKUP_METRICS_FILE")
                          or os.environ.get("GEMNAR_BACKUP_METRICS_FILE")
                          or f"{paths.node_exporter_textfile_dir}/{METRICS_NAME}"),
        secret=secret,
        retention=retention_from_env(env),
        offsite=offsite_from_env(env),
        media_root=Path(paths.media_root),
        media_bucket=media_bucket_from_env(env),
        pgbouncer=PgTarget(paths.pgbouncer_run_dir, settings.ports.pgbouncer, admin,
                           bouncer_password, bin_dir=paths.postgres_bin_dir),
    )


def env_file_path(settings: ControllerSettings) -> Path:
    return Path(PurePosixPath(settings.paths.secrets_dir) / ENV_FILE_NAME)
