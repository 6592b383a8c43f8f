"""``components.media_storage.MediaStorage`` through the real engine and the command provider:
the bucket is created on a real S3 server (moto) from the deployer, the controller's Nginx
(a real one, reached over a real sshd) gets the bucket's ``/media/`` and reloads, and then
serves an object from the bucket; a rejected file is put back."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pulumi
import pytest

from components.media_storage import MediaStorage, MediaStorageArgs, media_bucket_name
from components.offsite_storage import ExternalS3
from mediastore import read_policy
from tests.support.daemons import loopback_controller_settings, running_nginx, state_directory
from tests.support.s3_server import s3_server

from .harness import Engine, prepare_engine, running_sshd, trusted_key

pytestmark = [pytest.mark.e2e, pytest.mark.daemons]

SEED = "media-storage-engine-test-seed-0123456789abcdef"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return prepare_engine(tmp_path_factory.mktemp("media-engine"))


def test_media_storage_through_the_engine(engine: Engine, tmp_path: Path) -> None:
    client_key = trusted_key(tmp_path)
    bucket = media_bucket_name(SEED)
    with (
        s3_server() as s3,
        state_directory("gemnar-media-engine-") as root,
        running_sshd(tmp_path / "sshd", tmp_path / "authorized_keys") as sshd,
    ):
        settings = loopback_controller_settings(root)
        paths = settings.paths
        nginx = f"nginx -c {paths.nginx_conf_file} -e {paths.nginx_error_log}"

        def program() -> None:
            media = MediaStorage("gemnar-media", MediaStorageArgs(
                storage=ExternalS3(endpoint=s3.endpoint,
                                   access_key=pulumi.Output.secret(s3.access_key),
                                   secret_key=pulumi.Output.secret(s3.secret_key)),
                seed=pulumi.Output.secret(SEED),
                connection=sshd.connection(client_key, host_key=sshd.host_key),
                node_identity="controller-1",
                settings=settings,
                media_file=paths.nginx_media_file,
                ssh_user="root",
                nginx_check=f"{nginx} -t -q",
                nginx_reload=f"{nginx} -s reload",
            ))
            pulumi.export("workerEnv", media.worker_env)

        with running_nginx(settings):
            stack = engine.stack("media", program)
            try:
                result = stack.up()
                # The keys leave only as a secret output (the program itself exports none).
                assert result.outputs["workerEnv"].secret
                env = result.outputs["workerEnv"].value
                assert env["GEMNAR_MEDIA_S3_BUCKET"] == bucket
                assert env["GEMNAR_MEDIA_S3_SECRET_KEY"] == s3.secret_key
                # The state on disk (the file backend) holds the keys only encrypted.
                stored = "".join(p.read_text(errors="replace")
                                 for p in engine.backend.rglob("*.json"))
                assert "gemnar-media" in stored and s3.secret_key not in stored
                client = s3.client()
                policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
                assert policy == read_policy(bucket)
                client.put_object(Bucket=bucket, Key="uploads/abc.png", Body=b"\x89PNG-ish",
                                  ContentType="image/png")
                assert f"/{bucket}/$1? break;" in Path(paths.nginx_media_file).read_text()
                base = f"https://{settings.private_address}:{settings.ports.https}"
                with httpx.Client(base_url=base, verify=False, timeout=10) as http:
                    served = http.get("/media/uploads/abc.png")
                assert served.status_code == 200 and served.content == b"\x89PNG-ish"
            finally:
                stack.destroy()
                stack.workspace.remove_stack("media")
