"""Acceptance: the prod-rendered configs run in their real daemons on VPC addresses.

Two network namespaces, created and removed here (10.x and documentation addresses exist only
inside them): the controller (``10.20.0.3`` on the VPC, ``198.51.100.20`` public) runs
PostgreSQL, PgBouncer, Redis and Nginx from the prod renderers with its rendered nftables
loaded; the worker namespace (``10.20.0.5`` on the VPC, ``198.51.100.99`` outside it) runs the
app under Uvicorn from the rendered worker settings and is where the clients connect from.
Prod ports and prod settings throughout; only paths are rebased under a state directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from engine.toolchain import PROJECT_ROOT
from localnode.supervise import start_detached, stop_pid
from localnode.worker import parse_env_file
from provisioning.app_env import render_worker_app_env, render_worker_secrets_env
from provisioning.files import controller_files, worker_files
from provisioning.nftables import SSH_BURST, SSH_RATE_PER_S, render_nftables_controller
from provisioning.nginx import render_nginx_upstream
from provisioning.pgbouncer import render_pgbouncer_userlist
from provisioning.redis import render_redis_conf, render_redis_secrets
from provisioning.scram import scram_sha256_verifier
from provisioning.settings import ControllerPaths, ControllerSettings, WorkerPaths, WorkerSettings
from tests.support import daemons
from tests.support.netns import Namespace, add_addresses, link, listening, network_namespace
from tests.support.tooling import require_executable
from tests.support.waiting import wait_until

pytestmark = pytest.mark.daemons

CONTROLLER_VPC = "10.20.0.3"
CONTROLLER_PUBLIC = "198.51.100.20"
WORKER_VPC = "10.20.0.5"
OUTSIDE = "198.51.100.99"
SUBNET = "10.20.0.0/24"


@dataclass(frozen=True)
class Member:
    address: str
    healthy: bool


@dataclass
class Started:
    processes: list[int]

    def stop_all(self) -> None:
        for pid in reversed(self.processes):
            stop_pid(pid, timeout_s=15)


def _wait(what: str, ready: Callable[[], bool], log: Path, timeout_s: float = 60) -> None:
    """Poll the event itself (a listening socket) with a deadline."""
    wait_until(ready, timeout_s=timeout_s, interval_s=0.1, what=f"{what} ready",
               detail=lambda: log.read_text(errors="replace")[-3000:] if log.exists()
               else "(no log)")


def _start(ns: Namespace, started: Started, name: str, argv: Sequence[str], logs: Path,
           port: tuple[str, int], env: dict[str, str] | None = None) -> None:
    log = logs / f"{name}.log"
    pid = start_detached(ns.argv(argv), logs / f"{name}.pid", log, env=env,
                         cwd=PROJECT_ROOT / "app")
    started.processes.append(pid)
    _wait(f"{name} on {port[0]}:{port[1]}", lambda: listening(ns, *port), log)


@dataclass(frozen=True)
class Cluster:
    controller: ControllerSettings
    worker: WorkerSettings
    ctl: Namespace
    wrk: Namespace
    db_password: str
    redis_password: str


def _client(ns: Namespace, code: str, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Python (the project's venv) run inside ``ns``: the client side of each check."""
    return subprocess.run(ns.argv([sys.executable, "-c", code, *args]), capture_output=True,
                          text=True, check=False, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    for program in ("pgbouncer", "redis-server", "nginx", "runuser", "openssl", "nft", "ss"):
        require_executable(program, "/usr/sbin")
    require_executable("postgres", "/usr/lib/postgresql/15/bin")
    db_password, redis_password = secrets.token_hex(16), secrets.token_hex(16)
    with contextlib.ExitStack() as stack:
        root = stack.enter_context(daemons.state_directory("gemnar-prodns-"))
        ctl = stack.enter_context(network_namespace("gemnar-ctl"))
        wrk = stack.enter_context(network_namespace("gemnar-wrk"))
        link(ctl, "vpc0", wrk, "vpc0")
        add_addresses(ctl, "vpc0", [f"{CONTROLLER_VPC}/24", f"{CONTROLLER_PUBLIC}/24"])
        add_addresses(wrk, "vpc0", [f"{WORKER_VPC}/24", f"{OUTSIDE}/24"])
        controller = ControllerSettings(
            private_address=CONTROLLER_VPC, vpc_subnet=SUBNET, memory_mb=2048, vcpus=2,
            max_workers=3, paths=ControllerPaths.under(root / "controller"),
        )
        worker = WorkerSettings(
            private_address=WORKER_VPC, controller_address=CONTROLLER_VPC,
            vpc_subnet=SUBNET, memory_mb=1024, vcpus=1, processes=1,
            paths=WorkerPaths.under(root / "worker"), public_hosts=(CONTROLLER_PUBLIC,),
        )
        # The app and its environment come from this checkout instead of an installed venv.
        worker = replace(worker, paths=replace(
            worker.paths, app_dir=str(PROJECT_ROOT / "app"), venv_dir=str(PROJECT_ROOT / ".venv"),
        ))
        logs = root / "logs"
        logs.mkdir()
        started = Started([])
        stack.callback(started.stop_all)
        paths = controller.paths

        # The host firewall first, as the controller's setup does.
        rules = daemons.write_file(root / "nftables.conf", render_nftables_controller(controller))
        ctl.run(["nft", "-f", str(rules)])

        daemons.prepare_postgres(controller)
        conf = Path(paths.postgres_conf_dir) / "postgresql.conf"
        _start(ctl, started, "postgres", daemons.as_postgres(
            [daemons.postgres_bin(controller, "postgres"), "-c", f"config_file={conf}"]),
            logs, (CONTROLLER_VPC, controller.ports.postgres))
        verifier = scram_sha256_verifier(db_password)
        daemons.create_app_role(controller, verifier)
        daemons.make_dirs(paths.pgbouncer_run_dir, Path(paths.pgbouncer_log_file).parent,
                          owner_postgres=True, mode=0o775)
        ini = daemons.write_pgbouncer_files(
            controller, render_pgbouncer_userlist(controller.db.app_user, verifier))
        _start(ctl, started, "pgbouncer", daemons.as_postgres(["pgbouncer", str(ini)]), logs,
               (CONTROLLER_VPC, controller.ports.pgbouncer))
        daemons.make_dirs(paths.redis_data_dir, paths.redis_run_dir,
                          Path(paths.redis_log_file).parent)
        daemons.write_file(paths.redis_secrets_file, render_redis_secrets(redis_password), 0o600)
        redis_conf = daemons.write_file(paths.redis_conf_file, render_redis_conf(controller))
        _start(ctl, started, "redis", ["redis-server", str(redis_conf)], logs,
               (CONTROLLER_VPC, controller.ports.redis))
        nginx_conf = daemons.prepare_nginx(controller, render_nginx_upstream(
            [Member(f"{WORKER_VPC}:{worker.ports.app}", True)], controller))
        _start(ctl, started, "nginx", ["nginx", "-c", str(nginx_conf), "-e",
                                       paths.nginx_error_log, "-g", "daemon off;"],
               logs, ("0.0.0.0", controller.ports.https))

        secrets_env = render_worker_secrets_env(
            worker, db_password=db_password, redis_password=redis_password,
            secret_key=secrets.token_hex(32))
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8",
               **parse_env_file(render_worker_app_env(worker)), **parse_env_file(secrets_env)}
        daemons.make_dirs(worker.paths.media_root, worker.paths.static_root)
        migrate = subprocess.run(
            wrk.argv([sys.executable, "manage.py", "migrate", "--noinput"]),
            cwd=PROJECT_ROOT / "app", env=env, capture_output=True, text=True, check=False)
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        # As the app unit's ExecStartPre does: into the worker's own static root, which is
        # not the controller's (it stays empty, as on prod).
        collect = subprocess.run(
            wrk.argv([sys.executable, "manage.py", "collectstatic", "--noinput"]),
            cwd=PROJECT_ROOT / "app", env=env, capture_output=True, text=True, check=False)
        assert collect.returncode == 0, collect.stderr[-3000:]
        uvicorn = next(f for f in worker_files(worker) if f.path.endswith("gemnar-uvicorn.sh"))
        script = daemons.write_file(root / "gemnar-uvicorn.sh", uvicorn.content, 0o755)
        _start(wrk, started, "uvicorn", [str(script)], logs, (WORKER_VPC, worker.ports.app),
               env=env)
        yield Cluster(controller, worker, ctl, wrk, db_password, redis_password)


