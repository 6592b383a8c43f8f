"""Prometheus and Alertmanager on the controller: their configs, arguments and scrape targets.

Pure: settings in, text (or argv) out. Cloud-init writes the configs and Debian's
``/etc/default`` files from these; the local node starts the same programs with the same
arguments. Every monitoring listener is on the controller's loopback address, except node
exporter (the node's VPC address, for the controller only) and the workers' app metrics port:
nothing here is reachable from outside (docs/monitoring.md).

The workers' targets are not in ``prometheus.yml``: ``gemnar-lb-apply`` writes them as file-based
discovery files with the membership (``worker_target_files``), and Prometheus rereads them
without a restart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import yaml  # type: ignore[import-untyped]  # no types-PyYAML in requirements

from provisioning.pgbouncer import STATS_USER as PGBOUNCER_STATS_USER
from provisioning.redis import EXPORTER_USER as REDIS_EXPORTER_USER
from provisioning.settings import ControllerSettings, MonitoringSettings
from provisioning.templates import render

# The scaler's textfile in node exporter's directory (scaler/exposition.py writes it).
SCALER_METRICS_NAME = "gemnar_scaler.prom"
# File-based discovery: one file per worker job, in the controller's targets directory.
WORKER_NODE_FILE = "workers-node.json"
WORKER_APP_FILE = "workers-app.json"
# Controller-side scrape jobs, each a loopback exporter (name -> port field of ControllerPorts).
EXPORTER_JOBS = {
    "prometheus": "prometheus",
    "alertmanager": "alertmanager",
    "postgres": "postgres_exporter",
    "pgbouncer": "pgbouncer_exporter",
    "redis": "redis_exporter",
    "nginx": "nginx_exporter",
}


def _host(member: str) -> str:
    return member.rpartition(":")[0]


def worker_target_files(
    members: Sequence[str], monitoring: MonitoringSettings
) -> dict[str, str]:
    """File name -> file_sd JSON for the members (``"ip:port"`` of each worker's app), in
    the membership's order. Each worker's targets carry ``worker`` (its address), so node and
    app series of one worker join on it."""
    hosts = list(dict.fromkeys(_host(m) for m in members))

    def groups(port: int) -> str:
        return json.dumps(
            [{"targets": [f"{h}:{port}"], "labels": {"worker": h, "role": "worker"}}
             for h in hosts],
            indent=1, sort_keys=True,
        )

    return {
        WORKER_NODE_FILE: groups(monitoring.worker_node_exporter_port),
        WORKER_APP_FILE: groups(monitoring.worker_app_metrics_port),
    }


def _seconds(value: float) -> str:
    return f"{int(value)}s"


def prometheus_config(settings: ControllerSettings) -> dict[str, Any]:
    """``prometheus.yml`` as data."""
    m, ports, paths = settings.monitoring, settings.ports, settings.paths
    loopback = settings.loopback_address
    targets_dir = PurePosixPath(paths.prometheus_targets_dir)
    jobs: list[dict[str, Any]] = [
        {"job_name": job, "static_configs": [{"targets": [f"{loopback}:{getattr(ports, port)}"]}]}
        for job, port in EXPORTER_JOBS.items()
    ]
    jobs += [
        {
            "job_name": "node",
            "static_configs": [{
                "targets": [f"{settings.private_address}:{ports.node_exporter}"],
                "labels": {"role": "controller"},
            }],
            "file_sd_configs": [{"files": [str(targets_dir / WORKER_NODE_FILE)]}],
        },
        {
            "job_name": "app",
            "file_sd_configs": [{"files": [str(targets_dir / WORKER_APP_FILE)]}],
        },
    ]
    interval = _seconds(m.scrape_interval_s)
    return {
        "global": {
            "scrape_interval": interval,
            # A scrape must end before the next one starts.
            "scrape_timeout": _seconds(max(1, min(10, m.scrape_interval_s))),
            "evaluation_interval": _seconds(m.evaluation_interval_s),
            "external_labels": {"cluster": settings.hostname},
        },
        "rule_files": [paths.prometheus_rules_file],
        "alerting": {"alertmanagers": [
            {"static_configs": [{"targets": [f"{loopback}:{ports.alertmanager}"]}]}
        ]},
        "scrape_configs": jobs,
    }


def render_prometheus_yml(settings: ControllerSettings) -> str:
    return _dump(prometheus_config(settings))


def prometheus_args(settings: ControllerSettings) -> list[str]:
    """Prometheus's command-line arguments (Debian: ``ARGS`` in /etc/default/prometheus)."""
    m, paths = settings.monitoring, settings.paths
    return [
        f"--config.file={paths.prometheus_conf_file}",
        f"--storage.tsdb.path={paths.prometheus_data_dir}",
        f"--storage.tsdb.retention.time={m.retention_days}d",
        f"--web.listen-address={settings.loopback_address}:{settings.ports.prometheus}",
    ]


def alertmanager_args(settings: ControllerSettings) -> list[str]:
    paths = settings.paths
    return [
        f"--config.file={paths.alertmanager_conf_file}",
        f"--storage.path={paths.alertmanager_data_dir}",
        f"--web.listen-address={settings.loopback_address}:{settings.ports.alertmanager}",
        # One Alertmanager: no gossip port (it would listen on every address, 9094).
        "--cluster.listen-address=",
    ]


# Tries at start, 5 s apart, before the Nginx exporter gives up (Nginx restarting, say).
NGINX_EXPORTER_RETRIES = 12


def nginx_status_url(settings: ControllerSettings) -> str:
    return f"http://{settings.loopback_address}:{settings.ports.nginx_status}/stub_status"


def exporter_args(settings: ControllerSettings) -> dict[str, list[str]]:
    """Each controller exporter's arguments (Debian: ``ARGS`` in its /etc/default file).
    Credentials are not arguments: the PostgreSQL exporter reaches its daemon over a unix
    socket as its own system user; the Redis exporter logs in as its ACL user with the
    password from its root-only environment file (``REDIS_PASSWORD``); the PgBouncer one
    logs in to PgBouncer's console over its socket as the stats user, by peer."""
    loopback, ports = settings.loopback_address, settings.ports
    return {
        "nginx": [
            f"-nginx.scrape-uri={nginx_status_url(settings)}",
            # It exits when its first look at the status page fails (default: no retry).
            f"-nginx.retries={NGINX_EXPORTER_RETRIES}",
            f"-web.listen-address={loopback}:{ports.nginx_exporter}",
        ],
        "postgres": [f"--web.listen-address={loopback}:{ports.postgres_exporter}"],
        "pgbouncer": [
            f"--listen={loopback}:{ports.pgbouncer_exporter}",
            f"--socket-dir={settings.paths.pgbouncer_run_dir}",
            f"--port={ports.pgbouncer}",
            f"--user={PGBOUNCER_STATS_USER}",
        ],
        "redis": [
            f"-redis.addr=redis://{loopback}:{ports.redis}",
            f"-redis.user={REDIS_EXPORTER_USER}",
            f"-web.listen-address={loopback}:{ports.redis_exporter}",
        ],
    }


def default_file(args: Sequence[str], comment: str) -> str:
    """A Debian ``/etc/default`` file whose ``ARGS`` the package's unit passes on."""
    quoted = " ".join(args).replace('"', '\\"')
    return (f"# {comment}\n# Rendered by provisioning.monitoring; see docs/monitoring.md.\n"
            f'ARGS="{quoted}"\n')


ALERT_RECEIVER = "operators"


def alertmanager_config(settings: ControllerSettings, webhook_url: str = "") -> dict[str, Any]:
    """``alertmanager.yml`` as data: the configured receivers, or none (alerts then show in
    Alertmanager's API and UI only). The webhook URL is a secret (it may carry a token), so
    it is not in the settings: cloud-init writes this file without it, and
    gemnar-apply-secrets adds it on the node (``WEBHOOK_ENV`` in the secrets file)."""
    m = settings.monitoring
    receiver: dict[str, Any] = {"name": ALERT_RECEIVER}
    if m.email_to:
        receiver["email_configs"] = [{
            "to": m.email_to,
            "from": m.email_from or f"alertmanager@{settings.domain or settings.hostname}",
            "smarthost": m.smarthost or "localhost:25",
            "send_resolved": True,
        }]
    # Last: gemnar-apply-secrets sets it on the node the same way.
    if webhook_url:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    return {
        "route": {
            "receiver": ALERT_RECEIVER,
            "group_by": ["alertname"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
        },
        "receivers": [receiver],
    }


def render_alertmanager_yml(settings: ControllerSettings, webhook_url: str = "") -> str:
    return _dump(alertmanager_config(settings, webhook_url))


# The controller's secrets file names the webhook URL so (stack key alertWebhookUrl).
WEBHOOK_ENV = "GEMNAR_ALERT_WEBHOOK_URL"


def _alert(name: str, expr: str, for_s: int, severity: str, summary: str) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_s:
        rule["for"] = _seconds(for_s)
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {"summary": summary}
    return rule


LATENCY_BUCKETS = "django_http_requests_latency_seconds_by_view_method_bucket"
RESPONSES = "django_http_responses_total_by_status_total"


def p95_latency_by_worker(window: str = "5m") -> str:
    """The p95 request latency of each worker over ``window`` (seconds), from the app."""
    return (f"histogram_quantile(0.95, sum by (worker, le) "
            f"(rate({LATENCY_BUCKETS}[{window}])))")


def alert_rules(settings: ControllerSettings) -> dict[str, Any]:
    """The alert rules as data, bounds from the stack's own settings."""
    m = settings.monitoring
    hold = m.alert_for_s
    worker_memory = ('100 * (1 - avg(node_memory_MemAvailable_bytes{role="worker"}) '
                     '/ avg(node_memory_MemTotal_bytes{role="worker"}))')
    rules = [
        _alert("SiteDown", 'nginx_up == 0 or up{job="nginx"} == 0 '
               'or absent(up{job="app"} == 1)', hold, "critical",
               "The site is down: Nginx does not answer, or no worker's app does."),
        _alert("HighErrorRate",
               f'sum(rate({RESPONSES}{{status=~"5.."}}[5m])) '
               f"/ sum(rate({RESPONSES}[5m])) > {m.error_ratio}", hold, "critical",
               f"More than {m.error_ratio:.0%} of responses are 5xx."),
        _alert("HighLatencyP95",
               f"histogram_quantile(0.95, sum by (le) (rate({LATENCY_BUCKETS}[5m]))) "
               f"> {m.latency_p95_ms / 1000}", hold, "warning",
               f"p95 request latency above {m.latency_p95_ms} ms."),
        _alert("WorkerUnhealthy", "gemnar_worker_healthy == 0", m.worker_unhealthy_s,
               "critical",
               "Worker {{ $labels.worker }} has failed its health checks for longer than "
               "the self-healing bound."),
        _alert("MemoryHighAtMaxWorkers",
               f"{worker_memory} > {m.memory_up_threshold} "
               f'and on() count(up{{job="node", role="worker"}}) >= {settings.max_workers}',
               hold, "warning",
               f"Worker memory above {m.memory_up_threshold} % with the fleet at its maximum "
               f"({settings.max_workers}): the scaler cannot add more."),
        _alert("ScalerFailing", "gemnar_scaler_last_tick_success == 0", hold, "warning",
               "The scaler's last tick failed."),
        _alert("ScalerStuck",
               f"time() - gemnar_scaler_last_tick_timestamp_seconds "
               f"> {3 * settings.scaler_interval_s + 60}", 0, "warning",
               "The scaler has not completed a tick for three intervals."),
        _alert("BackupFailed", "gemnar_backup_last_attempt_success == 0", 0, "critical",
               "The last backup failed."),
        _alert("BackupMissing",
               "time() - gemnar_backup_last_success_timestamp_seconds "
               f"> {m.backup_max_age_h * 3600}", 0, "critical",
               f"No successful backup for {m.backup_max_age_h} h."),
        # A new controller has no backup yet: only after the same bound is that a problem.
        _alert("BackupNeverSucceeded", "absent(gemnar_backup_last_success_timestamp_seconds)",
               m.backup_max_age_h * 3600, "critical",
               f"No backup has succeeded in {m.backup_max_age_h} h."),
        _alert("DiskNearFull",
               'node_filesystem_avail_bytes{fstype!~"tmpfs|overlay|squashfs"} '
               '/ node_filesystem_size_bytes{fstype!~"tmpfs|overlay|squashfs"} '
               f"< {m.disk_free_ratio}", hold, "warning",
               "{{ $labels.instance }} {{ $labels.mountpoint }} has less than "
               f"{m.disk_free_ratio:.0%} free."),
        _alert("DatabaseDown", 'pg_up == 0 or up{job="postgres"} == 0 '
               'or up{job="pgbouncer"} == 0 or pgbouncer_up == 0', hold, "critical",
               "PostgreSQL or PgBouncer does not answer."),
        _alert("RedisDown", 'redis_up == 0 or up{job="redis"} == 0', hold, "critical",
               "Redis does not answer (cache and channel layer)."),
        _alert("PostgresConnectionsNearLimit",
               "sum(pg_stat_activity_count) / max(pg_settings_max_connections) "
               f"> {m.connections_ratio}", hold, "warning",
               f"PostgreSQL connections above {m.connections_ratio:.0%} of max_connections."),
        _alert("TLSCertificateExpiring",
               "gemnar_tls_certificate_expiry_timestamp_seconds - time() "
               f"< {m.certificate_days * 86400}", hold, "warning",
               f"The site's TLS certificate expires within {m.certificate_days} days."),
    ]
    return {"groups": [{"name": "gemnar", "rules": rules}]}


def render_alert_rules(settings: ControllerSettings) -> str:
    return _dump(alert_rules(settings))


def _dump(document: Mapping[str, Any]) -> str:
    header = "# Rendered by provisioning.monitoring; see docs/monitoring.md.\n"
    return header + yaml.safe_dump(dict(document), sort_keys=False, width=4096)


def postgres_exporter_dsn(settings: ControllerSettings) -> str:
    """libpq keywords: the monitoring role over PostgreSQL's socket (no password: peer)."""
    return (f"user={settings.db.monitor_user} host={settings.paths.postgres_run_dir} "
            f"port={settings.ports.postgres} dbname=postgres sslmode=disable")


# An exporter reaches only this host (loopback and unix sockets).
LOCAL_ONLY = "IPAddressDeny=any\nIPAddressAllow=localhost"

# The monitoring units: Debian's packages' and the project's PgBouncer exporter (node
# exporter is common to every node).
MONITORING_UNITS = (
    "prometheus-alertmanager",
    "prometheus",
    "prometheus-nginx-exporter",
    "prometheus-postgres-exporter",
    "prometheus-redis-exporter",
    "gemnar-pgbouncer-exporter",
)
# The project's own PgBouncer exporter (Debian's does not work with bookworm's PgBouncer; the
# script's docstring says why), run by the system Python as the stats user.
PGBOUNCER_EXPORTER = "gemnar-pgbouncer-exporter"


def pgbouncer_exporter_script(settings: ControllerSettings) -> str:
    return str(PurePosixPath(settings.paths.scripts_dir) / f"{PGBOUNCER_EXPORTER}.py")


def pgbouncer_exporter_unit(settings: ControllerSettings) -> str:
    """Its unit, with the same sandbox as Debian's exporters get."""
    unit = render(
        f"controller/{PGBOUNCER_EXPORTER}.service", user=PGBOUNCER_STATS_USER,
        python=settings.paths.system_python, script=pgbouncer_exporter_script(settings),
        args=" ".join(exporter_args(settings)["pgbouncer"]))
    return unit + "\n" + render("controller/monitoring-sandbox.conf", extra=LOCAL_ONLY)


def sandbox_dropins(settings: ControllerSettings) -> dict[str, str]:
    """Unit name -> sandbox drop-in for Debian's units that come without one (Prometheus's
    own unit has its package's sandbox). The exporters reach only this host (loopback, unix
    sockets); Alertmanager may send to a webhook or mail relay, and writes its data dir."""
    return {
        "prometheus-alertmanager.service": render(
            "controller/monitoring-sandbox.conf",
            extra=f"ReadWritePaths={settings.paths.alertmanager_data_dir}"),
        "prometheus-postgres-exporter.service": render(
            "controller/monitoring-sandbox.conf", extra=LOCAL_ONLY),
        "prometheus-nginx-exporter.service": render(
            "controller/monitoring-sandbox.conf", extra=LOCAL_ONLY),
        # Its password: written by gemnar-apply-secrets after boot; until then the exporter
        # runs without one and reports redis_up 0.
        "prometheus-redis-exporter.service": render(
            "controller/monitoring-sandbox.conf",
            extra=f"{LOCAL_ONLY}\nEnvironmentFile=-{settings.paths.redis_exporter_env_file}"),
    }


SANDBOX_DROPIN = "gemnar-sandbox.conf"


def monitoring_files(settings: ControllerSettings) -> list[tuple[str, str]]:
    """(path, content) of every monitoring file the controller's cloud-config writes (none
    holds a secret)."""
    paths = settings.paths
    args = exporter_args(settings)
    postgres_default = default_file(args["postgres"], "Prometheus PostgreSQL exporter")
    postgres_default += f"DATA_SOURCE_NAME='{postgres_exporter_dsn(settings)}'\n"
    return [
        (paths.prometheus_conf_file, render_prometheus_yml(settings)),
        (paths.prometheus_rules_file, render_alert_rules(settings)),
        (paths.alertmanager_conf_file, render_alertmanager_yml(settings)),
        ("/etc/default/prometheus", default_file(prometheus_args(settings), "Prometheus")),
        ("/etc/default/prometheus-alertmanager",
         default_file(alertmanager_args(settings), "Alertmanager")),
        ("/etc/default/prometheus-nginx-exporter",
         default_file(args["nginx"], "Prometheus Nginx exporter")),
        ("/etc/default/prometheus-postgres-exporter", postgres_default),
        ("/etc/default/prometheus-redis-exporter",
         default_file(args["redis"], "Prometheus Redis exporter")),
        *((str(PurePosixPath(paths.systemd_dir) / f"{unit}.d" / SANDBOX_DROPIN), text)
          for unit, text in sandbox_dropins(settings).items()),
    ]
