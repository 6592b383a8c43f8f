"""The rendered Prometheus and Alertmanager configs, checked by their own tools.

``promtool check config`` / ``check rules`` and ``amtool check-config`` on what cloud-init
writes, and ``promtool test rules`` with one firing and one quiet case per alert rule: the
series a real exporter (or the project's textfiles) would expose, evaluated by Prometheus's
own rule engine.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioning.monitoring import (
    alert_rules,
    monitoring_files,
    render_alert_rules,
    render_alertmanager_yml,
    render_prometheus_yml,
)
from provisioning.settings import ControllerSettings, MonitoringSettings
from tests.support.tooling import require_executable

SETTINGS = ControllerSettings(
    private_address="10.20.0.3", vpc_subnet="10.20.0.0/24", memory_mb=4096, vcpus=2,
    max_workers=3,
    monitoring=MonitoringSettings(alert_for_s=60, worker_unhealthy_s=300),
)
W = {"role": "worker"}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def test_promtool_accepts_the_rendered_config_and_rules(tmp_path: Path) -> None:
    promtool = require_executable("promtool")
    settings = SETTINGS.with_paths_under(tmp_path)
    rules = Path(settings.paths.prometheus_rules_file)
    rules.parent.mkdir(parents=True)
    rules.write_text(render_alert_rules(settings))
    conf = Path(settings.paths.prometheus_conf_file)
    conf.write_text(render_prometheus_yml(settings))
    result = run([str(promtool), "check", "config", str(conf)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules(settings)['groups'][0]['rules'])} rules found" in (
        result.stdout + result.stderr)


@pytest.mark.parametrize("receiver", [
    {}, {"webhook_url": "https://relay.example/hook"}, {"email_to": "ops@example.com"},
])
def test_amtool_accepts_the_alertmanager_config(tmp_path: Path, receiver: dict[str, str]) -> None:
    amtool = require_executable("amtool")
    settings = replace(SETTINGS, monitoring=replace(
        SETTINGS.monitoring, email_to=receiver.get("email_to", "")))
    conf = tmp_path / "alertmanager.yml"
    conf.write_text(render_alertmanager_yml(settings, receiver.get("webhook_url", "")))
    result = run([str(amtool), "check-config", str(conf)])
    assert result.returncode == 0, result.stdout + result.stderr
    document = yaml.safe_load(conf.read_text())
    assert document["route"]["receiver"] == "operators"
    configured = {k for k in document["receivers"][0] if k != "name"}
    assert configured == ({"webhook_configs"} if "webhook_url" in receiver else
                          {"email_configs"} if "email_to" in receiver else set())


def test_no_monitoring_file_holds_a_listener_on_every_address() -> None:
    for path, content in monitoring_files(SETTINGS):
        assert "0.0.0.0" not in content, path
        assert not re.search(r"listen-address=:", content), path
    assert any("--cluster.listen-address=" in c for _, c in monitoring_files(SETTINGS))


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


# (input series, eval time, labels of the expected alert), (quiet series, eval time)
Case = tuple[tuple[list[dict[str, str]], str, dict[str, str]], tuple[list[dict[str, str]], str]]


def _unlabelled(metric: str, fires: tuple[str, str], quiet: tuple[str, str]) -> Case:
    """The case of a rule on one metric without labels: (values, evaluated at) when it fires,
    and when it stays quiet."""
    return (([_series(metric, {}, fires[0])], fires[1], {}),
            ([_series(metric, {}, quiet[0])], quiet[1]))


# alert -> (input series, eval time, labels of the expected alert), (quiet series, eval time)
CASES: dict[str, Case] = {
    "SiteDown": (
        ([_series("nginx_up", {"job": "nginx"}, "0x10"), _series("up", {"job": "app"}, "1x10")],
         "5m", {"job": "nginx"}),
        ([_series("nginx_up", {"job": "nginx"}, "1x10"), _series("up", {"job": "nginx"}, "1x10"),
          _series("up", {"job": "app"}, "1x10")], "5m"),
    ),
    "HighErrorRate": (
        ([_series("django_http_responses_total_by_status_total", {"status": "500"}, "0+60x10"),
          _series("django_http_responses_total_by_status_total", {"status": "200"}, "0+60x10")],
         "8m", {}),
        ([_series("django_http_responses_total_by_status_total", {"status": "500"}, "0+0x10"),
          _series("django_http_responses_total_by_status_total", {"status": "200"}, "0+60x10")],
         "8m"),
    ),
    "HighLatencyP95": (
        ([_series("django_http_requests_latency_seconds_by_view_method_bucket", {"le": le}, v)
          for le, v in (("0.25", "0+1x10"), ("1.0", "0+10x10"), ("+Inf", "0+10x10"))],
         "8m", {}),
        ([_series("django_http_requests_latency_seconds_by_view_method_bucket", {"le": le}, v)
          for le, v in (("0.25", "0+10x10"), ("1.0", "0+10x10"), ("+Inf", "0+10x10"))],
         "8m"),
    ),
    "WorkerUnhealthy": (
        ([_series("gemnar_worker_healthy", {"worker": "10.20.0.5"}, "0x10")], "6m",
         {"worker": "10.20.0.5"}),
        # Down for 4 minutes only: inside the self-healing bound.
        ([_series("gemnar_worker_healthy", {"worker": "10.20.0.5"}, "0x4 1x6")], "6m"),
    ),
    "MemoryHighAtMaxWorkers": (
        ([s for i in range(3) for s in (
            _series("node_memory_MemAvailable_bytes", {**W, "worker": f"w{i}"}, "10x10"),
            _series("node_memory_MemTotal_bytes", {**W, "worker": f"w{i}"}, "100x10"),
            _series("up", {"job": "node", **W, "worker": f"w{i}"}, "1x10"))], "5m", {}),
        # Two of three workers: the scaler can still add one.
        ([s for i in range(2) for s in (
            _series("node_memory_MemAvailable_bytes", {**W, "worker": f"w{i}"}, "10x10"),
            _series("node_memory_MemTotal_bytes", {**W, "worker": f"w{i}"}, "100x10"),
            _series("up", {"job": "node", **W, "worker": f"w{i}"}, "1x10"))], "5m"),
    ),
    "ScalerFailing": _unlabelled("gemnar_scaler_last_tick_success", ("0x10", "5m"),
                                 ("1x10", "5m")),
    "ScalerStuck": _unlabelled("gemnar_scaler_last_tick_timestamp_seconds", ("0x10", "10m"),
                               ("0+60x10", "10m")),
    "BackupFailed": _unlabelled("gemnar_backup_last_attempt_success", ("0x3", "2m"),
                                ("1x3", "2m")),
    "BackupMissing": _unlabelled("gemnar_backup_last_success_timestamp_seconds", ("0x30", "27h"),
                                 ("0x30", "25h")),
    "BackupNeverSucceeded": (
        ([_series("up", {"job": "node"}, "1x60")], "53h", {}),
        ([_series("gemnar_backup_last_success_timestamp_seconds", {}, "0+3600x60")], "53h"),
    ),
    "DiskNearFull": (
        ([_series("node_filesystem_avail_bytes", {"fstype": "ext4", "mountpoint": "/"}, "5x10"),
          _series("node_filesystem_size_bytes", {"fstype": "ext4", "mountpoint": "/"}, "100x10")],
         "5m", {"fstype": "ext4", "mountpoint": "/"}),
        ([_series("node_filesystem_avail_bytes", {"fstype": "ext4", "mountpoint": "/"}, "50x10"),
          _series("node_filesystem_size_bytes", {"fstype": "ext4", "mountpoint": "/"}, "100x10")],
         "5m"),
    ),
    "DatabaseDown": (
        ([_series("pg_up", {"job": "postgres"}, "0x10")], "5m", {"job": "postgres"}),
        ([_series("pg_up", {"job": "postgres"}, "1x10"),
          _series("up", {"job": "postgres"}, "1x10")], "5m"),
    ),
    "RedisDown": (
        ([_series("redis_up", {"job": "redis"}, "0x10")], "5m", {"job": "redis"}),
        ([_series("redis_up", {"job": "redis"}, "1x10"),
          _series("up", {"job": "redis"}, "1x10")], "5m"),
    ),
    "PostgresConnectionsNearLimit": (
        ([_series("pg_stat_activity_count", {"datname": "gemnar", "state": "idle"}, "90x10"),
          _series("pg_settings_max_connections", {}, "100x10")], "5m", {}),
        ([_series("pg_stat_activity_count", {"datname": "gemnar", "state": "idle"}, "20x10"),
          _series("pg_settings_max_connections", {}, "100x10")], "5m"),
    ),
    "TLSCertificateExpiring": (
        ([_series("gemnar_tls_certificate_expiry_timestamp_seconds", {}, "86400x10")], "5m", {}),
        ([_series("gemnar_tls_certificate_expiry_timestamp_seconds", {}, "8640000x10")], "5m"),
    ),
}


def _expand(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)


def _unit_tests(rules: dict[str, Any], hours: bool) -> list[dict[str, Any]]:
    """The cases whose times are in hours (``hours``) or in minutes."""
    by_name = {r["alert"]: r for r in rules["groups"][0]["rules"]}
    tests = []
    for name, ((series, at, labels), (quiet, quiet_at)) in CASES.items():
        if at.endswith("h") != hours:
            continue
        rule = by_name[name]
        expected = {**labels, **rule["labels"]}
        annotations = {k: _expand(v, expected) for k, v in rule["annotations"].items()}
        interval = "1h" if hours else "1m"
        tests.append({"interval": interval, "input_series": series, "alert_rule_test": [
            {"eval_time": at, "alertname": name,
             "exp_alerts": [{"exp_labels": expected, "exp_annotations": annotations}]}]})
        tests.append({"interval": interval, "input_series": quiet, "alert_rule_test": [
            {"eval_time": quiet_at, "alertname": name, "exp_alerts": []}]})
    return tests


def test_every_alert_rule_has_a_firing_and_a_quiet_case() -> None:
    names = {r["alert"] for r in alert_rules(SETTINGS)["groups"][0]["rules"]}
    assert names == set(CASES)


@pytest.mark.parametrize("hours", [False, True], ids=["minutes", "hours"])
def test_promtool_unit_tests_of_every_alert_rule(tmp_path: Path, hours: bool) -> None:
    """Long bounds (backups: hours) run in a file of their own with hour-long evaluation
    steps: a minute step over two days evaluates every rule 3000 times (30 s)."""
    promtool = require_executable("promtool")
    rules = alert_rules(SETTINGS)
    (tmp_path / "rules.yml").write_text(render_alert_rules(SETTINGS))
    tests = _unit_tests(rules, hours)
    assert tests
    (tmp_path / "tests.yml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yml"], "evaluation_interval": "1h" if hours else "1m",
        "tests": tests}, sort_keys=False))
    result = run([str(promtool), "test", "rules", str(tmp_path / "tests.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_fail_on_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness can fail: a firing case expected quiet is reported."""
    promtool = require_executable("promtool")
    tests = _unit_tests(alert_rules(SETTINGS), hours=False)
    tests[0]["alert_rule_test"][0]["exp_alerts"] = []
    (tmp_path / "rules.yml").write_text(render_alert_rules(SETTINGS))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests[:2]}))
    result = run([str(promtool), "test", "rules", str(tmp_path / "tests.yml")])
    assert result.returncode != 0
    assert "SiteDown" in result.stdout + result.stderr


