"""Run the controller's real daemons from rendered configs, as plain processes on loopback.

Each ``running_*`` context manager writes the rendered text to the paths named in the
settings, starts the program in the foreground, waits until it answers, yields a ``Daemon``
and stops it (SIGTERM, then SIGKILL) on exit, also when the body raises. PostgreSQL and
PgBouncer refuse to run as root, so they run as the ``postgres`` system user; the state
directory therefore lives outside pytest's root-only temp tree (see ``state_directory``).

Typical use (tests and the local stack alike)::

    with state_directory() as root:
        settings = loopback_controller_settings(root)
        with running_postgres(settings) as pg, running_redis(settings, "pw") as redis:
            ...
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from provisioning.files import RenderedFile
from provisioning.nginx import render_nginx_conf, render_nginx_upstream
from provisioning.pgbouncer import (
    render_pgbouncer_hba,
    render_pgbouncer_ini,
    render_pgbouncer_userlist,
)
from provisioning.postgres import render_pg_hba, render_pg_ident, render_postgresql_conf
from provisioning.redis import render_redis_conf, render_redis_secrets
from provisioning.settings import ControllerPaths, ControllerPorts, ControllerSettings

POSTGRES_USER = "postgres"
START_TIMEOUT_S = 30.0


class DaemonError(RuntimeError):
    """A daemon did not start; the message carries its log tail."""


@dataclass
class Daemon:
    """A started program: how to reach it, and how to stop it."""

    name: str
    process: subprocess.Popen[bytes]
    address: str
    port: int
    log_file: Path
    # PostgreSQL treats SIGTERM as "smart" shutdown, which waits for every client.
    stop_signal: int = signal.SIGTERM
    extra: dict[str, str] = field(default_factory=dict)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 15.0) -> None:
        """``stop_signal``, wait, then SIGKILL the whole process group."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, self.stop_signal)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


# --- addresses, ports and directories -------------------------------------------------------


def random_loopback_address() -> str:
    """A random 127.x.y.z other than 127.0.0.1, so parallel tests do not collide."""
    rng = random.SystemRandom()
    return f"127.{rng.randint(1, 254)}.{rng.randint(0, 254)}.{rng.randint(2, 254)}"


def free_port(address: str) -> int:
    """A TCP port free on ``address`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def free_ports(address: str, count: int) -> list[int]:
    """``count`` distinct free ports on ``address``."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port(address))
    return sorted(ports)


@contextlib.contextmanager
def state_directory(prefix: str = "gemnar-daemons-") -> Iterator[Path]:
    """A fresh directory the ``postgres`` user can traverse; removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def loopback_controller_settings(
    root: Path, address: str | None = None, **overrides: object
) -> ControllerSettings:
    """Controller settings for plain processes: a 127.x address, free ports, paths under root."""
    address = address or random_loopback_address()
    postgres, pgbouncer, redis, http, https, exporter = free_ports(address, 6)
    ports = ControllerPorts(
        postgres=postgres, pgbouncer=pgbouncer, redis=redis, http=http, https=https,
        node_exporter=exporter,
    )
    settings = ControllerSettings(
        private_address=address,
        vpc_subnet="127.0.0.0/8",
        memory_mb=1024,
        vcpus=2,
        max_workers=3,
        app_concurrency=5,
        ports=ports,
        paths=ControllerPaths.under(root),
        loopback_address=address,
        public_listen_address=address,
        nginx_user=None,
        redis_supervised="no",
    )
    return replace(settings, **overrides)  # type: ignore[arg-type]


def _postgres_ids() -> tuple[int, int]:
    entry = pwd.getpwnam(POSTGRES_USER)
    return entry.pw_uid, entry.pw_gid


def make_dirs(*paths: str | Path, owner_postgres: bool = False, mode: int = 0o755) -> None:
    """Create directories (and parents, world-traversable), optionally owned by postgres."""
    for path in paths:
        target = Path(path)
        target.mkdir(parents=True, exist_ok=True, mode=0o755)
        target.chmod(mode)
        if owner_postgres:
            os.chown(target, *_postgres_ids())


def write_file(
    path: str | Path, text: str, mode: int = 0o644, owner_postgres: bool = False
) -> Path:
    """Write ``text`` to ``path`` (parents created) with ``mode`` and optional postgres owner."""
    target = Path(path)
    make_dirs(target.parent)
    target.write_text(text)
    target.chmod(mode)
    if owner_postgres:
        os.chown(target, *_postgres_ids())
    return target


def install_rendered(files: Sequence[RenderedFile], names: Collection[str]) -> None:
    """Write those of ``files`` whose file name is in ``names``, with their permissions."""
    for rendered in files:
        if Path(rendered.path).name in names:
            write_file(rendered.path, rendered.content, int(rendered.permissions, 8))


def as_postgres(argv: Sequence[str]) -> list[str]:
    """``argv`` run as the postgres system user."""
    return ["runuser", "-u", POSTGRES_USER, "--", *argv]


# --- starting and waiting -------------------------------------------------------------------


def _spawn(argv: Sequence[str], log_file: Path) -> subprocess.Popen[bytes]:
    make_dirs(log_file.parent)
    with open(log_file, "ab") as log:
        # A new session so stop() can signal runuser and the daemon together.
        return subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_until(
    ready: Callable[[], bool], daemon: Daemon, timeout_s: float = START_TIMEOUT_S
) -> None:
    """Poll ``ready`` until true; raise ``DaemonError`` (with the log) on exit or timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            raise DaemonError(
                f"{daemon.name} exited with {daemon.process.returncode}:\n{daemon.log_tail()}"
            )
        if ready():
            return
        time.sleep(0.1)
    raise DaemonError(f"{daemon.name} not ready after {timeout_s}s:\n{daemon.log_tail()}")


