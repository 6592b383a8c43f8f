"""/health/'s details stay on the VPC side: a client through Nginx sees only the status.

Live: the worker trusts 127.0.0.1 as its proxy (as a worker trusts the controller), so a
request from there with X-Forwarded-For is what the controller's Nginx sends for a public
client. Pure: the rule itself over a table of peers.
"""

from __future__ import annotations

import httpx
import pytest
from gemnar_app_fixtures import Worker
from gemnar_health.exposure import shows_details

pytestmark = pytest.mark.daemons

PROXY = ("10.20.0.3/32",)
VPC = ("10.20.0.0/24",)


def test_a_client_through_the_proxy_sees_only_the_status(worker_a: Worker) -> None:
    public = httpx.get(f"{worker_a.url}/health/",
                       headers={"X-Forwarded-For": "203.0.113.9"}, timeout=15)
    assert public.status_code == 200
    assert public.json() == {"status": "ok"}
    # The monitor's direct probe still gets every figure.
    direct = httpx.get(f"{worker_a.url}/health/", timeout=15).json()
    assert direct["status"] == "ok" and direct["worker"] == "worker-a"
    assert set(direct["details"]) == {"database", "redis", "memory", "disk"}


@pytest.mark.parametrize(("meta", "expected"), [
    ({"REMOTE_ADDR": "10.20.0.3"}, True),  # the health monitor on the controller
    ({"REMOTE_ADDR": "127.0.0.1"}, True),  # the worker itself
    ({"REMOTE_ADDR": "10.20.0.7"}, True),  # another VPC node, when configured
    ({"REMOTE_ADDR": "10.20.0.3", "HTTP_X_FORWARDED_FOR": "203.0.113.9"}, False),  # via Nginx
    ({"REMOTE_ADDR": "10.20.0.3", "HTTP_X_FORWARDED_FOR": "10.20.0.7"}, False),
    ({"REMOTE_ADDR": "203.0.113.9"}, False),
    ({"REMOTE_ADDR": "203.0.113.9", "HTTP_X_FORWARDED_FOR": "10.20.0.3"}, False),
    ({"REMOTE_ADDR": "not-an-address"}, False),
    ({}, False),
])
def test_who_sees_the_details(meta: dict[str, str], expected: bool) -> None:
    assert shows_details(meta, PROXY, VPC) is expected
    if meta.get("REMOTE_ADDR") == "10.20.0.7" and "HTTP_X_FORWARDED_FOR" not in meta:
        assert shows_details(meta, PROXY, ()) is False  # only when configured
