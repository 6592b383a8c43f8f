"""The project's PgBouncer exporter: its metric tables, and the script as its unit runs it.

The table tests load the script (``cloud-init/controller/gemnar-pgbouncer-exporter.py``) and
feed its pure ``families`` the rows PgBouncer 1.18's console returns. The daemon tests run
real PostgreSQL and PgBouncer from the rendered configs (auth file as gemnar-apply-secrets
writes it) and the script with the system Python as the ``prometheus`` user, its unit's
arguments: it reads the console as the stats user by peer, reports ``pgbouncer_up 0`` while
PgBouncer is stopped and ``1`` once it is back, without a restart of its own.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.samples import Sample

from project import PROJECT_ROOT
from provisioning.monitoring import PGBOUNCER_EXPORTER, exporter_args
from provisioning.pgbouncer import STATS_USER, render_pgbouncer_userlist
from provisioning.postgres import MONITOR_OS_USER
from provisioning.scram import scram_sha256_verifier
from provisioning.settings import ControllerSettings
from tests.support import daemons
from tests.support.net import free_ports
from tests.support.tooling import require_executable
from tests.support.waiting import wait_until

SCRIPT = PROJECT_ROOT / "cloud-init" / "controller" / f"{PGBOUNCER_EXPORTER}.py"
PASSWORD = "app-password"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gemnar_pgbouncer_exporter", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXPORTER = load_script()


def samples(pools: list[dict[str, Any]], stats: list[dict[str, Any]],
            lists: list[dict[str, Any]]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in EXPORTER.families(pools, stats, lists):
        for sample in family.samples:
            assert isinstance(sample, Sample)
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


POOL_ROW = {"database": "gemnar", "user": "gemnar", "cl_active": 3, "cl_waiting": 1,
            "cl_cancel_req": 0, "sv_active": 2, "sv_idle": 4, "sv_used": 0, "sv_tested": 0,
            "sv_login": 0, "maxwait": 7, "maxwait_us": 0, "pool_mode": "transaction"}
STATS_ROW = {"database": "gemnar", "total_xact_count": 10, "total_query_count": 12,
             "total_received": 300, "total_sent": 900, "total_xact_time": 2_500_000,
             "total_query_time": 1_500_000, "total_wait_time": 250_000}
LISTS_ROWS = [{"list": "databases", "items": 2}, {"list": "users", "items": 3},
              {"list": "used_clients", "items": 5}, {"list": "dns_names", "items": 0}]
DB, DB_USER = (("database", "gemnar"),), (("database", "gemnar"), ("user", "gemnar"))


@pytest.mark.parametrize(("name", "labels", "value"), [
    ("pgbouncer_pools_client_active_connections", DB_USER, 3),
    ("pgbouncer_pools_client_waiting_connections", DB_USER, 1),
    ("pgbouncer_pools_server_idle_connections", DB_USER, 4),
    ("pgbouncer_pools_client_maxwait_seconds", DB_USER, 7),
    ("pgbouncer_stats_queries_pooled_total", DB, 12),
    ("pgbouncer_stats_sql_transactions_pooled_total", DB, 10),
    ("pgbouncer_stats_sent_bytes_total", DB, 900),
    # PgBouncer counts microseconds; Prometheus wants seconds.
    ("pgbouncer_stats_queries_duration_seconds_total", DB, 1.5),
    ("pgbouncer_stats_client_wait_seconds_total", DB, 0.25),
    ("pgbouncer_databases", (), 2),
    ("pgbouncer_used_clients", (), 5),
])
def test_console_rows_become_metrics(name: str, labels: tuple[tuple[str, str], ...],
                                     value: float) -> None:
    assert samples([POOL_ROW], [STATS_ROW], LISTS_ROWS)[(name, labels)] == value


def test_a_column_this_pgbouncer_lacks_is_left_out_not_a_failure() -> None:
    """Debian's exporter died on a renamed SHOW STATS column; this one skips it."""
    old = {k: v for k, v in STATS_ROW.items() if k != "total_query_count"}
    found = samples([], [old], [])
    assert ("pgbouncer_stats_sent_bytes_total", DB) in found
    assert not [key for key in found if key[0] == "pgbouncer_stats_queries_pooled_total"]
    # Nor do list items it does not know (or lacks) appear.
    assert not [key for key in found if key[0] in {"pgbouncer_dns_names", "pgbouncer_pools"}]


def test_a_failing_console_is_pgbouncer_up_0() -> None:
    def refuse() -> Any:
        raise OSError("connection refused")

    families = list(EXPORTER.PgBouncerCollector(refuse).collect())
    assert [(f.name, [s.value for s in f.samples]) for f in families] == [("pgbouncer_up", [0])]


# --- against real daemons -----------------------------------------------------------------


@dataclass
class Running:
    settings: ControllerSettings
    process: subprocess.Popen[bytes]
    log: Path

    def metrics(self) -> str:
        url = (f"http://{self.settings.loopback_address}:"
               f"{self.settings.ports.pgbouncer_exporter}/metrics")
        try:
            return httpx.get(url, timeout=5).text
        except httpx.TransportError:
            return ""

    def value(self, name: str, **labels: str) -> float | None:
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
        for line in self.metrics().splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
        return None

    def wait_value(self, what: str, check: Any) -> None:
        wait_until(check, timeout_s=20, interval_s=0.1, what=what,
                   abort=lambda: None if self.process.poll() is None else "exporter exited",
                   detail=lambda: self.log.read_text(errors="replace")[-2000:])


