"""Media in the program (Pulumi mocks for Vultr only): a subscription in the nodes' region on
Vultr, the lab's S3 server in the lab, none on the local platform; the bucket's keys reach only
the secret stdin of each worker's root-only secrets file, the controller gets its ``/media/``
over SSH, and nothing of it is in user data.
"""

from __future__ import annotations

import json
import shlex

import pulumi

from backups.config import parse_env_file
from components.media_storage import install_media_conf, media_bucket_name, worker_media_env
from mediastore import POLICY_SID
from provisioning.media import MediaBucket
from provisioning.settings import ControllerPaths, WorkerPaths
from tests.program.harness import SEED, Declared, config, declare, is_secret, reveal
from tests.program.test_lab_program import config as platform_config
from tests.program.test_lab_program import declared as lab_declared

BUCKET = media_bucket_name(SEED)


def parse_env(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key: value.strip('"') for key, value in pairs}


def depends_on(d: Declared) -> list[object]:
    return list(d.opts.depends_on or [])  # type: ignore[arg-type]  # a list here


def media_of(resources: list[Declared], endpoint: str, access: str, secret: str) -> None:
    by = {d.name: d for d in resources}
    # The bucket: created and given its read policy from the deployer, keys in the secret
    # environment only (never on the command line, which failure messages show).
    ensure = by["gemnar-media-bucket"]
    create = reveal(ensure.inputs["create"])
    assert "-m mediastore ensure" in create and BUCKET in create and endpoint in create
    assert access not in create and secret not in create
    env = ensure.inputs["environment"]
    # Secret as a whole or key by key, as the engine serialised it.
    assert is_secret(env) or is_secret(env["GEMNAR_MEDIA_S3_SECRET_KEY"])
    assert reveal(env)["GEMNAR_MEDIA_S3_SECRET_KEY"] == secret
    # The controller's /media/: rendered for that bucket, checked by nginx -t, then reloaded.
    nginx = by["gemnar-media-nginx"]
    conf = reveal(nginx.inputs["stdin"])
    assert f"/{BUCKET}/$1? break;" in conf and "proxy_cache gemnar_media;" in conf
    assert secret not in conf and access not in conf
    assert reveal(nginx.inputs["create"]) == install_media_conf(ControllerPaths().nginx_media_file)
    assert by["gemnar-media-bucket"].resource in depends_on(nginx)
    # Each worker: its secrets file (secret stdin, root-only path) carries the bucket.
    expected = worker_media_env(MediaBucket(endpoint, BUCKET), access, secret)
    for worker in ("worker-0", "worker-1"):
        write = by[f"gemnar-{worker}-secrets-write"]
        assert is_secret(write.inputs["stdin"])
        assert WorkerPaths().app_secrets_env_file in reveal(write.inputs["create"])
        env_file = parse_env(reveal(write.inputs["stdin"]))
        assert {k: env_file[k] for k in expected} == expected
        # The bucket exists before any worker's app may write to it.
        assert by["gemnar-media"].resource in depends_on(by[f"gemnar-{worker}-secrets"])
    # The controller's backup.env names the same bucket: the nightly backup copies media
    # from it (backups/media.py), with the keys on secret stdin only.
    backup = by["gemnar-backups-env-write"]
    assert is_secret(backup.inputs["stdin"])
    backup_env = parse_env_file(reveal(backup.inputs["stdin"]))
    assert {k: backup_env[k] for k in expected} == expected
    # The controller's backup.env names the bucket too: the nightly backup copies it off-site.
    backup = by["gemnar-backups-env-write"]
    assert is_secret(backup.inputs["stdin"])
    backup_env = parse_env(reveal(backup.inputs["stdin"]).replace("'", ""))
    assert {k: backup_env[k] for k in expected} == expected
    for d in resources:
        text = json.dumps(reveal(d.inputs.get("userData", "")))
        assert secret not in text and access not in text and BUCKET not in text


@pulumi.runtime.test
def test_vultr_media_are_a_subscription_in_the_nodes_region() -> pulumi.Output[None]:
    exports, declared = declare(config(workerCount="2", mediaClusterId="4", mediaTierId="5"))

    def check(values: list[object]) -> None:
        resources: list[Declared] = values[0]  # type: ignore[assignment]
        (store,) = [d for d in resources if d.name == "gemnar-media-store-subscription"]
        assert store.plain["clusterId"] == 4 and store.plain["tierId"] == 5
        # Deleting it would delete every upload.
        assert store.opts.protect is True
        assert set(store.opts.additional_secret_outputs or []) >= {"s3AccessKey", "s3SecretKey"}
        media_of(resources, "https://fra1.vultrobjects.com", "mock-s3-access-key",
                 "mock-s3-secret-key")
        # No output carries the keys.
        assert "mock-s3-secret-key" not in json.dumps(reveal(values[1:]), default=str)

    return pulumi.Output.all(declared, *exports.values()).apply(check)


@pulumi.runtime.test
def test_lab_media_are_a_bucket_on_the_labs_s3_server() -> pulumi.Output[None]:
    def check(resources: list[Declared]) -> None:
        assert not [d for d in resources if d.type.startswith("vultr:")]
        media_of(resources, "http://192.0.2.2:9000", "mock-lab-access", "mock-lab-secret")

    return lab_declared(platform_config("lab")).apply(check)


def test_the_bucket_policy_lets_nginx_read_objects_only() -> None:
    from mediastore import read_policy

    (statement,) = read_policy(BUCKET)["Statement"]
    assert statement["Sid"] == POLICY_SID and statement["Action"] == ["s3:GetObject"]
    assert statement["Resource"] == [f"arn:aws:s3:::{BUCKET}/*"]


def test_the_media_conf_is_put_back_when_nginx_rejects_it() -> None:
    script = install_media_conf("/etc/nginx/gemnar/media.conf")
    assert script.index("nginx -t") < script.index("systemctl reload nginx")
    assert "mv -f /etc/nginx/gemnar/media.conf.old /etc/nginx/gemnar/media.conf" in script
    assert shlex.split(script)  # one shell string
