"""The controller's gemnar-apply-secrets hook restarts Redis only when a Redis password changed.

The hook runs whenever the controller's secrets file changed, which may be for a value Redis
never reads; a Redis restart drops every client (cache, channel layer), so it is kept for a
changed ACL user (the app's or the exporter's); the exporter restarts only when its own
password changed. PostgreSQL and PgBouncer are only given the new password (a reload).
The system commands (`runuser`, `chown`, `systemctl`) are shims that record their calls; the
script itself is the rendered template, run by bash.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from provisioning.monitoring import ALERT_RECEIVER, render_alertmanager_yml
from provisioning.pgbouncer import STATS_USER, render_pgbouncer_userlist
from provisioning.redis import (
    APP_USER,
    EXPORTER_USER,
    app_acl_rules,
    exporter_acl_rules,
    render_redis_secrets,
)
from provisioning.settings import ControllerSettings, MonitoringSettings
from provisioning.templates import render
from tests.support.tooling import require_executable

SETTINGS = ControllerSettings(private_address="10.20.0.3", vpc_subnet="10.20.0.0/24",
                              memory_mb=4096, vcpus=2, max_workers=3,
                              monitoring=MonitoringSettings(email_to="ops@example.com"))
WEBHOOK = "https://hooks.example/services/T0K3N/x%2Fy"
VERIFIER = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
ADMIN_VERIFIER = "SCRAM-SHA-256$4096:YWRtaW4=$c3RvcmVkMg==:c2VydmVyMg=="


def _shims(bin_dir: Path, calls: Path) -> None:
    bin_dir.mkdir()
    for name, body in {
        # psql through runuser: swallow the SQL, answer with a verifier.
        "runuser": f"cat > /dev/null; echo '{VERIFIER}'",
        "chown": "true",
        "systemctl": f'echo "$*" >> {calls}',
    }.items():
        shim = bin_dir / name
        shim.write_text(f"#!/bin/sh\n{body}\n")
        shim.chmod(0o755)


def _hook(tmp_path: Path) -> Path:
    hook = tmp_path / "gemnar-apply-secrets"
    hook.write_text(
        render(
            "controller/gemnar-apply-secrets.sh",
            secrets_file=tmp_path / "controller.env",
            app_user="gemnar",
            admin_user="postgres",
            pg_run_dir=tmp_path,
            pg_port=5432,
            pgbouncer_auth_file=tmp_path / "userlist.txt",
            pgbouncer_stats_user=STATS_USER,
            redis_secrets=tmp_path / "redis-secrets.conf",
            redis_app_user=APP_USER,
            redis_app_rules=app_acl_rules(),
            redis_exporter_user=EXPORTER_USER,
            redis_exporter_rules=exporter_acl_rules(),
            redis_exporter_env=tmp_path / "redis-exporter.env",
            alertmanager_conf=tmp_path / "alertmanager.yml",
            receiver=ALERT_RECEIVER,
        )
    )
    hook.chmod(0o755)
    return hook


def _run(
    tmp_path: Path, hook: Path, db: str, redis: str, admin: str = ADMIN_VERIFIER,
    exporter: str = "exporter1", webhook: str = "",
) -> subprocess.CompletedProcess[str]:
    calls = tmp_path / "calls.log"
    calls.write_text("")
    alertmanager = tmp_path / "alertmanager.yml"
    if not alertmanager.exists():  # as cloud-init wrote it: no webhook
        alertmanager.write_text(render_alertmanager_yml(SETTINGS))
    (tmp_path / "controller.env").write_text(
        f"GEMNAR_DB_PASSWORD='{db}'\nGEMNAR_REDIS_PASSWORD='{redis}'\n"
        f"GEMNAR_REDIS_EXPORTER_PASSWORD='{exporter}'\n"
        f"GEMNAR_PGBOUNCER_ADMIN_VERIFIER='{admin}'\n"
        f"GEMNAR_ALERT_WEBHOOK_URL='{webhook}'\n"
    )
    bash = require_executable("bash")
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    return subprocess.run(
        [str(bash), str(hook)], env=env, capture_output=True, text=True, timeout=30
    )


def _apply(
    tmp_path: Path, hook: Path, db: str, redis: str, exporter: str = "exporter1",
    webhook: str = "",
) -> list[str]:
    result = _run(tmp_path, hook, db, redis, exporter=exporter, webhook=webhook)
    assert result.returncode == 0, result.stderr
    return (tmp_path / "calls.log").read_text().splitlines()


def test_redis_restarts_only_when_its_password_changed(tmp_path: Path) -> None:
    _shims(tmp_path / "bin", tmp_path / "calls.log")
    hook = _hook(tmp_path)
    assert _apply(tmp_path, hook, "db1", "redis1") == [
        "reload pgbouncer",
        "restart redis-server",
        "restart prometheus-redis-exporter",
    ]
    # The shell writes exactly what provisioning.redis renders (users and rules).
    assert (tmp_path / "redis-secrets.conf").read_text() == render_redis_secrets(
        "redis1", "exporter1")
    exporter_env = tmp_path / "redis-exporter.env"
    assert exporter_env.read_text() == "REDIS_PASSWORD=exporter1\n"
    assert exporter_env.stat().st_mode & 0o777 == 0o600
    # Only the database password changed: Redis keeps running.
    assert _apply(tmp_path, hook, "db2", "redis1") == ["reload pgbouncer"]
    assert _apply(tmp_path, hook, "db2", "redis2") == [
        "reload pgbouncer",
        "restart redis-server",
    ]
    # The exporter's password: Redis learns the new user, the exporter its password.
    assert _apply(tmp_path, hook, "db2", "redis2", "exporter2") == [
        "reload pgbouncer",
        "restart redis-server",
        "restart prometheus-redis-exporter",
    ]
    # The app role's verifier from PostgreSQL, the admin console's from controller.env, and
    # the metrics collector's stats user with no password (its hba line is peer).
    assert (tmp_path / "userlist.txt").read_text() == (
        f'"gemnar" "{VERIFIER}"\n"postgres" "{ADMIN_VERIFIER}"\n'
        + render_pgbouncer_userlist(STATS_USER, "")
    )


def test_the_alert_webhook_is_set_in_alertmanagers_config_and_dropped(tmp_path: Path) -> None:
    """Cloud-init writes alertmanager.yml without the webhook (a secret); the hook adds it as
    provisioning.monitoring renders it, readable by root and the prometheus group only."""
    _shims(tmp_path / "bin", tmp_path / "calls.log")
    hook = _hook(tmp_path)
    conf = tmp_path / "alertmanager.yml"
    # No webhook: the file stays byte for byte what cloud-init wrote, nothing reloads.
    assert "reload prometheus-alertmanager" not in _apply(tmp_path, hook, "db1", "redis1")
    assert conf.read_text() == render_alertmanager_yml(SETTINGS)
    calls = _apply(tmp_path, hook, "db1", "redis1", webhook=WEBHOOK)
    assert calls == ["reload pgbouncer", "reload prometheus-alertmanager"]
    assert conf.read_text() == render_alertmanager_yml(SETTINGS, WEBHOOK)
    assert conf.stat().st_mode & 0o777 == 0o640
    # Unchanged: no reload; removed from the stack: dropped again.
    assert _apply(tmp_path, hook, "db1", "redis1", webhook=WEBHOOK) == ["reload pgbouncer"]
    assert "reload prometheus-alertmanager" in _apply(tmp_path, hook, "db1", "redis1")
    assert conf.read_text() == render_alertmanager_yml(SETTINGS)


@pytest.mark.parametrize("webhook", [
    # (A quote cannot reach the file: render_env_file refuses it.)
    "ftp://hooks.example/x", "https://hooks.example/a b", "https://hooks.example/x\"y",
    "https://hooks.example/$(id)", "https://hooks.example/x?a=1&b=2",
])
def test_anything_but_a_plain_http_webhook_is_refused(tmp_path: Path, webhook: str) -> None:
    _shims(tmp_path / "bin", tmp_path / "calls.log")
    hook = _hook(tmp_path)
    result = _run(tmp_path, hook, "db1", "redis1", webhook=webhook)
    assert result.returncode != 0
    assert "webhook" in result.stderr
    assert (tmp_path / "calls.log").read_text() == ""


@pytest.mark.parametrize("admin", [
    "", "md5abcdef", "password", "SCRAM-SHA-256$4096:a\"b$c:d", "SCRAM-SHA-256$4096:a b$c:d",
])
def test_anything_but_a_scram_admin_verifier_is_refused(tmp_path: Path, admin: str) -> None:
    _shims(tmp_path / "bin", tmp_path / "calls.log")
    hook = _hook(tmp_path)
    result = _run(tmp_path, hook, "db1", "redis1", admin=admin)
    assert result.returncode != 0
    assert "admin verifier" in result.stderr or "missing" in result.stderr
    assert not (tmp_path / "userlist.txt").exists()
    assert (tmp_path / "calls.log").read_text() == ""
