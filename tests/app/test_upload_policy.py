"""The sample upload: signed in only, passive types checked by content, generated names, and
a free-space floor above the health check's (pure table tests, then the live view)."""

from __future__ import annotations

import httpx
import pytest
from gemnar_app_fixtures import Worker
from sampleproject import upload_policy as policy
from test_app_cluster import login

pytestmark = pytest.mark.daemons

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
HEALTH = {"min_disk_free_mb": 256.0, "min_disk_free_percent": 5.0}
GB = 2**30


@pytest.mark.parametrize(("name", "head", "size", "status"), [
    ("a.png", PNG, 100, None),
    ("A.JPG", b"\xff\xd8\xff\xe0", 100, None),
    ("notes.txt", "plain text, ünïcode\n".encode(), 100, None),
    ("notes.txt", "é".encode()[:1], 1, None),  # a character cut at the head's end
    ("evil.html", b"<script>", 100, 415),
    ("evil.svg", b"<svg xmlns='http://www.w3.org/2000/svg'>", 100, 415),
    ("evil.png", b"<html><script>", 100, 415),  # the name lies
    ("evil.txt", b"<script>alert(1)</script>", 100, 415),
    ("bin.txt", b"\xff\xfe\x00\x00" * 8, 100, 415),
    ("noext", PNG, 100, 415),
    ("big.png", PNG, policy.MAX_UPLOAD_BYTES + 1, 413),
])
def test_content_rules(name: str, head: bytes, size: int, status: int | None) -> None:
    refusal = policy.check_content(name, head, size)
    assert (refusal.status if refusal else None) == status


def test_free_space_floor_sits_above_the_health_floor() -> None:
    total = 100 * GB
    assert policy.check_free_space(50 * GB, total, 1024, HEALTH) is None
    # 600 MB left: above health's 256 MB, below 256 + 512: refused before health fails.
    refusal = policy.check_free_space(600 * 2**20 + 1024, total, 1024, HEALTH)
    assert refusal and refusal.status == 507
    # Percent floor: 6 % free is above health's 5 % but below 5 + 2.
    refusal = policy.check_free_space(6 * GB, total, 0, HEALTH)
    assert refusal and refusal.status == 507


def test_stored_names_are_generated() -> None:
    names = {policy.stored_name("../../etc/passwd.txt") for _ in range(50)}
    assert len(names) == 50
    assert all(len(n) == 36 and n.endswith(".txt") and "/" not in n for n in names)


def test_anonymous_and_active_uploads_are_refused(worker_a: Worker) -> None:
    with worker_a.client() as client:
        client.get("/upload/")
        token = client.cookies["csrftoken"]
        anonymous = client.post("/upload/", data={"csrfmiddlewaretoken": token},
                                files={"file": ("a.txt", b"hello", "text/plain")})
        assert anonymous.status_code == 403
        client.cookies = login(worker_a)
        client.get("/upload/")
        token = client.cookies["csrftoken"]
        html = client.post("/upload/", data={"csrfmiddlewaretoken": token},
                           files={"file": ("x.html", b"<script>alert(1)</script>", "text/html")})
        assert html.status_code == 415, html.text
        ok = client.post("/upload/", data={"csrfmiddlewaretoken": token},
                         files={"file": ("p.png", PNG, "image/png")})
        assert ok.status_code == 201, ok.text
        assert isinstance(ok, httpx.Response) and ok.json()["name"].endswith(".png")