def userlist(settings: ControllerSettings, verifier: str) -> str:
    """The auth file as gemnar-apply-secrets writes it (admin line left out: unused here)."""
    return (render_pgbouncer_userlist(settings.db.app_user, verifier)
            + render_pgbouncer_userlist(STATS_USER, ""))


@pytest.fixture(scope="module")
def postgres() -> Iterator[tuple[ControllerSettings, str]]:
    require_executable("pgbouncer")
    require_executable("runuser")
    with daemons.state_directory("gemnar-pgbouncer-exporter-") as root:
        settings = daemons.loopback_controller_settings(root)
        [port] = free_ports(settings.loopback_address, 1)
        settings = replace(settings, ports=replace(settings.ports, pgbouncer_exporter=port))
        with daemons.running_postgres(settings):
            verifier = scram_sha256_verifier(PASSWORD)
            daemons.create_app_role(settings, verifier)
            yield settings, verifier


@pytest.fixture
def exporter(postgres: tuple[ControllerSettings, str]) -> Iterator[Running]:
    """The script as its unit starts it: system Python, the stats user's OS account."""
    settings, _ = postgres
    python = require_executable("python3", "/usr/bin")
    log = Path(settings.paths.pgbouncer_log_file).parent / "exporter.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    # The system Python with Debian's modules, not this test's virtualenv.
    system_python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else str(python)
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    with open(log, "ab") as out:
        process = subprocess.Popen(
            ["runuser", "-u", MONITOR_OS_USER, "--", system_python, str(SCRIPT),
             *exporter_args(settings)["pgbouncer"]],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd="/", start_new_session=True)
    running = Running(settings, process, log)
    try:
        yield running
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


def test_reads_pools_and_stats_as_the_stats_user(
    postgres: tuple[ControllerSettings, str], exporter: Running,
) -> None:
    settings, verifier = postgres
    database = settings.db.database
    with daemons.running_pgbouncer(settings, userlist(settings, verifier)) as pgbouncer:
        exporter.wait_value("pgbouncer_up 1", lambda: exporter.value("pgbouncer_up") == 1)
        with psycopg.connect(host=pgbouncer.address, port=pgbouncer.port, dbname=database,
                             user=settings.db.app_user, password=PASSWORD,
                             connect_timeout=5, autocommit=True) as conn:
            conn.execute("SELECT 1")
            # SHOW LISTS is live: the app's client beside the exporter's own.
            exporter.wait_value("two used clients",
                                lambda: (exporter.value("pgbouncer_used_clients") or 0) >= 2)
            # The app's pool, by database and role.
            assert exporter.value("pgbouncer_pools_server_idle_connections",
                                  database=database, user=settings.db.app_user) is not None
        # SHOW STATS totals are folded in every stats_period (60 s): present, value aside.
        assert exporter.value("pgbouncer_stats_queries_pooled_total",
                              database=database) is not None
        # gemnar and the console itself.
        assert exporter.value("pgbouncer_databases") == 2


def test_pgbouncer_stopped_is_up_0_and_back_is_up_1(
    postgres: tuple[ControllerSettings, str], exporter: Running,
) -> None:
    settings, verifier = postgres
    with daemons.running_pgbouncer(settings, userlist(settings, verifier)):
        exporter.wait_value("pgbouncer_up 1", lambda: exporter.value("pgbouncer_up") == 1)
    # Stopped: the exporter keeps answering, with up 0 and no other PgBouncer series.
    exporter.wait_value("pgbouncer_up 0", lambda: exporter.value("pgbouncer_up") == 0)
    assert "pgbouncer_pools_" not in exporter.metrics()
    with daemons.running_pgbouncer(settings, userlist(settings, verifier)):
        exporter.wait_value("pgbouncer_up 1 again",
                            lambda: exporter.value("pgbouncer_up") == 1)


def test_the_stats_user_is_refused_admin_commands_and_other_ways_in(
    postgres: tuple[ControllerSettings, str],
) -> None:
    settings, verifier = postgres
    with daemons.running_pgbouncer(settings, userlist(settings, verifier)) as pgbouncer:
        code = ("import psycopg2, sys\n"
                f"c = psycopg2.connect(host={settings.paths.pgbouncer_run_dir!r}, "
                f"port={pgbouncer.port}, user={STATS_USER!r}, dbname='pgbouncer')\n"
                "c.autocommit = True\n"
                "try:\n    c.cursor().execute('PAUSE')\n"
                "except psycopg2.Error as e:\n    print('refused:', e)\n")
        result = subprocess.run(
            ["runuser", "-u", MONITOR_OS_USER, "--", "/usr/bin/python3", "-c", code],
            capture_output=True, text=True, timeout=30, cwd="/")
        assert "refused: admin access needed" in result.stdout, result.stdout + result.stderr
        # Over TCP, or to the app's database, there is no way in for it (hba: peer, console).
        for host, dbname in ((pgbouncer.address, "pgbouncer"),
                             (settings.paths.pgbouncer_run_dir, settings.db.database)):
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(host=host, port=pgbouncer.port, dbname=dbname,
                                user=STATS_USER, password="", connect_timeout=5).close()
        # Nor can another OS account use its name over the socket (peer checks the uid).
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host=settings.paths.pgbouncer_run_dir, port=pgbouncer.port,
                            dbname="pgbouncer", user=STATS_USER, connect_timeout=5).close()