def port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _supervised(daemon: Daemon, ready: Callable[[], bool]) -> Iterator[Daemon]:
    try:
        wait_until(ready, daemon)
        yield daemon
    finally:
        daemon.stop()


# --- the daemons ----------------------------------------------------------------------------


def postgres_bin(settings: ControllerSettings, program: str) -> str:
    return str(Path(settings.paths.postgres_bin_dir) / program)


def prepare_postgres(settings: ControllerSettings) -> None:
    """``initdb`` the data directory (once) and write the rendered configs."""
    paths = settings.paths
    make_dirs(paths.postgres_run_dir, paths.postgres_log_dir, owner_postgres=True, mode=0o775)
    make_dirs(paths.postgres_conf_dir, owner_postgres=True)
    if not (Path(paths.postgres_data_dir) / "PG_VERSION").exists():
        make_dirs(paths.postgres_data_dir, owner_postgres=True, mode=0o700)
        subprocess.run(
            as_postgres([
                postgres_bin(settings, "initdb"), "-D", paths.postgres_data_dir,
                "--auth-local=peer", "--auth-host=scram-sha-256", "--encoding=UTF8",
                "--locale=C.UTF-8", "--username", settings.db.admin_user,
            ]),
            check=True, capture_output=True,
        )
    conf_dir = Path(paths.postgres_conf_dir)
    write_file(conf_dir / "postgresql.conf", render_postgresql_conf(settings), owner_postgres=True)
    write_file(conf_dir / "pg_hba.conf", render_pg_hba(settings), 0o640, owner_postgres=True)
    write_file(conf_dir / "pg_ident.conf", render_pg_ident(), 0o640, owner_postgres=True)


def psql(settings: ControllerSettings, sql: str, database: str = "postgres") -> str:
    """Run ``sql`` as the admin role over the unix socket (peer auth); return the output."""
    result = subprocess.run(
        as_postgres([
            "psql", "-h", settings.paths.postgres_run_dir, "-p", str(settings.ports.postgres),
            "-U", settings.db.admin_user, "-d", database, "-v", "ON_ERROR_STOP=1", "-qtA",
            "-c", sql,
        ]),
        check=True, capture_output=True, text=True,
    )
    return result.stdout.strip()


@contextlib.contextmanager
def running_postgres(settings: ControllerSettings) -> Iterator[Daemon]:
    """PostgreSQL started with the rendered ``postgresql.conf`` and ``pg_hba.conf``."""
    prepare_postgres(settings)
    conf = Path(settings.paths.postgres_conf_dir) / "postgresql.conf"
    log = Path(settings.paths.postgres_log_dir) / "startup.log"
    process = _spawn(as_postgres([postgres_bin(settings, "postgres"), "-c", f"config_file={conf}"]),
                     log)
    daemon = Daemon("postgresql", process, settings.private_address, settings.ports.postgres, log,
                    stop_signal=signal.SIGINT)

    def ready() -> bool:
        return subprocess.run(
            [postgres_bin(settings, "pg_isready"), "-q", "-h", settings.paths.postgres_run_dir,
             "-p", str(settings.ports.postgres)],
            check=False,
        ).returncode == 0

    with _supervised(daemon, ready) as started:
        yield started


