"""The controller's daemons prepared from rendered configs: what a local node and the tests
share (initdb and configs for PostgreSQL, PgBouncer's files, Nginx's files and certificate),
plus the small checks both use. Starting and supervising is someone else's job
(``localnode.supervise`` for the local stack, ``tests.support.daemons`` for tests).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from localnode.files import POSTGRES_USER, make_dirs, write_file
from provisioning.media import MediaDirectory, MediaStore, render_nginx_media
from provisioning.nginx import render_nginx_conf, render_nginx_upstream
from provisioning.pgbouncer import (
    render_pgbouncer_hba,
    render_pgbouncer_ini,
)
from provisioning.postgres import render_pg_hba, render_pg_ident, render_postgresql_conf
from provisioning.settings import ControllerSettings


def as_postgres(argv: Sequence[str]) -> list[str]:
    """``argv`` run as the postgres system user."""
    return ["runuser", "-u", POSTGRES_USER, "--", *argv]


def port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


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
    write_file(conf_dir / "pg_ident.conf",
               render_pg_ident(settings.db.admin_user, settings.db.monitor_user), 0o640,
               owner_postgres=True)


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


def write_pgbouncer_files(settings: ControllerSettings, userlist: str) -> Path:
    """PgBouncer's ini, hba and auth files, owned by postgres; returns the ini."""
    paths = settings.paths
    write_file(paths.pgbouncer_hba_file, render_pgbouncer_hba(settings), 0o640,
               owner_postgres=True)
    write_file(paths.pgbouncer_auth_file, userlist, 0o600, owner_postgres=True)
    return write_file(paths.pgbouncer_conf_file, render_pgbouncer_ini(settings), 0o640,
                      owner_postgres=True)


def self_signed_certificate(cert: str | Path, key: str | Path, common_name: str) -> None:
    """What the controller's setup script does before certbot has issued a certificate."""
    make_dirs(Path(cert).parent, Path(key).parent)
    subprocess.run(
        ["openssl", "req", "-x509", "-nodes", "-newkey", "rsa:2048", "-days", "2",
         "-subj", f"/CN={common_name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    Path(key).chmod(0o600)


def prepare_nginx(settings: ControllerSettings, upstream: str | None = None,
                  media: MediaStore | None = None) -> Path:
    """Write ``nginx.conf``, the upstream file (default: no members), ``/media/`` (default:
    the shared directory, the local platform's media) and a certificate."""
    paths = settings.paths
    make_dirs(paths.nginx_temp_dir, Path(paths.nginx_pid_file).parent,
              Path(paths.nginx_error_log).parent, Path(paths.nginx_access_log).parent,
              Path(paths.nginx_fallback_socket).parent, paths.static_root, paths.media_root,
              paths.acme_webroot)
    if not Path(paths.tls_cert_file).exists():
        self_signed_certificate(paths.tls_cert_file, paths.tls_key_file, settings.server_name)
    write_file(paths.nginx_upstream_file,
               upstream if upstream is not None else render_nginx_upstream([], settings))
    store = media if media is not None else MediaDirectory(paths.media_root)
    write_file(paths.nginx_media_file, render_nginx_media(store, settings))
    return write_file(paths.nginx_conf_file, render_nginx_conf(settings))
