"""Off-site backup storage and the controller's ``backup.env``.

With ``gemnar:backupOffsiteRegion`` set, a ``vultr.ObjectStorage`` subscription is declared in
that region (cluster and tier by id from config: data sources would call Vultr's API during every
preview) (which must differ from the nodes': the copies have to outlive the region), and
its endpoint and keys, which Vultr hands out as outputs, go as Pulumi secrets over SSH into the
controller's root-only ``backup.env`` together with the backup encryption secret (derived from
the stack's secret seed, so whoever holds the stack can decrypt) and the retention counts.
Nothing of this goes into user data: changing it must not replace the controller, and any
process on the instance could read user data.

The bucket itself is created by the first backup run (``S3Store.ensure_bucket``): the Vultr
provider has no bucket resource, and the subscription's keys are all that is needed for it. Its
name is derived from the seed (``bucket_name``) and exported as the secret ``backupBucket``.
Without a region the file still arrives (key and retention), and backups stay on the controller.
The subscription is protected: deleting it would delete every off-site backup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import ediri_vultr as vultr
import pulumi
from pulumi_command import remote

from components.component import Component, Outputs
from components.host_secrets import (
    PGBOUNCER_ADMIN_PURPOSE,
    HostSecrets,
    HostSecretsArgs,
    derive_secret,
    render_env_file,
)
from components.node_command import OnNode
from provisioning.settings import ControllerPaths

BACKUP_ENV = f"{ControllerPaths().secrets_dir}/backup.env"
# Nothing needs restarting: each timer run reads the file afresh.
NO_HOOK = "/bin/true"
KEY_PURPOSE = "backup-encryption-key"


@dataclass(frozen=True)
class ExternalS3:
    """An S3 server that is not Vultr's (the lab stack's own): used instead of a subscription."""

    endpoint: pulumi.Input[str]
    access_key: pulumi.Input[str]
    secret_key: pulumi.Input[str]
    region: str = "us-east-1"


@dataclass(frozen=True)
class OffsiteStorageArgs(OnNode):
    path: str
    seed: pulumi.Input[str]
    keep_daily: int
    keep_weekly: int
    keep_monthly: int
    region: str = ""
    cluster_id: int = 0
    tier_id: int = 0
    ssh_user: str = "root"
    external: ExternalS3 | None = None
    # The app's media bucket (``GEMNAR_MEDIA_S3_*``, as the workers get them), when media live
    # in object storage: the backup copies media from there.
    media_env: pulumi.Input[Mapping[str, str]] | None = None


def bucket_name(seed: str) -> str:
    """Bucket names are global on a Vultr cluster: a suffix derived from the seed keeps ours
    unique and stable without another config key."""
    return f"gemnar-backups-{derive_secret(seed, 'backup-bucket')[:16]}"


def backup_env(seed: str, args: OffsiteStorageArgs, s3: Mapping[str, str] | None,
               media: Mapping[str, str] | None = None) -> str:
    """The env file's text (pure; ``s3`` holds endpoint and keys when there is a bucket,
    ``media`` the media bucket's ``GEMNAR_MEDIA_S3_*`` when media live in one)."""
    values = {
        "GEMNAR_BACKUP_KEY": derive_secret(seed, KEY_PURPOSE),
        "GEMNAR_PGBOUNCER_ADMIN_PASSWORD": derive_secret(seed, PGBOUNCER_ADMIN_PURPOSE),
        "GEMNAR_BACKUP_KEEP_DAILY": str(args.keep_daily),
        "GEMNAR_BACKUP_KEEP_WEEKLY": str(args.keep_weekly),
        "GEMNAR_BACKUP_KEEP_MONTHLY": str(args.keep_monthly),
    }
    if s3 is not None:
        endpoint = s3["hostname"] if "://" in s3["hostname"] else f"https://{s3['hostname']}"
        values |= {
            "GEMNAR_BACKUP_S3_ENDPOINT": endpoint,
            "GEMNAR_BACKUP_S3_BUCKET": bucket_name(seed),
            "GEMNAR_BACKUP_S3_REGION": s3.get("region", args.region),
            "GEMNAR_BACKUP_S3_ACCESS_KEY": s3["access_key"],
            "GEMNAR_BACKUP_S3_SECRET_KEY": s3["secret_key"],
        }
    for key, value in (media or {}).items():
        if not key.startswith("GEMNAR_MEDIA_S3_"):
            raise ValueError(f"{key}: only GEMNAR_MEDIA_S3_* describe the media bucket")
        values[key] = value
    return render_env_file(values)


class OffsiteStorage(Component[OffsiteStorageArgs]):
    """Object Storage in another region (optional) and the controller's backup.env."""

    bucket: pulumi.Output[str]
    endpoint: pulumi.Output[str]

    def build(self, name: str, args: OffsiteStorageArgs) -> Outputs:
        seed = pulumi.Output.secret(args.seed)
        external = args.external
        s3: pulumi.Output[dict[str, str] | None]
        if external is not None:
            s3 = pulumi.Output.all(
                external.endpoint, external.access_key, external.secret_key
            ).apply(lambda v: {"hostname": v[0], "access_key": v[1], "secret_key": v[2],
                               "region": external.region})
            self.endpoint = pulumi.Output.from_input(external.endpoint)
        elif args.region:
            storage = vultr.ObjectStorage(
                f"{name}-store",
                cluster_id=args.cluster_id,
                tier_id=args.tier_id,
                label=f"{name} (off-site backups)",
                opts=pulumi.ResourceOptions(
                    parent=self, protect=True,
                    additional_secret_outputs=["s3AccessKey", "s3SecretKey"]),
            )
            s3 = pulumi.Output.all(
                storage.s3_hostname, storage.s3_access_key, storage.s3_secret_key
            ).apply(lambda v: {"hostname": v[0], "access_key": v[1], "secret_key": v[2]})
            self.endpoint = storage.s3_hostname.apply(lambda h: f"https://{h}")
        else:
            s3 = pulumi.Output.from_input(None)
            self.endpoint = pulumi.Output.from_input("")
        media = pulumi.Output.from_input(args.media_env or {})
        content = pulumi.Output.all(seed, s3, media).apply(
            lambda v: backup_env(v[0], args, v[1], v[2]))
        HostSecrets(
            f"{name}-env",
            HostSecretsArgs(
                connection=args.connection,
                node_identity=args.node_identity,
                path=args.path,
                content=pulumi.Output.secret(content),
                ssh_user=args.ssh_user,
                hook=NO_HOOK,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        offsite = bool(args.region or external)
        self.bucket = seed.apply(lambda s: bucket_name(s) if offsite else "")
        return {"bucket": self.bucket, "endpoint": self.endpoint}


def offsite_args(cfg: object, connection: remote.ConnectionArgs, node_identity: pulumi.Input[str],
                 path: str, seed: pulumi.Input[str], ssh_user: str) -> OffsiteStorageArgs:
    """The component's args from the stack config's backup keys."""
    get = cfg.get  # type: ignore[attr-defined]
    return OffsiteStorageArgs(
        connection=connection, node_identity=node_identity, path=path, seed=seed,
        keep_daily=get("backupKeepDaily"), keep_weekly=get("backupKeepWeekly"),
        keep_monthly=get("backupKeepMonthly"), region=get("backupOffsiteRegion"),
        cluster_id=get("backupOffsiteClusterId"), tier_id=get("backupOffsiteTierId"),
        ssh_user=ssh_user,
    )