@pytest.mark.parametrize("series", [
    [_series("pgbouncer_up", {"job": "pgbouncer"}, "0x10"),
     _series("up", {"job": "pgbouncer"}, "1x10")],
    # The exporter itself down (its target's up), PgBouncer's own reading gone with it.
    [_series("up", {"job": "pgbouncer"}, "0x10")],
], ids=["pgbouncer_up", "exporter_down"])
def test_database_down_fires_for_pgbouncer(tmp_path: Path, series: list[dict[str, str]]) -> None:
    """DatabaseDown's PgBouncer terms (CASES holds its PostgreSQL ones): with PostgreSQL up."""
    promtool = require_executable("promtool")
    rule = next(r for r in alert_rules(SETTINGS)["groups"][0]["rules"]
                if r["alert"] == "DatabaseDown")
    healthy = [_series("pg_up", {"job": "postgres"}, "1x10"),
               _series("up", {"job": "postgres"}, "1x10")]
    expected = {"job": "pgbouncer", **rule["labels"]}
    tests = [
        {"interval": "1m", "input_series": [*healthy, *series], "alert_rule_test": [
            {"eval_time": "5m", "alertname": "DatabaseDown",
             "exp_alerts": [{"exp_labels": expected,
                             "exp_annotations": rule["annotations"]}]}]},
        {"interval": "1m", "input_series": [
            *healthy, _series("pgbouncer_up", {"job": "pgbouncer"}, "1x10"),
            _series("up", {"job": "pgbouncer"}, "1x10")], "alert_rule_test": [
            {"eval_time": "5m", "alertname": "DatabaseDown", "exp_alerts": []}]},
    ]
    (tmp_path / "rules.yml").write_text(render_alert_rules(SETTINGS))
    (tmp_path / "tests.yml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}))
    result = run([str(promtool), "test", "rules", str(tmp_path / "tests.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