def create_app_role(settings: ControllerSettings, verifier: str) -> None:
    """The app role with a SCRAM verifier (never the plain password) and its database."""
    user, database = settings.db.app_user, settings.db.database
    psql(settings, f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{verifier}'")
    psql(settings, f'CREATE DATABASE "{database}" OWNER "{user}"')


def write_pgbouncer_files(settings: ControllerSettings, userlist: str) -> Path:
    """PgBouncer's ini, hba and auth files, owned by postgres; returns the ini."""
    paths = settings.paths
    write_file(paths.pgbouncer_hba_file, render_pgbouncer_hba(settings), 0o640,
               owner_postgres=True)
    write_file(paths.pgbouncer_auth_file, userlist, 0o600, owner_postgres=True)
    return write_file(paths.pgbouncer_conf_file, render_pgbouncer_ini(settings), 0o640,
                      owner_postgres=True)


@contextlib.contextmanager
def running_pgbouncer(settings: ControllerSettings, userlist: str) -> Iterator[Daemon]:
    """PgBouncer with the rendered ini and ``userlist`` as its auth file."""
    paths = settings.paths
    make_dirs(paths.pgbouncer_run_dir, Path(paths.pgbouncer_log_file).parent,
              owner_postgres=True, mode=0o775)
    ini = write_pgbouncer_files(settings, userlist)
    log = Path(paths.pgbouncer_log_file).with_suffix(".stdout")
    process = _spawn(as_postgres(["pgbouncer", str(ini)]), log)
    daemon = Daemon("pgbouncer", process, settings.private_address, settings.ports.pgbouncer,
                    Path(paths.pgbouncer_log_file))
    with _supervised(daemon, lambda: port_open(daemon.address, daemon.port)) as started:
        yield started


@contextlib.contextmanager
def running_redis(settings: ControllerSettings, password: str) -> Iterator[Daemon]:
    """Redis with the rendered ``redis.conf`` including a root-only secrets file."""
    paths = settings.paths
    make_dirs(paths.redis_data_dir, paths.redis_run_dir, Path(paths.redis_log_file).parent)
    write_file(paths.redis_secrets_file, render_redis_secrets(password), 0o600)
    conf = write_file(paths.redis_conf_file, render_redis_conf(settings), 0o640)
    log = Path(paths.redis_log_file)
    process = _spawn(["redis-server", str(conf)], log.with_suffix(".stdout"))
    daemon = Daemon("redis", process, settings.private_address, settings.ports.redis, log)
    with _supervised(daemon, lambda: port_open(daemon.address, daemon.port)) as started:
        yield started


def self_signed_certificate(cert: str | Path, key: str | Path, common_name: str) -> None:
    """What the controller's setup script does before certbot has issued a certificate."""
    make_dirs(Path(cert).parent, Path(key).parent)
    subprocess.run(
        ["openssl", "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "2",
         "-subj", f"/CN={common_name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    Path(key).chmod(0o600)


def prepare_nginx(settings: ControllerSettings, upstream: str | None = None) -> Path:
    """Write ``nginx.conf``, the upstream file (default: no members) and a certificate."""
    paths = settings.paths
    make_dirs(paths.nginx_temp_dir, Path(paths.nginx_pid_file).parent,
              Path(paths.nginx_error_log).parent, Path(paths.nginx_access_log).parent,
              Path(paths.nginx_fallback_socket).parent, paths.static_root, paths.media_root,
              paths.acme_webroot)
    if not Path(paths.tls_cert_file).exists():
        self_signed_certificate(paths.tls_cert_file, paths.tls_key_file, settings.server_name)
    write_file(paths.nginx_upstream_file,
               upstream if upstream is not None else render_nginx_upstream([], settings))
    return write_file(paths.nginx_conf_file, render_nginx_conf(settings))


def nginx_test(conf: str | Path, error_log: str | Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on ``conf``; ``-e`` keeps nginx away from /var/log during the check."""
    return subprocess.run(
        ["nginx", "-t", "-c", str(conf), "-e", str(error_log)],
        check=False, capture_output=True, text=True,
    )


def nginx_reload(settings: ControllerSettings) -> None:
    """What a membership change does after rewriting the upstream file."""
    paths = settings.paths
    subprocess.run(
        ["nginx", "-c", paths.nginx_conf_file, "-e", paths.nginx_error_log, "-s", "reload"],
        check=True, capture_output=True,
    )


@contextlib.contextmanager
def running_nginx(settings: ControllerSettings, upstream: str | None = None) -> Iterator[Daemon]:
    """The controller's Nginx in the foreground with the rendered configs."""
    paths = settings.paths
    conf = prepare_nginx(settings, upstream)
    process = _spawn(
        ["nginx", "-c", str(conf), "-e", paths.nginx_error_log, "-g", "daemon off;"],
        Path(paths.nginx_error_log).with_suffix(".stdout"),
    )
    daemon = Daemon("nginx", process, settings.private_address, settings.ports.https,
                    Path(paths.nginx_error_log))
    with _supervised(daemon, lambda: port_open(daemon.address, daemon.port)) as started:
        yield started


def running_pgbouncer_with_role(
    settings: ControllerSettings, verifier: str
) -> contextlib.AbstractContextManager[Daemon]:
    """PgBouncer whose auth file holds the app role's SCRAM verifier."""
    return running_pgbouncer(settings, render_pgbouncer_userlist(settings.db.app_user, verifier))