def test_services_bind_loopback_and_the_vpc_address_only(cluster: Cluster) -> None:
    sockets = cluster.ctl.run(["ss", "-Hltn"]).stdout.split("\n")
    bound = {line.split()[3] for line in sockets if line.strip()}
    ports = cluster.controller.ports
    for port in (ports.postgres, ports.pgbouncer, ports.redis):
        assert {f"127.0.0.1:{port}", f"{CONTROLLER_VPC}:{port}"} == {
            address for address in bound if address.endswith(f":{port}")}, bound
    assert f"{CONTROLLER_PUBLIC}:{ports.redis}" not in bound
    app = cluster.wrk.run(["ss", "-Hltn", f"sport = :{cluster.worker.ports.app}"]).stdout
    assert [line.split()[3] for line in app.splitlines()] == [f"{WORKER_VPC}:8000"]


DB_CLIENT = """
import sys, psycopg
host, port, source, password = sys.argv[1:5]
conninfo = psycopg.conninfo.make_conninfo(
    host=host, port=port, dbname="gemnar", user="gemnar", password=password,
    connect_timeout=3, hostaddr=host)
import socket
orig = socket.socket.connect
def bound(self, address):
    self.bind((source, 0))
    return orig(self, address)
socket.socket.connect = bound
with psycopg.connect(conninfo, prepare_threshold=None) as conn:
    print(conn.execute("select current_user, inet_server_addr()::text").fetchone())
"""

