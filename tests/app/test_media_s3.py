"""Media in an S3 bucket, for real: moto's S3 server, the sample app with django-storages, and
the controller's prod-rendered Nginx ``/media/`` proxying (and caching) the bucket.

An upload goes through a real worker (signed in, CSRF, upload policy) into the bucket; the file
comes back through Nginx with the site's security headers and none of the bucket's own; a
listing of the bucket, a sub-resource, a PUT or a DELETE through Nginx are refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

import httpx
import pytest
from gemnar_app_fixtures import AppEnv, Worker, WorkerFactory
from test_app_cluster import login

from mediastore import ensure_bucket, read_policy
from provisioning.media import MediaBucket
from provisioning.nginx import MEDIA_CSP
from provisioning.settings import ControllerSettings
from tests.support.daemons import loopback_controller_settings, running_nginx, state_directory
from tests.support.dns import dns_server
from tests.support.s3_server import S3Server, s3_server

pytestmark = pytest.mark.daemons

BUCKET = "gemnar-media-test"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@dataclass
class MediaSite:
    s3: S3Server
    worker: Worker
    nginx: ControllerSettings

    def client(self) -> httpx.Client:
        base = f"https://{self.nginx.private_address}:{self.nginx.ports.https}"
        return httpx.Client(base_url=base, verify=False, timeout=10)


@pytest.fixture(scope="module")
def site(worker_factory: WorkerFactory) -> Iterator[MediaSite]:
    with s3_server() as s3, state_directory("gemnar-media-") as root:
        assert ensure_bucket(s3.client(), BUCKET) is True
        worker = worker_factory(
            "worker-s3",
            GEMNAR_MEDIA_ROOT=None,
            GEMNAR_MEDIA_S3_ENDPOINT=s3.endpoint,
            GEMNAR_MEDIA_S3_BUCKET=BUCKET,
            GEMNAR_MEDIA_S3_REGION=s3.region,
            GEMNAR_MEDIA_S3_ACCESS_KEY=s3.access_key,
            GEMNAR_MEDIA_S3_SECRET_KEY=s3.secret_key,
        )
        settings = loopback_controller_settings(root)
        with running_nginx(settings, media=MediaBucket(s3.endpoint, BUCKET, s3.region)):
            yield MediaSite(s3, worker, settings)
        worker.daemon.stop()


def upload(worker: Worker, name: str, payload: bytes, content_type: str) -> dict[str, str]:
    with worker.client() as client:
        client.cookies = login(worker)
        client.get("/upload/")
        response = client.post(
            "/upload/",
            data={"csrfmiddlewaretoken": client.cookies["csrftoken"]},
            files={"file": (name, payload, content_type)},
        )
    assert response.status_code == 201, response.text[:500]
    body: dict[str, str] = response.json()
    return body


def test_ensure_bucket_sets_only_an_object_read_policy(site: MediaSite) -> None:
    client = site.s3.client()
    assert ensure_bucket(client, BUCKET) is False  # present: not created twice
    policy = json.loads(client.get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert policy == read_policy(BUCKET)
    (statement,) = policy["Statement"]
    assert statement["Action"] == ["s3:GetObject"]
    assert statement["Resource"] == [f"arn:aws:s3:::{BUCKET}/*"]


def test_upload_lands_in_the_bucket_and_comes_back_through_nginx(site: MediaSite) -> None:
    payload = b"stored in the bucket\n" * 50
    body = upload(site.worker, "notes.txt", payload, "text/plain")
    # The site's own URL, never the bucket's: Nginx is the only way visitors see.
    assert re.fullmatch(r"/media/uploads/[0-9a-f]{32}\.txt", body["url"]), body["url"]
    stored = site.s3.client().get_object(Bucket=BUCKET, Key=body["name"])
    assert stored["Body"].read() == payload
    assert stored["ContentType"].startswith("text/plain")
    with site.client() as client:
        first = client.get(body["url"])
        second = client.get(body["url"])
        head = client.head(body["url"])
    for response in (first, second):
        assert response.status_code == 200
        assert response.content == payload
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-security-policy"] == MEDIA_CSP
        # Text is not a passive type: a download, never rendered in the site's origin.
        assert headers["content-disposition"] == "attachment"
        assert "max-age=31536000" in headers["strict-transport-security"]
        assert not [name for name in headers if name.lower().startswith("x-amz-")], headers
    # The second read comes from the controller's cache, not the bucket.
    assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("MISS", "HIT")
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(payload)


def test_a_passive_image_is_shown_inline(site: MediaSite) -> None:
    body = upload(site.worker, "pixel.png", PNG, "image/png")
    with site.client() as client:
        response = client.get(body["url"])
    assert response.status_code == 200 and response.content == PNG
    assert "content-disposition" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_bucket_cannot_be_listed_through_nginx(site: MediaSite) -> None:
    body = upload(site.worker, "listed.txt", b"one\n", "text/plain")
    key = body["name"]
    with site.client() as client:
        for path in ("/media/", "/media/?list-type=2", "/media/uploads/",
                     "/media/uploads/?list-type=2&prefix=", "/media/.hidden",
                     "/media/uploads/../uploads/"):
            response = client.get(path)
            assert response.status_code == 404, (path, response.status_code)
            assert key.split("/")[-1] not in response.text, path
            assert BUCKET not in response.text, path
        # A sub-resource query is dropped: the object itself comes back, not its ACL.
        acl = client.get(f"{body['url']}?acl")
        assert acl.status_code == 200 and acl.content == b"one\n"
        versions = client.get("/media/uploads?versions")
        assert versions.status_code == 404 and BUCKET not in versions.text


def test_nothing_is_written_or_deleted_through_nginx(site: MediaSite) -> None:
    body = upload(site.worker, "keep.txt", b"keep me\n", "text/plain")
    with site.client() as client:
        put = client.put("/media/uploads/planted.txt", content=b"<script>alert(1)</script>")
        delete = client.delete(body["url"])
        post = client.post(body["url"], content=b"x")
        missing = client.get("/media/uploads/" + "0" * 32 + ".txt")
    assert (put.status_code, delete.status_code, post.status_code) == (405, 405, 405)
    objects = site.s3.client().list_objects_v2(Bucket=BUCKET, Prefix="uploads/")
    keys = {item["Key"] for item in objects.get("Contents", [])}
    assert body["name"] in keys and "uploads/planted.txt" not in keys
    # A missing object is a plain 404: the bucket's error document (naming it) stays inside.
    assert missing.status_code == 404 and BUCKET not in missing.text
    assert missing.headers["x-content-type-options"] == "nosniff"


def test_no_shared_directory_is_written(site: MediaSite, app_env: AppEnv) -> None:
    # With a bucket nothing lands on a disk of ours (the other workers' shared root here).
    before = sorted(app_env.media_root.rglob("*"))
    body = upload(site.worker, "where.txt", b"where\n", "text/plain")
    assert sorted(app_env.media_root.rglob("*")) == before
    assert not (app_env.media_root / body["name"]).exists()


def test_a_bucket_host_name_is_resolved_at_request_time(site: MediaSite) -> None:
    """Prod's endpoint is a name (``<region>.vultrobjects.com``): Nginx asks its resolver when
    a request needs it, not once at start-up (a stale address would outlive a move)."""
    body = upload(site.worker, "named.txt", b"by name\n", "text/plain")
    port = site.s3.endpoint.rsplit(":", 1)[1]
    with dns_server({"localhost": "127.0.0.1"}) as dns, \
            state_directory("gemnar-media-dns-") as root:
        settings = replace(loopback_controller_settings(root), dns_resolver=dns.resolver)
        bucket = MediaBucket(f"http://localhost:{port}", BUCKET, site.s3.region)
        assert bucket.by_name
        with running_nginx(settings, media=bucket):
            # Nothing asked yet: the name is not resolved when Nginx starts.
            assert dns.queries["localhost"] == 0
            base = f"https://{settings.private_address}:{settings.ports.https}"
            with httpx.Client(base_url=base, verify=False, timeout=10) as client:
                response = client.get(body["url"])
        assert response.status_code == 200 and response.content == b"by name\n"
        assert dns.queries["localhost"] >= 1
