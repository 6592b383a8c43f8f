"""Swapping a restored database in while PgBouncer holds the app's queries.

``PAUSE`` on PgBouncer's admin console waits for running transactions, closes its server
connections and queues new queries; the databases are renamed (the live one is kept under a
``_pre_restore_`` name, never dropped here); ``RESUME`` lets the queued queries run against the
restored one. Clients see a delay, not an error, as long as the swap is shorter than their
``query_wait_timeout``.

The pause is PgBouncer's global one, not ``PAUSE db``: a database paused on its own still gets
new server connections to keep its ``min_pool_size`` while a client is connected (PgBouncer's
janitor checks only the global pause). One such login raced the rename, failed, and PgBouncer
then refused every client for ``server_login_retry`` after the swap (seen in CI); one that
succeeded could also make the rename fail ("being accessed by other users").
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from backups.pgtools import PgTarget


class SwapError(Exception):
    """The swap did not happen; the live database is as it was."""


def _admin(bouncer: PgTarget) -> psycopg.Connection[tuple[object, ...]]:
    # The admin console speaks only the simple query protocol.
    return psycopg.connect(
        host=bouncer.host, port=bouncer.port, user=bouncer.user, password=bouncer.password,
        dbname="pgbouncer", autocommit=True, cursor_factory=psycopg.ClientCursor,
        connect_timeout=10,
    )


def check_admin(bouncer: PgTarget, live: str) -> None:
    """Log in to the admin console and find ``live`` there, before a restore starts: a swap
    that cannot happen is known before anything is downloaded or restored."""
    try:
        with _admin(bouncer) as admin:
            names = [str(row[0]) for row in admin.execute("SHOW DATABASES").fetchall()]
    except psycopg.Error as error:
        raise SwapError(f"PgBouncer's admin console refused {bouncer.user}: {error}") from error
    if live not in names:
        raise SwapError(f"PgBouncer serves no database {live!r} (it has {', '.join(names)})")


def swap_in(pg: PgTarget, bouncer: PgTarget, live: str, restored: str, keep_as: str) -> None:
    """Rename ``live`` to ``keep_as`` and ``restored`` to ``live`` with the app paused."""
    with _admin(bouncer) as admin, pg.connect("postgres") as conn:
        admin.execute("PAUSE")
        try:
            # Sessions outside PgBouncer (psql, a worker's direct connection) would block the
            # rename; PgBouncer's own are closed by PAUSE.
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()", (live,))
            with conn.transaction():
                conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(live), sql.Identifier(keep_as)))
                conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(restored), sql.Identifier(live)))
        except psycopg.Error as error:
            raise SwapError(f"renaming failed, {live} unchanged: {error}") from error
        finally:
            admin.execute("RESUME")