PORT_CLIENT = """
import socket, sys
host, port, source = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sock = socket.socket()
sock.settimeout(2)
sock.bind((source, 0))
try:
    sock.connect((host, port))
    print("open")
except (socket.timeout, TimeoutError):
    print("filtered")
except ConnectionRefusedError:
    print("refused")
"""


def test_a_vpc_client_reaches_the_app_database_through_pgbouncer(cluster: Cluster) -> None:
    port = str(cluster.controller.ports.pgbouncer)
    result = _client(cluster.wrk, DB_CLIENT, CONTROLLER_VPC, port, WORKER_VPC,
                     cluster.db_password)
    assert result.returncode == 0, result.stderr
    # PgBouncer reaches PostgreSQL over its unix socket: no server address.
    assert result.stdout.strip() == "('gemnar', None)"
    wrong = _client(cluster.wrk, DB_CLIENT, CONTROLLER_VPC, port, WORKER_VPC, "wrong")
    assert wrong.returncode != 0 and "SASL authentication failed" in wrong.stderr


def test_from_outside_the_vpc_every_private_port_is_filtered(cluster: Cluster) -> None:
    ports = cluster.controller.ports
    private = [ports.postgres, ports.pgbouncer, ports.redis, ports.node_exporter]
    for port in private:
        outside = _client(cluster.wrk, PORT_CLIENT, CONTROLLER_VPC, str(port), OUTSIDE)
        assert outside.stdout.strip() == "filtered", (port, outside.stdout, outside.stderr)
    # The same ports from the VPC: PgBouncer and Redis answer; PostgreSQL itself stays closed.
    seen = {port: _client(cluster.wrk, PORT_CLIENT, CONTROLLER_VPC, str(port), WORKER_VPC)
            .stdout.strip() for port in (ports.pgbouncer, ports.redis, ports.postgres)}
    assert seen == {ports.pgbouncer: "open", ports.redis: "open", ports.postgres: "filtered"}
    https = _client(cluster.wrk, PORT_CLIENT, CONTROLLER_PUBLIC, str(ports.https), OUTSIDE)
    assert https.stdout.strip() == "open"


HEALTH_CLIENT = """
import json, ssl, sys, urllib.request
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with urllib.request.urlopen(sys.argv[1], context=context, timeout=20) as response:
    print(json.dumps({"status": response.status, "body": json.loads(response.read())}))
"""


def test_the_site_answers_through_nginx_from_the_worker(cluster: Cluster) -> None:
    url = f"https://{CONTROLLER_PUBLIC}:{cluster.controller.ports.https}/health/"
    result = _client(cluster.wrk, HEALTH_CLIENT, url)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["status"] == 200
    assert answer["body"]["status"] == "ok", answer


FETCH_CLIENT = """
import json, ssl, sys, urllib.error, urllib.request
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
answers = []
for url in sys.argv[1:]:
    try:
        response = urllib.request.urlopen(url, context=context, timeout=20)
    except urllib.error.HTTPError as error:
        response = error
    with response:
        body = response.read()
        answers.append({"status": response.status, "body": body.decode(errors="replace"),
                        "headers": {k.lower(): v for k, v in response.headers.items()}})
print(json.dumps(answers))
"""


def _fetch(cluster: Cluster, *paths: str) -> list[dict[str, Any]]:
    """Status, lower-cased headers and body of each GET of ``paths`` through the controller's
    public address, in order, from the worker's namespace."""
    site = f"https://{CONTROLLER_PUBLIC}:{cluster.controller.ports.https}"
    result = _client(cluster.wrk, FETCH_CLIENT, *(f"{site}{path}" for path in paths))
    assert result.returncode == 0, result.stderr
    answers: list[dict[str, Any]] = json.loads(result.stdout)
    return answers


