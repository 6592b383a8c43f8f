"""Shared media in S3-compatible object storage: the bucket, the controller's ``/media/`` and
what each worker's app needs to write to it.

Where the S3 API is comes from the platform (``Nodes.media_storage``): on Vultr a
``vultr.ObjectStorage`` subscription in the nodes' own region (``vultr_media_storage``: media
are read on every page view through the controller, so they stay near it; backups go to
another region), in the lab the lab's own S3 server. The local platform has none: its nodes
share a directory.

Nothing here goes into user data: the subscription is created in the same ``up`` and the lab's
user data must stay Vultr's byte for byte. Instead, over SSH:

- the controller gets the rendered ``location /media/`` (``provisioning.media``, no secret:
  Nginx reads objects anonymously) and reloads Nginx, keeping the previous file when
  ``nginx -t`` rejects the new one;
- each worker's root-only secrets file gets endpoint, bucket, region and keys
  (``worker_env``, merged by the program into the file ``HostSecrets`` writes).

The bucket is created, and its read-only object policy set, by ``python -m mediastore ensure``
on the deployer (the Vultr provider has no bucket resource), with the keys in the command's
environment, never on its command line.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import ediri_vultr as vultr
import pulumi
from pulumi_command import local, remote

from components.component import Component, Outputs
from components.host_secrets import derive_secret
from components.nodes import as_root
from components.offsite_storage import ExternalS3
from project import PROJECT_ROOT
from provisioning.media import MediaBucket, render_nginx_media
from provisioning.settings import ControllerSettings

# SigV4 needs a region name; Vultr's and the lab's S3 servers accept this one.
DEFAULT_REGION = "us-east-1"


def media_bucket_name(seed: str) -> str:
    """Bucket names are global on a Vultr cluster: a suffix derived from the seed keeps ours
    unique and stable without another config key (as the backups' bucket)."""
    return f"gemnar-media-{derive_secret(seed, 'media-bucket')[:16]}"


def worker_media_env(bucket: MediaBucket, access_key: str, secret_key: str) -> dict[str, str]:
    """The ``GEMNAR_MEDIA_S3_*`` variables of a worker's secrets file (pure)."""
    return {
        "GEMNAR_MEDIA_S3_ENDPOINT": bucket.endpoint,
        "GEMNAR_MEDIA_S3_BUCKET": bucket.bucket,
        "GEMNAR_MEDIA_S3_REGION": bucket.region,
        "GEMNAR_MEDIA_S3_ACCESS_KEY": access_key,
        "GEMNAR_MEDIA_S3_SECRET_KEY": secret_key,
    }


# How the controller checks and reloads its Nginx (systemd on Vultr and in the lab).
NGINX_CHECK = "nginx -t -q"
NGINX_RELOAD = "systemctl reload nginx"


def install_media_conf(path: str, check: str = NGINX_CHECK, reload: str = NGINX_RELOAD) -> str:
    """Shell: stdin becomes ``path``; Nginx reloads if ``check`` accepts it, else the
    previous file is put back (a broken include would stop every later reload)."""
    p = shlex.quote(path)
    return (
        "set -eu; umask 022; "
        f"install -d -m 0755 \"$(dirname {p})\"; cat > {p}.new; "
        f"if [ -f {p} ]; then cp -p {p} {p}.old; fi; mv -f {p}.new {p}; "
        f"if ! {check}; then if [ -f {p}.old ]; then mv -f {p}.old {p}; fi; "
        "echo 'nginx rejected the new /media/ configuration; the previous one stays' >&2; "
        "exit 1; fi; "
        f"rm -f {p}.old; {reload}"
    )


class VultrMediaStorage(pulumi.ComponentResource):
    """A Vultr Object Storage subscription for media in the nodes' region, as the S3 API it
    offers (``external``). Protected: deleting it deletes every upload."""

    endpoint: pulumi.Output[str]
    external: ExternalS3

    def __init__(self, name: str, cluster_id: int, tier_id: int,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("gemnar:infra:VultrMediaStorage", name, None, opts)
        storage = vultr.ObjectStorage(
            f"{name}-subscription",
            cluster_id=cluster_id,
            tier_id=tier_id,
            label=f"{name} (media)",
            opts=pulumi.ResourceOptions(
                parent=self, protect=True,
                additional_secret_outputs=["s3AccessKey", "s3SecretKey"]),
        )
        self.endpoint = storage.s3_hostname.apply(lambda h: h if "://" in h else f"https://{h}")
        self.external = ExternalS3(
            endpoint=self.endpoint,
            access_key=pulumi.Output.secret(storage.s3_access_key),
            secret_key=pulumi.Output.secret(storage.s3_secret_key),
            region=DEFAULT_REGION,
        )
        self.register_outputs({"endpoint": self.endpoint})


@dataclass(frozen=True)
class MediaStorageArgs:
    storage: ExternalS3
    seed: pulumi.Input[str]
    # The controller, over SSH: its Nginx serves /media/.
    connection: remote.ConnectionArgs
    node_identity: pulumi.Input[str]
    # The controller's settings (paths, resolver) the media file is rendered for.
    settings: ControllerSettings
    # Where that file is on the node (``NodeHandle.path`` of the prod path).
    media_file: str
    ssh_user: str = "root"
    # Node facts: how its Nginx is checked and reloaded.
    nginx_check: str = NGINX_CHECK
    nginx_reload: str = NGINX_RELOAD


class MediaStorage(Component[MediaStorageArgs]):
    """The media bucket, the controller's /media/ and the workers' media environment."""

    bucket: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    worker_env: pulumi.Output[dict[str, str]]

    def build(self, name: str, args: MediaStorageArgs) -> Outputs:
        storage = args.storage
        region = storage.region
        seed = pulumi.Output.secret(args.seed)
        location = pulumi.Output.all(seed, storage.endpoint).apply(
            lambda v: MediaBucket(str(v[1]), media_bucket_name(str(v[0])), region))
        python = str(PROJECT_ROOT / ".venv" / "bin" / "python")
        ensured = local.Command(
            f"{name}-bucket",
            create=location.apply(lambda b: shlex.join([
                python, "-m", "mediastore", "ensure", "--endpoint", b.endpoint,
                "--bucket", b.bucket, "--region", b.region])),
            environment={
                "PYTHONPATH": str(PROJECT_ROOT),
                "GEMNAR_MEDIA_S3_ACCESS_KEY": pulumi.Output.secret(storage.access_key),
                "GEMNAR_MEDIA_S3_SECRET_KEY": pulumi.Output.secret(storage.secret_key),
            },
            dir=str(PROJECT_ROOT),
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        remote.Command(
            f"{name}-nginx",
            connection=args.connection,
            create=as_root(install_media_conf(args.media_file, args.nginx_check,
                                              args.nginx_reload), args.ssh_user),
            stdin=location.apply(lambda b: render_nginx_media(b, args.settings)),
            add_previous_output_in_env=False,
            # A replaced controller needs the file again; a new bucket or endpoint rewrites it.
            triggers=[args.node_identity, location.apply(lambda b: b.endpoint + "/" + b.bucket)],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ensured]),
        )
        self.bucket = location.apply(lambda b: b.bucket)
        self.endpoint = location.apply(lambda b: b.endpoint)
        self.worker_env = pulumi.Output.secret(pulumi.Output.all(
            location, storage.access_key, storage.secret_key,
        ).apply(lambda v: worker_media_env(v[0], str(v[1]), str(v[2]))))
        return {"bucket": self.bucket, "endpoint": self.endpoint}
