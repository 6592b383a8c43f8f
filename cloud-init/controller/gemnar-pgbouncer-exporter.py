#!/usr/bin/python3
"""gemnar-pgbouncer-exporter: PgBouncer's SHOW POOLS, STATS and LISTS as Prometheus metrics.

Why not Debian's prometheus-pgbouncer-exporter 1.7: against bookworm's PgBouncer 1.18 it dies
on ``KeyError: 'total_requests'`` (it reads SHOW STATS columns PgBouncer renamed in 1.8; its
config cannot leave that query out), and it exits when its first connection fails, so it
cannot report PgBouncer down. The maintained Go exporter is neither in bookworm nor reachable
here. This one asks PgBouncer's admin console on every scrape, as a ``stats_users`` member
logged in by peer over the unix socket (SHOW only; no password), and reports
``pgbouncer_up 0`` when it cannot. Metric names follow the Go exporter's, so its dashboards
fit. Runs with the system Python and Debian's python3-psycopg2 and python3-prometheus-client
(docs/monitoring.md).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

Rows = Sequence[Mapping[str, Any]]

# SHOW POOLS column -> (metric, help, scale): one series per database and user.
POOLS = {
    "cl_active": ("pgbouncer_pools_client_active_connections",
                  "Client connections linked to a server connection", 1.0),
    "cl_waiting": ("pgbouncer_pools_client_waiting_connections",
                   "Client connections waiting for a server connection", 1.0),
    "sv_active": ("pgbouncer_pools_server_active_connections",
                  "Server connections linked to a client", 1.0),
    "sv_idle": ("pgbouncer_pools_server_idle_connections",
                "Server connections idle and ready for a client", 1.0),
    "sv_used": ("pgbouncer_pools_server_used_connections",
                "Server connections idle longer than server_check_delay", 1.0),
    "sv_login": ("pgbouncer_pools_server_login_connections",
                 "Server connections logging in", 1.0),
    "maxwait": ("pgbouncer_pools_client_maxwait_seconds",
                "How long the oldest waiting client has waited", 1.0),
}
# SHOW STATS column -> (counter without _total, help, scale): one series per database.
# PgBouncer reports times in microseconds.
STATS = {
    "total_xact_count": ("pgbouncer_stats_sql_transactions_pooled",
                         "SQL transactions pooled", 1.0),
    "total_query_count": ("pgbouncer_stats_queries_pooled", "SQL queries pooled", 1.0),
    "total_received": ("pgbouncer_stats_received_bytes", "Bytes received from clients", 1.0),
    "total_sent": ("pgbouncer_stats_sent_bytes", "Bytes sent to clients", 1.0),
    "total_xact_time": ("pgbouncer_stats_server_in_transaction_seconds",
                        "Time connected to PostgreSQL in a transaction", 1e-6),
    "total_query_time": ("pgbouncer_stats_queries_duration_seconds",
                         "Time connected to PostgreSQL running queries", 1e-6),
    "total_wait_time": ("pgbouncer_stats_client_wait_seconds",
                        "Time clients waited for a server connection", 1e-6),
}
# SHOW LISTS item -> (metric, help).
LISTS = {
    "databases": ("pgbouncer_databases", "Databases configured"),
    "users": ("pgbouncer_users", "Users known"),
    "pools": ("pgbouncer_pools", "Pools"),
    "free_clients": ("pgbouncer_free_clients", "Free client slots"),
    "used_clients": ("pgbouncer_used_clients", "Client connections"),
    "login_clients": ("pgbouncer_login_clients", "Clients logging in"),
    "free_servers": ("pgbouncer_free_servers", "Free server slots"),
    "used_servers": ("pgbouncer_used_servers", "Server connections"),
}


def up(value: int) -> GaugeMetricFamily:
    return GaugeMetricFamily("pgbouncer_up", "1 if PgBouncer's admin console answered",
                             value=value)


def families(pools: Rows, stats: Rows, lists: Rows) -> list[Metric]:
    """The metrics of one reading of the console (pure). Columns a PgBouncer version lacks
    are left out rather than failing the scrape."""
    out: list[Metric] = []
    for column, (name, text, scale) in POOLS.items():
        gauge = GaugeMetricFamily(name, text, labels=["database", "user"])
        for row in pools:
            if row.get(column) is not None:
                gauge.add_metric([str(row["database"]), str(row["user"])],
                                 float(row[column]) * scale)
        out.append(gauge)
    for column, (name, text, scale) in STATS.items():
        counter = CounterMetricFamily(name, text, labels=["database"])
        for row in stats:
            if row.get(column) is not None:
                counter.add_metric([str(row["database"])], float(row[column]) * scale)
        out.append(counter)
    values = {str(row["list"]): row["items"] for row in lists}
    for item, (name, text) in LISTS.items():
        if values.get(item) is not None:
            out.append(GaugeMetricFamily(name, text, value=float(values[item])))
    return out


def read_console(connect: Callable[[], Any]) -> tuple[Rows, Rows, Rows]:
    """SHOW POOLS, STATS and LISTS as rows of column -> value, on one connection."""
    connection = connect()
    try:
        connection.autocommit = True  # the console knows no BEGIN
        cursor = connection.cursor()

        def show(what: str) -> Rows:
            cursor.execute(f"SHOW {what}")
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return show("POOLS"), show("STATS"), show("LISTS")
    finally:
        connection.close()


class PgBouncerCollector:
    """Reads the console on every scrape; ``pgbouncer_up 0`` when that fails."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self.connect = connect

    def collect(self) -> Iterator[Metric]:
        try:
            pools, stats, lists = read_console(self.connect)
        except Exception as error:  # any failure to read is "down", never a failed scrape
            print(f"gemnar-pgbouncer-exporter: {type(error).__name__}: {error}".strip(),
                  file=sys.stderr, flush=True)
            yield up(0)
            return
        yield up(1)
        yield from families(pools, stats, lists)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gemnar-pgbouncer-exporter", description=__doc__)
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT to serve /metrics on")
    parser.add_argument("--socket-dir", required=True, help="PgBouncer's unix_socket_dir")
    parser.add_argument("--port", type=int, required=True, help="PgBouncer's listen_port")
    parser.add_argument("--user", required=True, help="a stats_users member (peer login)")
    parser.add_argument("--timeout", type=int, default=2, help="connect timeout, seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    address, _, port = args.listen.rpartition(":")

    def connect() -> Any:
        import psycopg2  # Debian's python3-psycopg2; only the daemon needs it

        return psycopg2.connect(host=args.socket_dir, port=args.port, user=args.user,
                                dbname="pgbouncer", connect_timeout=args.timeout)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(PgBouncerCollector(connect))  # type: ignore[arg-type]
    # Block the signals before the server's thread starts, so they reach sigwait below.
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    start_http_server(int(port), addr=address, registry=registry)
    print(f"gemnar-pgbouncer-exporter: serving on {args.listen}", flush=True)
    signal.sigwait(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
