"""Fixtures and launchers for the app tests: PostgreSQL, PgBouncer, Redis and Uvicorn.

``conftest.py`` registers the fixtures; test modules import the launchers and types from here
(a uniquely named module, so it cannot collide with another directory's conftest). Everything
runs from one temporary directory on free loopback ports. PostgreSQL and PgBouncer refuse to
run as root, so they are started as the ``postgres`` user. Each process is stopped by the
fixture that started it, and the directory is removed at the end of the session.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from tests.support.children import die_with_parent
from tests.support.net import free_port, port_open
from tests.support.tooling import missing
from tests.support.waiting import WaitTimeout, wait_until

REPO = Path(__file__).resolve().parents[2]
APP_DIR = REPO / "app"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
HOST = "127.0.0.1"
DB_NAME = "gemnar"
DB_USER = "gemnar"
POOL_SIZE = 5
# Fixed test-only credentials; the daemons listen on loopback for the session's lifetime only.
DB_PASSWORD = "gemnar-test-password"
USERNAME = "alice"
USER_PASSWORD = "correct-horse-battery"
APP_HOST = "app.test"

if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))


def _require(path: str) -> None:
    if not Path(path).exists() and shutil.which(path) is None:
        missing(f"`{path}`")


@dataclass
class Daemon:
    """A foreground child process with its output in a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    stop_signal: int = signal.SIGTERM

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(self.stop_signal)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def start_daemon(
    name: str,
    argv: list[str],
    log: Path,
    *,
    as_postgres: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stop_signal: int = signal.SIGTERM,
) -> Daemon:
    """Start ``argv`` in the foreground, optionally as the postgres user."""
    handle = log.open("ab")
    user_args: dict[str, object] = {}
    if as_postgres:
        user_args = {"user": "postgres", "group": "postgres", "extra_groups": []}
    try:
        proc = subprocess.Popen(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            preexec_fn=die_with_parent,  # if pytest is killed, its daemons go too
            **user_args,  # type: ignore[call-overload]
        )
    finally:
        handle.close()
    return Daemon(name, proc, log, stop_signal)


def wait_for_port(daemon: Daemon, port: int, timeout: float = 20.0) -> None:
    """Wait until ``port`` accepts TCP connections, failing early if the daemon exits."""
    wait_until(
        lambda: port_open(HOST, port),
        timeout_s=timeout,
        what=f"{daemon.name} listening on {port}",
        abort=lambda: exited(daemon),
        detail=daemon.log_tail,
    )


