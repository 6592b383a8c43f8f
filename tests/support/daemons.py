"""Real daemons from rendered configs for tests: started in the foreground, waited for, and
always stopped (SIGTERM, then SIGKILL), also when the test body raises.

Each ``running_*`` context manager writes the rendered text to the paths named in the
settings, starts the program, waits until it answers and yields a ``Daemon``. The state
directory lives outside pytest's root-only temp tree so the ``postgres`` user can traverse it
(see ``state_directory``). The preparation helpers come from ``localnode`` and are
re-exported here, so a test reads ``daemons.psql(...)`` whatever module holds it.

Typical use::

    with state_directory() as root:
        settings = loopback_controller_settings(root)
        with running_postgres(settings) as pg, running_redis(settings, "pw") as redis:
            ...
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from localnode.files import install_rendered, make_dirs, write_file
from localnode.services import (
    as_postgres,
    port_open,
    postgres_bin,
    prepare_nginx,
    prepare_postgres,
    psql,
    self_signed_certificate,
    write_pgbouncer_files,
)
from provisioning.media import MediaStore
from provisioning.pgbouncer import render_pgbouncer_userlist
from provisioning.redis import render_redis_conf, render_redis_secrets
from provisioning.settings import ControllerPaths, ControllerPorts, ControllerSettings
from tests.support import waiting
from tests.support.net import free_port, free_ports, loopback_address

__all__ = [
    "Daemon", "DaemonError", "as_postgres", "create_app_role", "free_port", "free_ports",
    "install_rendered", "loopback_controller_settings", "make_dirs", "nginx_reload",
    "nginx_test", "port_open", "postgres_bin", "prepare_nginx", "prepare_postgres", "psql",
    "random_loopback_address", "running_nginx", "running_pgbouncer",
    "running_pgbouncer_with_role", "running_postgres", "running_redis",
    "self_signed_certificate", "state_directory", "write_file", "write_pgbouncer_files",
]

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


# Addresses and ports come from tests.support.net (imported above), the one place for them.
random_loopback_address = loopback_address


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

    def exited() -> str | None:
        code = daemon.process.poll()
        return None if code is None else f"{daemon.name} exited with {code}"

    try:
        waiting.wait_until(ready, timeout_s=timeout_s, interval_s=0.1, what=f"{daemon.name} ready",
                           abort=exited, detail=daemon.log_tail)
    except waiting.WaitTimeout as err:
        raise DaemonError(str(err)) from None


@contextlib.contextmanager
def _supervised(daemon: Daemon, ready: Callable[[], bool]) -> Iterator[Daemon]:
    try:
        wait_until(ready, daemon)
        yield daemon
    finally:
        daemon.stop()


# --- the daemons ----------------------------------------------------------------------------


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
def running_redis(
    settings: ControllerSettings, password: str, exporter_password: str | None = None
) -> Iterator[Daemon]:
    """Redis with the rendered ``redis.conf`` including a root-only secrets file."""
    paths = settings.paths
    make_dirs(paths.redis_data_dir, paths.redis_run_dir, Path(paths.redis_log_file).parent)
    write_file(paths.redis_secrets_file, render_redis_secrets(password, exporter_password),
               0o600)
    conf = write_file(paths.redis_conf_file, render_redis_conf(settings), 0o640)
    log = Path(paths.redis_log_file)
    process = _spawn(["redis-server", str(conf)], log.with_suffix(".stdout"))
    daemon = Daemon("redis", process, settings.private_address, settings.ports.redis, log)
    with _supervised(daemon, lambda: port_open(daemon.address, daemon.port)) as started:
        yield started


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
def running_nginx(settings: ControllerSettings, upstream: str | None = None,
                  media: MediaStore | None = None) -> Iterator[Daemon]:
    """The controller's Nginx in the foreground with the rendered configs (``media``: where
    ``/media/`` reads from; default the shared directory, as on the local stack)."""
    paths = settings.paths
    conf = prepare_nginx(settings, upstream, media)
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
