"""End-to-end: the local stack through the real engine, from first request to scale-in.

One session-wide stack serves every test; each test takes the state it needs from a fixture
(``two_workers``, ``three_workers``), so any test runs alone and in any order. The session
fixture's teardown destroys the stack and fails if any process or listening port is left.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from pulumi import automation as auto

from components.worker_scope import MEMBERSHIP_NAME, in_scope
from localnode.supervise import read_pid, stop_pid
from scaler.apply import event_record
from tests.e2e.conftest import LocalStack, SteadyLoad, request_count, served_by
from tests.support.resend import get_resending
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e


def test_requests_reach_both_workers(two_workers: LocalStack) -> None:
    assert set(served_by(two_workers)) == {"worker-0", "worker-1"}


def test_a_second_up_changes_nothing(two_workers: LocalStack) -> None:
    result = two_workers.up()
    assert set(result.summary.resource_changes or {}) == {"same"}, result.summary.resource_changes


def test_a_preview_adding_a_worker_shows_its_creates(two_workers: LocalStack) -> None:
    """The new worker's remote commands have a `connection` still unknown in preview (secret,
    the node not made yet): the command stand-in must let it through (it failed Check with
    "connection must be an object"). The preview creates worker-2's resources and updates only
    the membership."""
    events: list[dict[str, Any]] = []

    def keep(event: auto.EngineEvent) -> None:
        if (found := event_record(event)) is not None:
            events.append(found)

    request_count(two_workers.stack, 3)  # as `python -m scaler set-count 3`
    preview = two_workers.stack.preview(on_event=keep, color="never")
    steps = [(e["op"], e["urn"].rsplit("::", 1)[1]) for e in events
             if e["kind"] == "resource_pre_event"]
    created = sorted(name for op, name in steps if op == "create")
    updated = sorted(name for op, name in steps if op == "update")
    print("preview:", dict(preview.change_summary), "created:", created, "updated:", updated)
    assert created and all(in_scope(name, 2) for name in created), created
    # Only the membership's sync command changes (the balancer learns of worker-2).
    assert updated == [f"{MEMBERSHIP_NAME}-sync"], updated
    assert preview.change_summary.get(auto.OpType.CREATE) == len(created)
    assert any(name.endswith("-ready") for name in created), created  # a remote command
    assert not {op for op, _ in steps} & {"delete", "replace", "create-replacement"}, steps
    # The next fixture's `ensure` restores the committed count; nothing was deployed.


def test_http_redirects_to_https(two_workers: LocalStack) -> None:
    local_stack = two_workers
    response = httpx.get(f"http://{local_stack.controller}:8080/whoami/", follow_redirects=False)
    assert response.status_code == 301
    assert response.headers["location"] == f"{local_stack.site}/whoami/"


def test_login_session_survives_the_other_worker(
    two_workers: LocalStack, site_user: tuple[str, str]
) -> None:
    local_stack = two_workers
    username = site_user[0]
    with local_stack.client(headers={"Origin": local_stack.site}) as client:
        local_stack.sign_in(client, site_user)
        seen = {}
        for _ in range(12):
            me = get_resending(client, "/whoami/")[0].json()
            seen[me["worker"]] = me
        assert set(seen) == {"worker-0", "worker-1"}
        for me in seen.values():
            assert me["authenticated"] and me["username"] == username
            assert me["secure"] is True  # X-Forwarded-Proto trusted from the controller


def test_websocket_echo_through_nginx(two_workers: LocalStack) -> None:
    local_stack = two_workers
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    async def echo() -> str:
        url = f"wss://{local_stack.controller}:8443/ws/echo/"
        async with websockets.connect(
            url, ssl=context, origin=local_stack.site, open_timeout=10  # type: ignore[arg-type]
        ) as socket:
            await socket.send(json.dumps({"message": "ping through nginx"}))
            return str(await asyncio.wait_for(socket.recv(), 10))

    assert "ping through nginx" in asyncio.run(echo())


def test_foreign_origins_are_refused_through_nginx(two_workers: LocalStack) -> None:
    """The workers' ALLOWED_HOSTS and CSRF origins are the site's (rendered, never ``*``):
    Channels refuses a WebSocket from another origin, Django a form posted from one."""
    local_stack = two_workers
    for worker in ("worker-0", "worker-1"):
        env = (local_stack.node_root(worker) / "etc/gemnar/app.env").read_text()
        assert f'GEMNAR_ALLOWED_HOSTS="{local_stack.controller}"' in env
        assert f'GEMNAR_CSRF_TRUSTED_ORIGINS="{local_stack.site}"' in env
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE

    async def connect(origin: str) -> int:
        url = f"wss://{local_stack.controller}:8443/ws/echo/"
        try:
            async with websockets.connect(
                url, ssl=context, origin=origin, open_timeout=10  # type: ignore[arg-type]
            ):
                return 101
        except websockets.InvalidStatus as refused:
            return refused.response.status_code

    assert asyncio.run(connect(local_stack.site)) == 101
    assert asyncio.run(connect("https://evil.example")) == 403
    # Any POST passes Django's CSRF check first (not the login form: it is rate limited).
    with local_stack.client() as client:
        client.get("/accounts/login/")
        token = client.cookies["csrftoken"]
        posted = {origin: client.post("/whoami/", data={"csrfmiddlewaretoken": token},
                                      headers={"Origin": origin})
                  for origin in (local_stack.site, "https://evil.example")}
    assert posted[local_stack.site].status_code != 403, posted[local_stack.site].text[:200]
    assert posted["https://evil.example"].status_code == 403
    assert "CSRF" in posted["https://evil.example"].text


def test_uploaded_media_is_served_by_nginx(
    two_workers: LocalStack, site_user: tuple[str, str]
) -> None:
    local_stack = two_workers
    with local_stack.client(headers={"Origin": local_stack.site}) as client:
        local_stack.sign_in(client, site_user)  # uploads are for signed-in users only
        client.get("/upload/")
        payload = b"gemnar e2e media " + str(time.time()).encode()
        response = client.post(
            "/upload/",
            files={"file": ("e2e.txt", payload, "text/plain")},
            data={"csrfmiddlewaretoken": client.cookies["csrftoken"]},
            headers={"Referer": f"{local_stack.site}/upload/"},
        )
        assert response.status_code == 201, response.text[:300]
        media = client.get(response.json()["url"])
    assert media.status_code == 200 and media.content == payload
    assert "max-age=86400" in media.headers.get("cache-control", "")


def test_static_files_come_from_the_controllers_disk(two_workers: LocalStack) -> None:
    local_stack = two_workers
    with local_stack.client() as client:
        page = client.get("/").text
        # The hashed name ManifestStaticFilesStorage gives it (what makes it immutable).
        css = re.search(r'href="(/static/[^"]+\.[0-9a-f]{12}\.css)"', page)
        assert css, "the page links no hashed stylesheet"
        asset = client.get(css.group(1))
    assert asset.status_code == 200
    assert asset.headers["content-type"].startswith("text/css")
    assert "max-age=31536000" in asset.headers.get("cache-control", "")
    # Nginx answered from its own disk: the local stack's workers collect into the
    # controller's static root, and a worker's answer would carry the cache's status.
    static_root = local_stack.node_root("controller") / "srv/gemnar/static"
    assert (static_root / css.group(1).removeprefix("/static/")).read_bytes() == asset.content
    assert "x-cache-status" not in asset.headers
    # What the controller falls back to where its disk lacks the file (prod, lab): each
    # worker serves the same bytes itself, immutable.
    for index in (0, 1):
        own = httpx.get(f"http://{local_stack.worker_address(index)}:8000{css.group(1)}",
                        timeout=10)
        assert own.status_code == 200 and own.content == asset.content
        assert own.headers["cache-control"] == "max-age=315360000, public, immutable"


def test_a_dead_worker_is_taken_out_by_the_health_monitor(two_workers: LocalStack) -> None:
    local_stack = two_workers
    pidfile = local_stack.node_root("worker-1") / "run/supervised/uvicorn.pid"
    pid = read_pid(pidfile)
    assert pid is not None
    stop_pid(pid, timeout_s=5)
    wait_until(lambda: " down;" in local_stack.upstream(), timeout_s=15, interval_s=0.2,
               what="worker-1 marked down", detail=local_stack.upstream)
    assert f"{local_stack.worker_address(1)}:8000" in local_stack.upstream()
    assert set(served_by(local_stack)) == {"worker-0"}
    # What an operator (or the monitor's replacement bound) does: replace the node.
    result = local_stack.up(replace=[local_stack.urn("gemnar-worker-1-processes")])
    assert result.summary.result == "succeeded"
    wait_until(lambda: " down;" not in local_stack.upstream(), timeout_s=15, interval_s=0.2,
               what="worker-1 back in the upstream", detail=local_stack.upstream)
    assert set(served_by(local_stack)) == {"worker-0", "worker-1"}


def _line_index(events: list[str], *needles: str) -> int:
    for index, line in enumerate(events):
        if all(needle in line for needle in needles):
            return index
    raise AssertionError(f"no engine event with {needles}:\n" + "".join(events[-60:]))


@pytest.mark.leaves_workers(3)
def test_scale_out_joins_only_once_healthy(two_workers: LocalStack) -> None:
    local_stack = two_workers
    with SteadyLoad(local_stack) as load:
        result = local_stack.up(worker_count=3)
    assert result.summary.result == "succeeded"
    assert load.failures == [], load.failures[:5]
    ready = _line_index(local_stack.events, "gemnar-worker-2-ready-gate", "created")
    joined = _line_index(local_stack.events, "gemnar-membership-sync", "updat")
    assert ready < joined, "worker-2 joined the load balancer before it was healthy"
    assert set(served_by(local_stack, 24)) == {"worker-0", "worker-1", "worker-2"}


@pytest.mark.leaves_workers(2)
def test_scale_in_drains_before_stopping_without_failed_requests(
    three_workers: LocalStack,
) -> None:
    local_stack = three_workers
    removed = f"{local_stack.worker_address(2)}:8000"
    with SteadyLoad(local_stack) as load:
        load.wait_for_requests(10)  # the load flows before the change ...
        result = local_stack.up(worker_count=2)
        load.wait_for_requests(10)  # ... and after it
    assert result.summary.result == "succeeded"
    assert load.ok > 20
    assert load.failures == [], load.failures[:5]
    events = local_stack.events
    left = _line_index(events, "gemnar-membership-sync", "updat")
    drained = _line_index(events, "gemnar-worker-2-ready-gate", "delet")
    stopped = _line_index(events, "gemnar-worker-2-processes", "delet")
    assert left < drained < stopped, "worker-2 stopped before leaving Nginx and draining"
    assert removed not in local_stack.upstream()
    assert not Path(local_stack.node_root("worker-2") / "run/supervised/uvicorn.pid").exists()
    assert set(served_by(local_stack)) == {"worker-0", "worker-1"}


def _mem_total_bytes(local_stack: LocalStack, index: int) -> float | None:
    """The worker's exporter's ``node_memory_MemTotal_bytes``, or None while it is not up."""
    url = f"http://{local_stack.worker_address(index)}:9100/metrics"
    try:
        text = httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return None
    found = re.search(r"^node_memory_MemTotal_bytes (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_a_changed_node_setting_replaces_the_node_and_is_running(
    two_workers: LocalStack,
) -> None:
    key = "gemnar:localWorkerMemoryMb"
    before = _mem_total_bytes(two_workers, 0)
    assert before is not None
    changed_mb = int(before) // 2**20 + 128
    try:
        two_workers.ensure(2, config={key: str(changed_mb)})  # rewrites the config only
        result = two_workers.up()
        assert result.summary.result == "succeeded", result.stderr
        changes = {str(getattr(op, "value", op)): count
                   for op, count in (result.summary.resource_changes or {}).items()}
        replaced = changes.get("replace", 0)
        assert replaced >= 2, result.summary.resource_changes

        def both_resized() -> bool:
            return all(_mem_total_bytes(two_workers, i) == changed_mb * 2**20 for i in (0, 1))

        wait_until(both_resized, timeout_s=30, what="both workers running the new memory size")
    finally:
        two_workers.ensure(2)  # the committed config back, then its nodes
        restored = two_workers.up()
        assert restored.summary.result == "succeeded", restored.stderr
    assert _mem_total_bytes(two_workers, 0) == before
