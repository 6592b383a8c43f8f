"""Renderer behaviour that needs no daemon: upstream membership, settings, listen addresses."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import pytest

from provisioning.app_env import worker_app_env
from provisioning.files import worker_files
from provisioning.nginx import render_nginx_conf, render_nginx_upstream
from provisioning.postgres import render_pg_hba, render_postgresql_conf
from provisioning.redis import render_redis_conf
from provisioning.settings import ControllerPaths, ControllerSettings, WorkerSettings
from provisioning.templates import TEMPLATE_ROOT, FileTemplate, render
from tests.provisioning.combos import CONTROLLERS, WORKERS

SETTINGS = CONTROLLERS["prod-default"]


@dataclass(frozen=True)
class Member:
    address: str
    healthy: bool


def _servers(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("server ")]


def test_unhealthy_members_are_down() -> None:
    text = render_nginx_upstream(
        [Member("10.20.0.5:8000", True), Member("10.20.0.6:8000", False)], SETTINGS)
    assert _servers(text) == [
        "server 10.20.0.5:8000 max_fails=0;",
        "server 10.20.0.6:8000 max_fails=0 down;",
    ]
    assert "keepalive 32;" in text


def test_all_unhealthy_fails_open() -> None:
    text = render_nginx_upstream(
        [Member("10.20.0.5:8000", False), Member("10.20.0.6:8000", False)], SETTINGS)
    assert all(" down" not in line for line in _servers(text))
    assert "failing open" in text


def test_no_members_points_at_the_503_fallback() -> None:
    text = render_nginx_upstream([], SETTINGS)
    assert _servers(text) == [f"server unix:{SETTINGS.paths.nginx_fallback_socket};"]
    assert f"listen unix:{SETTINGS.paths.nginx_fallback_socket};" in render_nginx_conf(SETTINGS)


@pytest.mark.parametrize("address", ["", "10.0.0.1:80; evil", "a b", "x{"])
def test_rejects_addresses_that_would_inject_config(address: str) -> None:
    with pytest.raises(ValueError):
        render_nginx_upstream([Member(address, True)], SETTINGS)


def test_prod_and_local_nginx_differ_only_in_user_and_listen() -> None:
    local = replace(SETTINGS, public_listen_address=SETTINGS.private_address, nginx_user=None)
    prod_lines = render_nginx_conf(SETTINGS).splitlines()
    local_lines = render_nginx_conf(local).splitlines()
    differing = {a.strip() for a, b in zip(prod_lines, local_lines, strict=True) if a != b}
    assert differing == {
        "user www-data;", "listen 80 default_server;", "listen 443 ssl http2 default_server;"
    }


def test_nginx_routing_policy() -> None:
    conf = render_nginx_conf(SETTINGS)
    assert "worker_shutdown_timeout 3600s;" in conf
    # The app's 503 means "the database is down": no other worker can do better.
    assert "proxy_next_upstream error timeout http_502 http_504;" in conf
    assert "proxy_read_timeout 10s;" in conf and "proxy_next_upstream_timeout 25s;" in conf
    assert not re.search(r"^\s*proxy_next_upstream [^#]*non_idempotent", conf, re.MULTILINE)
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "expires 1y;" in conf
    # /media/ is a file of its own: where media live is delivered after first boot.
    assert "include /etc/nginx/gemnar/media.conf;" in conf
    assert "keys_zone=gemnar_media:10m" in conf


def _block(conf: str, opener: str) -> list[str]:
    """The directives (stripped lines, comments dropped) of the block that ``opener`` opens."""
    lines = conf.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{opener} {{")
    depth, block = 0, []
    for line in lines[start:]:
        depth += line.count("{") - line.count("}")
        text = line.split("#", 1)[0].strip()
        if text:
            block.append(text)
        if depth == 0:
            return block[1:-1]
    raise AssertionError(f"{opener} never closes")


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_static_files_come_from_the_disk_else_a_worker_through_the_cache(name: str) -> None:
    settings = CONTROLLERS[name]
    conf = render_nginx_conf(settings)
    static = _block(conf, "location /static/")
    assert f"alias {settings.paths.static_root.rstrip('/')}/;" in static
    assert "try_files $uri @gemnar_static;" in static
    worker = _block(conf, "location @gemnar_static")
    assert "proxy_pass http://gemnar_app;" in worker
    # A worker mid-roll without the new release's file passes the request on.
    assert "proxy_next_upstream error timeout http_502 http_504 http_404;" in worker
    assert "proxy_cache gemnar_static;" in worker
    assert "proxy_cache_valid 200 365d;" in worker and "proxy_cache_valid 404 10s;" in worker
    assert (f"proxy_cache_path {settings.paths.nginx_static_cache_dir} levels=1:2 "
            "keys_zone=gemnar_static:10m max_size=256m inactive=30d use_temp_path=off;") in conf
    # Nginx drops the server's add_header lines in a location with its own: both repeat them.
    for block in (static, worker):
        for header in ("Strict-Transport-Security", "X-Content-Type-Options",
                       "Referrer-Policy", "X-Frame-Options", "Content-Security-Policy"):
            assert any(line.startswith(f"add_header {header} ") and line.endswith(" always;")
                       for line in block), (header, block)
    # The location sets no proxy headers or hidden headers of its own, so it inherits the
    # server's (Host, X-Forwarded-*, the app's duplicate policy headers hidden).
    assert not any(line.startswith(("proxy_set_header", "proxy_hide_header")) for line in worker)


def test_private_services_bind_localhost_and_private_address_only() -> None:
    assert "listen_addresses = '127.0.0.1,10.20.0.3'" in render_postgresql_conf(SETTINGS)
    assert "bind 127.0.0.1 10.20.0.3" in render_redis_conf(SETTINGS)
    assert "include /etc/redis/secrets.conf" in render_redis_conf(SETTINGS)
    local = CONTROLLERS["local"]
    assert "listen_addresses = '127.31.0.1'" in render_postgresql_conf(local)


def test_pg_hba_admits_only_pgbouncer_on_this_host() -> None:
    rules = [line.split() for line in render_pg_hba(SETTINGS).splitlines()
             if line and not line.startswith("#")]
    assert rules == [
        ["local", "all", "postgres", "peer", "map=gemnar-admin"],
        ["local", "postgres", "gemnar_monitor", "peer", "map=gemnar-monitor"],
        ["local", "gemnar", "gemnar", "scram-sha-256"],
        ["host", "gemnar", "gemnar", "127.0.0.1/32", "scram-sha-256"],
    ]


def test_paths_under_a_state_dir_keep_system_paths() -> None:
    paths = ControllerPaths.under("/state")
    assert paths.postgres_data_dir == "/state/mnt/pgdata/postgresql/15/main"
    assert paths.nginx_upstream_file == "/state/etc/nginx/gemnar/upstream.conf"
    assert paths.postgres_bin_dir == "/usr/lib/postgresql/15/bin"
    assert paths.nginx_mime_types_file == "/etc/nginx/mime.types"


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError):
        ControllerSettings(private_address="10.0.0.1", vpc_subnet="10.0.0.0/24", memory_mb=0,
                           vcpus=1, max_workers=1)
    with pytest.raises(ValueError):
        WorkerSettings(private_address="nope", controller_address="10.0.0.1",
                       vpc_subnet="10.0.0.0/24", memory_mb=1, vcpus=1)


def test_templates_only_substitute_braced_at_names() -> None:
    text = FileTemplate("a@b $host @{x} @@ ${y}").substitute(x="1")
    assert text == "a@b $host 1 @@ ${y}"
    with pytest.raises(KeyError):
        render("controller/pg_hba.conf")


def test_every_placeholder_in_every_template_is_filled() -> None:
    rendered = [render_nginx_conf(s) for s in CONTROLLERS.values()]
    from provisioning.files import controller_files, worker_files

    for settings in CONTROLLERS.values():
        rendered += [f.content for f in controller_files(settings)]
    for worker in WORKERS.values():
        rendered += [f.content for f in worker_files(worker)]
    assert all("@{" not in text for text in rendered)
    assert sorted(p.name for p in TEMPLATE_ROOT.glob("*/")) == ["common", "controller", "worker"]


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_workers_keep_idle_connections_longer_than_nginx_does(name: str) -> None:
    # Otherwise Nginx may reuse a connection the worker is closing: that request fails, or is
    # sent on to another worker, when nothing was wrong.
    settings = WORKERS[name]
    nginx_keeps = re.search(
        r"keepalive_timeout (\d+)s;", render_nginx_upstream([Member("10.20.0.5:8000", True)],
                                                           SETTINGS))
    assert nginx_keeps is not None
    uvicorn = next(f.content for f in worker_files(settings)
                   if f.path.endswith("gemnar-uvicorn.sh"))
    worker_keeps = re.search(r"--timeout-keep-alive '(\d+)'", uvicorn)
    assert worker_keeps is not None
    assert int(worker_keeps.group(1)) > int(nginx_keeps.group(1))


@pytest.mark.parametrize(
    ("name", "https_port", "hosts", "origins"),
    [
        ("prod-default", 443, ["203.0.113.10"], ["https://203.0.113.10"]),
        ("prod-git", 443, ["example.org", "www.example.org"],
         ["https://example.org", "https://www.example.org"]),
        # The local stack's Nginx listens on a port of its own: browsers name it in Origin.
        ("local", 18443, ["127.31.0.1"], ["https://127.31.0.1:18443"]),
    ],
)
def test_the_app_answers_only_to_the_site_names(
    name: str, https_port: int, hosts: list[str], origins: list[str]
) -> None:
    worker = WORKERS[name]
    worker = replace(worker, controller_ports=replace(worker.controller_ports, https=https_port))
    env = worker_app_env(worker)
    assert env["GEMNAR_ALLOWED_HOSTS"].split(",") == hosts
    assert env["GEMNAR_CSRF_TRUSTED_ORIGINS"].split(",") == origins


def test_a_worker_without_a_site_name_is_refused_not_opened_to_any_host() -> None:
    nameless = replace(WORKERS["prod-default"], public_hosts=())
    with pytest.raises(ValueError, match="public_hosts"):
        worker_app_env(nameless)


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_nginx_claims_no_ocsp_stapling(name: str) -> None:
    """Let's Encrypt, the controller's only CA, ended OCSP in 2025 (docs/hardening.md)."""
    for settings in (CONTROLLERS[name], replace(CONTROLLERS[name], domain="example.org")):
        directives = [line.split("#", 1)[0] for line in render_nginx_conf(settings).splitlines()]
        assert not [d for d in directives if "stapling" in d or "resolver" in d]
