"""Rendered PostgreSQL, PgBouncer, Redis and Nginx configs run in the real programs.

Each daemon runs on a random 127.x address with free ports and every path under a temp state
directory; every process is stopped when its test ends.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from provisioning.nginx import render_nginx_upstream
from provisioning.postgres import pool_plan
from provisioning.redis import APP_USER as REDIS_APP_USER
from provisioning.scram import scram_sha256_verifier
from provisioning.settings import ControllerSettings
from tests.support import daemons
from tests.support.tooling import require_executable
from tests.support.waiting import wait_until

pytestmark = pytest.mark.daemons


@dataclass(frozen=True)
class Member:
    address: str
    healthy: bool


@pytest.fixture
def controller() -> Iterator[ControllerSettings]:
    for program in ("pgbouncer", "redis-server", "nginx", "runuser", "openssl"):
        require_executable(program)
    require_executable("postgres", "/usr/lib/postgresql/15/bin")
    with daemons.state_directory() as root:
        yield daemons.loopback_controller_settings(root)


def test_postgres_and_pgbouncer_answer_with_rendered_credentials(
    controller: ControllerSettings,
) -> None:
    password = secrets.token_urlsafe(18)
    verifier = scram_sha256_verifier(password)
    with daemons.running_postgres(controller):
        plan = pool_plan(controller)
        assert daemons.psql(controller, "show max_connections") == str(plan.max_connections)
        assert daemons.psql(controller, "show listen_addresses") == controller.private_address
        assert daemons.psql(controller, "show password_encryption") == "scram-sha-256"
        daemons.create_app_role(controller, verifier)
        with daemons.running_pgbouncer_with_role(controller, verifier) as bouncer:
            conninfo = psycopg.conninfo.make_conninfo(
                host=bouncer.address, port=bouncer.port, dbname=controller.db.database,
                user=controller.db.app_user, password=password, connect_timeout=5,
            )
            # Transaction pooling: no server-side prepared statements across transactions.
            with psycopg.connect(conninfo, prepare_threshold=None) as conn:
                assert conn.execute("select current_user, 40 + 2").fetchone() == (
                    controller.db.app_user, 42)
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(conninfo.replace(password, "wrong-" + password))


def test_redis_answers_ping_with_the_rendered_password(controller: ControllerSettings) -> None:
    password = secrets.token_hex(16)
    with daemons.running_redis(controller, password) as server:
        client = redis.Redis(host=server.address, port=server.port, username=REDIS_APP_USER,
                             password=password, socket_timeout=5)
        try:
            assert client.ping() is True
            # The app's user is no admin (tests/hardening/test_redis_acl.py has the rest).
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.config_get("maxmemory-policy")
        finally:
            client.close()
        anonymous = redis.Redis(host=server.address, port=server.port, socket_timeout=5)
        try:
            with pytest.raises(redis.AuthenticationError):
                anonymous.ping()
        finally:
            anonymous.close()


@pytest.mark.parametrize(
    "members",
    [
        pytest.param([], id="no-members"),
        pytest.param([Member("127.0.0.9:8000", True), Member("127.0.0.10:8000", False)],
                     id="one-down"),
        pytest.param([Member("127.0.0.9:8000", False)], id="all-down"),
    ],
)
def test_nginx_accepts_rendered_configs(controller: ControllerSettings,
                                        members: list[Member]) -> None:
    conf = daemons.prepare_nginx(controller, render_nginx_upstream(members, controller))
    result = daemons.nginx_test(conf, controller.paths.nginx_error_log)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_redirects_to_https_and_answers_503_without_members(
    controller: ControllerSettings, tmp_path: Path
) -> None:
    static = Path(controller.paths.static_root) / "app.css"
    with daemons.running_nginx(controller) as server:
        static.write_text("body{}")
        http = f"http://{server.address}:{controller.ports.http}"
        https = f"https://{server.address}:{controller.ports.https}"
        with httpx.Client(verify=False, timeout=5) as client:
            redirect = client.get(f"{http}/some/page?x=1")
            assert redirect.status_code == 301
            assert redirect.headers["location"].endswith("/some/page?x=1")
            empty = client.get(f"{https}/")
            assert empty.status_code == 503
            assert "max-age=31536000" in empty.headers["strict-transport-security"]
            asset = client.get(f"{https}/static/app.css")
            assert asset.status_code == 200
            assert "max-age=31536000" in asset.headers["cache-control"]
        # A membership change rewrites only the upstream file and reloads: the new member
        # (a port nothing listens on) is tried, so the empty pool's 503 becomes a 502.
        Path(controller.paths.nginx_upstream_file).write_text(
            render_nginx_upstream([Member("127.0.0.9:1", True)], controller))
        daemons.nginx_reload(controller)

        def status() -> int:
            with httpx.Client(verify=False, timeout=5) as client:
                return client.get(f"{https}/").status_code

        wait_until(lambda: status() == 502, timeout_s=10, what="the reloaded upstream served")
        assert server.process.poll() is None