def exited(daemon: Daemon) -> str | None:
    """Why ``daemon`` can no longer produce what a test waits for, if it has exited."""
    code = daemon.proc.poll()
    return None if code is None else f"{daemon.name} exited with {code}"


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """A temp dir the postgres user can traverse (pytest's own tmp root is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="gemnar-app-tests-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _postgres_dir(workdir: Path, name: str) -> Path:
    path = workdir / name
    path.mkdir()
    shutil.chown(path, "postgres", "postgres")
    path.chmod(0o700)
    return path


@dataclass
class Postgres:
    """A running PostgreSQL and how to reach it as superuser."""

    port: int
    superuser_password: str
    daemon: Daemon

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=HOST,
            port=self.port,
            user="postgres",
            password=self.superuser_password,
            dbname=dbname,
            autocommit=True,
            connect_timeout=5,
        )

    def server_connections(
        self, conn: psycopg.Connection[tuple[object, ...]], dbname: str = DB_NAME
    ) -> int:
        """Client backends connected to ``dbname`` (the monitoring one is on ``postgres``)."""
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = %s AND backend_type = 'client backend'",
            (dbname,),
        ).fetchone()
        assert row is not None
        return int(str(row[0]))


def _connect_or_none(pg: Postgres) -> psycopg.Connection[tuple[object, ...]] | None:
    """A superuser connection, or None while PostgreSQL still refuses (starting up)."""
    try:
        return pg.connect()
    except psycopg.OperationalError:
        return None


@pytest.fixture(scope="session")
def postgres(workdir: Path) -> Iterator[Postgres]:
    """PostgreSQL 15 with a ``gemnar`` role and database; TimeZone is UTC."""
    _require(str(PG_BIN / "postgres"))
    data = _postgres_dir(workdir, "pgdata")
    sockets = _postgres_dir(workdir, "pgsock")
    password = secrets.token_hex(16)
    pwfile = workdir / "pg-superuser-password"
    pwfile.write_text(password + "\n")
    shutil.chown(pwfile, "postgres", "postgres")
    subprocess.run(
        [
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        user="postgres",
        group="postgres",
        extra_groups=[],
        cwd=workdir,
    )
    port = free_port()
    daemon = start_daemon(
        "postgres",
        [
            str(PG_BIN / "postgres"),
            "-D",
            str(data),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            f"port={port}",
            "-c",
            f"unix_socket_directories={sockets}",
            "-c",
            "max_connections=60",
            "-c",
            "timezone=UTC",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
        ],
        workdir / "postgres.log",
        as_postgres=True,
        cwd=workdir,
        # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client.
        stop_signal=signal.SIGINT,
    )
    try:
        wait_for_port(daemon, port)
        pg = Postgres(port, password, daemon)
        conn = wait_until(
            lambda: _connect_or_none(pg),
            timeout_s=20,
            what="PostgreSQL accepting connections",
            abort=lambda: exited(daemon),
            detail=daemon.log_tail,
        )
        with conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(DB_USER), sql.Literal(DB_PASSWORD)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DB_NAME), sql.Identifier(DB_USER)
                )
            )
        yield pg
    finally:
        daemon.stop()


@dataclass
class PgBouncer:
    """A running PgBouncer in transaction mode in front of ``backend_port``."""

    port: int
    pool_size: int
    daemon: Daemon

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        """The admin console (``stats_users``), which speaks only the simple query protocol."""
        return psycopg.connect(
            host=HOST,
            port=self.port,
            user=DB_USER,
            password=DB_PASSWORD,
            dbname="pgbouncer",
            autocommit=True,
            cursor_factory=psycopg.ClientCursor,
            connect_timeout=5,
        )

    def clients(self, admin: psycopg.Connection[tuple[object, ...]]) -> int:
        """Client connections to the app database, active or waiting for a server."""
        cursor = admin.execute("SHOW POOLS")
        names = [column.name for column in cursor.description or []]
        total = 0
        for row in cursor.fetchall():
            record = dict(zip(names, row, strict=True))
            if record["database"] == DB_NAME:
                total += int(str(record["cl_active"])) + int(str(record["cl_waiting"]))
        return total


def start_pgbouncer(workdir: Path, name: str, backend_port: int,
                    admin: tuple[str, str] | None = None) -> PgBouncer:
    """PgBouncer with SCRAM auth from an auth_file, transaction pooling, loopback only;
    ``admin`` (user, password) may also use its admin console."""
    directory = _postgres_dir(workdir, name)
    userlist = directory / "userlist.txt"
    users = [(DB_USER, DB_PASSWORD), *([admin] if admin else [])]
    userlist.write_text("".join(f'"{user}" "{password}"\n' for user, password in users))
    port = free_port()
    ini = directory / "pgbouncer.ini"
    ini.write_text(
        "\n".join(
            [
                "[databases]",
                f"{DB_NAME} = host={HOST} port={backend_port} dbname={DB_NAME}",
                "[pgbouncer]",
                f"listen_addr = {HOST}",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = scram-sha-256",
                f"auth_file = {userlist}",
                "pool_mode = transaction",
                f"default_pool_size = {POOL_SIZE}",
                "min_pool_size = 0",
                "reserve_pool_size = 0",
                f"max_db_connections = {POOL_SIZE}",
                "max_client_conn = 1000",
                "server_connect_timeout = 3",
                "query_wait_timeout = 30",
                "ignore_startup_parameters = extra_float_digits",
                f"stats_users = {DB_USER}",
                *([f"admin_users = {admin[0]}"] if admin else []),
                "",
            ]
        )
    )
    for path in (userlist, ini):
        shutil.chown(path, "postgres", "postgres")
        path.chmod(0o600)
    daemon = start_daemon(
        name, ["pgbouncer", str(ini)], workdir / f"{name}.log", as_postgres=True, cwd=directory
    )
    try:
        wait_for_port(daemon, port)
    except Exception:
        daemon.stop()
        raise
    return PgBouncer(port, POOL_SIZE, daemon)


@pytest.fixture(scope="session")
def pgbouncer(workdir: Path, postgres: Postgres) -> Iterator[PgBouncer]:
    """The shared PgBouncer every sample-app worker connects through."""
    _require("pgbouncer")
    bouncer = start_pgbouncer(workdir, "pgbouncer", postgres.port)
    yield bouncer
    bouncer.daemon.stop()


@dataclass
class Redis:
    """A running redis-server."""

    port: int
    daemon: Daemon

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"


def start_redis(workdir: Path, name: str) -> Redis:
    """redis-server on loopback without persistence."""
    directory = workdir / name
    directory.mkdir()
    port = free_port()
    daemon = start_daemon(
        name,
        [
            "redis-server",
            "--bind",
            HOST,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        workdir / f"{name}.log",
    )
    try:
        wait_for_port(daemon, port)
    except Exception:
        daemon.stop()
        raise
    return Redis(port, daemon)


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[Redis]:
    """The shared Redis (cache and channel layer)."""
    _require("redis-server")
    server = start_redis(workdir, "redis")
    yield server
    server.daemon.stop()


@dataclass
class AppEnv:
    """Paths and secrets shared by every worker of the sample app."""

    base: dict[str, str]
    media_root: Path
    static_root: Path
    workdir: Path

    def for_worker(self, name: str, **overrides: str | None) -> dict[str, str]:
        """The base environment for worker ``name``; an override of None removes a variable."""
        env: dict[str, str | None] = {**self.base, "GEMNAR_WORKER_NAME": name, **overrides}
        return {k: v for k, v in env.items() if v is not None}


def _base_process_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # Uvicorn trusts X-Forwarded-* from 127.0.0.1 by default; point it at nobody so the app's
    # own TrustedProxyMiddleware is what the tests exercise.
    env["FORWARDED_ALLOW_IPS"] = "192.0.2.1"
    return env


def run_manage(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python manage.py ...`` in app/, with only ``env`` as configuration."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=APP_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="session")
def app_env(workdir: Path, pgbouncer: PgBouncer, redis_server: Redis) -> AppEnv:
    """Environment for workers; the database is migrated, static collected, a user created."""
    secret_file = workdir / "secret-key"
    secret_file.write_text(secrets.token_urlsafe(50) + "\n")
    secret_file.chmod(0o600)
    password_file = workdir / "db-password"
    password_file.write_text(DB_PASSWORD + "\n")
    password_file.chmod(0o600)
    media_root = workdir / "shared" / "media"
    static_root = workdir / "shared" / "static"
    media_root.mkdir(parents=True)
    static_root.mkdir(parents=True)
    base = {
        **_base_process_env(),
        "GEMNAR_SECRET_KEY_FILE": str(secret_file),
        "GEMNAR_DB_HOST": HOST,
        "GEMNAR_DB_PORT": str(pgbouncer.port),
        "GEMNAR_DB_NAME": DB_NAME,
        "GEMNAR_DB_USER": DB_USER,
        "GEMNAR_DB_PASSWORD_FILE": str(password_file),
        "GEMNAR_REDIS_URL": redis_server.url,
        "GEMNAR_ALLOWED_HOSTS": f"{APP_HOST},127.0.0.1,localhost",
        "GEMNAR_MEDIA_ROOT": str(media_root),
        "GEMNAR_STATIC_ROOT": str(static_root),
        "GEMNAR_TRUSTED_PROXY": "127.0.0.1",
        "GEMNAR_SECURE_COOKIES": "0",
        "GEMNAR_HEALTH_TIMEOUT": "1.5",
        # The test machine's free disk is not what these tests are about.
        "GEMNAR_HEALTH_MIN_DISK_FREE_MB": "1",
        "GEMNAR_HEALTH_MIN_DISK_FREE_PERCENT": "1",
    }
    env = {**base, "GEMNAR_WORKER_NAME": "manage"}
    run_manage(env, "migrate", "--noinput")
    run_manage(env, "collectstatic", "--noinput")
    run_manage(
        {**env, "DJANGO_SUPERUSER_PASSWORD": USER_PASSWORD},
        "createsuperuser",
        "--noinput",
        "--username",
        USERNAME,
        "--email",
        "alice@example.test",
    )
    return AppEnv(base, media_root, static_root, workdir)


@dataclass
class Worker:
    """A sample-app worker: Uvicorn serving ``sampleproject.asgi:application``."""

    name: str
    port: int
    daemon: Daemon

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        # The same address and port: Uvicorn serves WebSockets beside HTTP.
        return self.url.replace("http://", "ws://", 1)

    @property
    def pid(self) -> int:
        return self.daemon.proc.pid

    def client(
        self, *, headers: Mapping[str, str] | None = None, cookies: Mapping[str, str] | None = None
    ) -> httpx.Client:
        """A client for this worker that sends the public Host name unless told otherwise."""
        return httpx.Client(
            base_url=self.url,
            headers={"Host": APP_HOST, **(headers or {})},
            cookies=dict(cookies or {}),
            timeout=10,
        )


def start_worker(workdir: Path, name: str, env: Mapping[str, str]) -> Worker:
    """Start Uvicorn exactly as deployment does and wait until /health/ answers at all."""
    port = free_port()
    daemon = start_daemon(
        name,
        [
            sys.executable,
            "-m",
            "uvicorn",
            "sampleproject.asgi:application",
            "--host",
            HOST,
            "--port",
            str(port),
        ],
        workdir / f"{name}.log",
        env=env,
        cwd=APP_DIR,
        stop_signal=signal.SIGTERM,
    )
    worker = Worker(name, port, daemon)

    def answers() -> bool:
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"{worker.url}/health/", timeout=5)
            return True
        return False

    try:
        wait_until(answers, timeout_s=30, what=f"{name} answering /health/",
                   abort=lambda: exited(daemon), detail=daemon.log_tail)
    except WaitTimeout:
        daemon.stop()
        raise
    return worker


WorkerFactory = Callable[..., Worker]


@pytest.fixture(scope="session")
def worker_factory(app_env: AppEnv) -> Iterator[WorkerFactory]:
    """Starts extra workers with env overrides; all are stopped at the end of the session."""
    started: list[Worker] = []

    def make(name: str, **overrides: str | None) -> Worker:
        worker = start_worker(app_env.workdir, name, app_env.for_worker(name, **overrides))
        started.append(worker)
        return worker

    yield make
    for worker in reversed(started):
        worker.daemon.stop()


@pytest.fixture(scope="session")
def worker_a(worker_factory: WorkerFactory) -> Worker:
    """Worker A: the local-stack flavour, with the memory-hold endpoint enabled."""
    return worker_factory("worker-a", GEMNAR_LOCAL_DEBUG_MEMORY="1")


@pytest.fixture(scope="session")
def worker_b(worker_factory: WorkerFactory, app_env: AppEnv, pgbouncer: PgBouncer) -> Worker:
    """Worker B: database given as one URL instead of separate variables."""
    url = f"postgresql://{DB_USER}:{DB_PASSWORD}@{HOST}:{pgbouncer.port}/{DB_NAME}"
    return worker_factory(
        "worker-b",
        GEMNAR_DB_HOST=None,
        GEMNAR_DB_PORT=None,
        GEMNAR_DB_NAME=None,
        GEMNAR_DB_USER=None,
        GEMNAR_DB_PASSWORD_FILE=None,
        GEMNAR_DATABASE_URL=url,
        GEMNAR_TRUSTED_PROXY="10.9.0.1",
    )