def test_static_files_come_from_the_worker_through_the_controllers_cache(
        cluster: Cluster) -> None:
    """The controller's static root is empty (prod): Nginx fetches the page's stylesheet from
    the worker (WhiteNoise) and keeps it; a file on its own disk is served from there."""
    (page,) = _fetch(cluster, "/")
    stylesheet = re.search(r'href="(/static/[^"]+\.[0-9a-f]{12}\.css)"', page["body"])
    assert stylesheet, page["body"][:2000]
    assert not any(Path(cluster.controller.paths.static_root).iterdir())
    Path(cluster.controller.paths.static_root, "local.css").write_text("p{}")
    first, second, missing, local = _fetch(
        cluster, stylesheet.group(1), stylesheet.group(1), "/static/no/such.css",
        "/static/local.css")
    collected = Path(cluster.worker.paths.static_root, stylesheet.group(1).removeprefix(
        "/static/"))
    for answer in (first, second):
        assert answer["status"] == 200
        assert answer["body"] == collected.read_text()
        assert answer["headers"]["content-type"].startswith("text/css")
        assert answer["headers"]["cache-control"] == "max-age=315360000, public, immutable"
        assert answer["headers"]["x-content-type-options"] == "nosniff"
        assert answer["headers"]["strict-transport-security"].startswith("max-age=31536000")
        assert "frame-ancestors 'none'" in answer["headers"]["content-security-policy"]
    assert [first["headers"]["x-cache-status"], second["headers"]["x-cache-status"]] == [
        "MISS", "HIT"]
    assert missing["status"] == 404
    assert local["status"] == 200 and local["body"] == "p{}"
    assert "x-cache-status" not in local["headers"]  # from the disk, not a worker


RATE_CLIENT = """
import socket, sys, time
host, port, source, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
seen = []
start = time.monotonic()
for _ in range(count):
    sock = socket.socket()
    sock.settimeout(0.3)
    sock.bind((source, 0))
    try:
        sock.connect((host, port))
        seen.append("open")
    except (socket.timeout, TimeoutError):
        seen.append("filtered")
    except ConnectionRefusedError:
        seen.append("refused")
    finally:
        sock.close()
print(f"{time.monotonic() - start:.3f}", " ".join(seen))
"""


def test_new_ssh_connections_are_rate_limited_per_source(cluster: Cluster) -> None:
    # Nothing listens on 22 here: a connection the firewall lets through is refused (RST),
    # one it drops times out. The burst passes, the rest of a fast series is dropped.
    ssh = str(cluster.controller.ports.ssh)
    result = _client(cluster.wrk, RATE_CLIENT, CONTROLLER_VPC, ssh, WORKER_VPC, "40")
    elapsed, *seen = result.stdout.split()
    assert seen[:SSH_BURST] == ["refused"] * SSH_BURST, seen
    assert "filtered" in seen
    # Token bucket: never more through than the burst plus the rate over the elapsed time.
    assert seen.count("refused") <= SSH_BURST + SSH_RATE_PER_S * float(elapsed) + 1, result.stdout


def test_node_exporter_binds_the_vpc_address_only(cluster: Cluster, tmp_path: Path) -> None:
    exporter = require_executable("prometheus-node-exporter")
    defaults = next(f for f in controller_files(cluster.controller)
                    if f.path.endswith("default/prometheus-node-exporter"))
    args = defaults.content.split('ARGS="', 1)[1].split('"', 1)[0].split()
    started = Started([])
    try:
        log = tmp_path / "exporter.log"
        started.processes.append(start_detached(
            cluster.ctl.argv([str(exporter), *args]), tmp_path / "exporter.pid", log))
        port = cluster.controller.ports.node_exporter
        _wait("node exporter", lambda: listening(cluster.ctl, CONTROLLER_VPC, port), log)
        bound = cluster.ctl.run(["ss", "-Hltn", f"sport = :{port}"]).stdout
        assert [line.split()[3] for line in bound.splitlines()] == [f"{CONTROLLER_VPC}:{port}"]
        # Bound to the VPC address, yet closed to it: nothing off the controller scrapes it.
        vpc = _client(cluster.wrk, PORT_CLIENT, CONTROLLER_VPC, str(port), WORKER_VPC)
        outside = _client(cluster.wrk, PORT_CLIENT, CONTROLLER_VPC, str(port), OUTSIDE)
        assert (vpc.stdout.strip(), outside.stdout.strip()) == ("filtered", "filtered")
    finally:
        started.stop_all()
