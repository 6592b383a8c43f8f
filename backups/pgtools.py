"""PostgreSQL side of a backup: the dump, its table of contents, table statistics, restore.

``PgTarget`` says how to reach the cluster (socket dir or address, port, role, optional
password, where the client programs are); prod and tests differ only in that data. Statistics
and the dump share one exported snapshot, so the manifest describes exactly what was dumped
even while the site keeps writing.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import psycopg
from psycopg import sql

# Row text must not depend on the session: these make ``t::text`` the same at backup and
# restore time, whatever the server's defaults are.
_STABLE_TEXT = (
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET TimeZone = 'UTC'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
)
# Order-independent content checksum: the sum of each row's 64-bit md5 prefix, so no sort
# and no memory grows with the table; count and sum together catch any changed row.
_TABLE_STATS = (
    "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint"
    "::numeric), 0)::text FROM {} AS t"
)
_USER_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
ORDER BY 1, 2
"""


class PgToolError(Exception):
    """A PostgreSQL client program failed; the message carries its stderr."""


@dataclass(frozen=True)
class PgTarget:
    """How to reach the cluster as a role that may dump and create databases."""

    host: str
    port: int
    user: str = "postgres"
    password: str | None = field(default=None, repr=False)
    bin_dir: str = "/usr/lib/postgresql/15/bin"

    def env(self, dbname: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST=self.host, PGPORT=str(self.port), PGUSER=self.user,
                   PGDATABASE=dbname, PGCONNECT_TIMEOUT="10")
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def program(self, name: str) -> str:
        return str(Path(self.bin_dir) / name)

    def connect(self, dbname: str) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password,
            dbname=dbname, autocommit=True, connect_timeout=10,
        )


def _run(argv: list[str], env: Mapping[str, str], stdout: BinaryIO | None = None,
         stdin: BinaryIO | None = None) -> bytes:
    result = subprocess.run(
        argv, env=dict(env), stdin=stdin or subprocess.DEVNULL,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE, check=False,
    )
    if result.returncode != 0:
        name = Path(argv[0]).name
        raise PgToolError(f"{name} exited {result.returncode}: {result.stderr.decode().strip()}")
    return result.stdout or b""


def user_tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[tuple[str, str]]:
    return [(str(s), str(t)) for s, t in conn.execute(_USER_TABLES).fetchall()]


def table_stats(
    conn: psycopg.Connection[tuple[object, ...]],
) -> dict[str, tuple[int, str]]:
    """``schema.table`` -> (row count, content checksum) for every user table."""
    for statement in _STABLE_TEXT:
        conn.execute(statement)  # type: ignore[arg-type]
    stats = {}
    for schema, table in user_tables(conn):
        query = sql.SQL(_TABLE_STATS).format(sql.Identifier(schema, table))  # type: ignore[arg-type]
        row = conn.execute(query).fetchone()
        assert row is not None
        stats[f"{schema}.{table}"] = (int(str(row[0])), str(row[1]))
    return stats


@contextmanager
def exported_snapshot(
    target: PgTarget, dbname: str
) -> Iterator[tuple[str, dict[str, tuple[int, str]]]]:
    """A repeatable-read transaction held open: (snapshot id for pg_dump, its table stats)."""
    with target.connect(dbname) as conn:
        conn.autocommit = False
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        stats = table_stats(conn)
        try:
            yield str(row[0]), stats
        finally:
            conn.rollback()


def dump(target: PgTarget, dbname: str, snapshot: str | None, sink: BinaryIO) -> None:
    """``pg_dump -Fc`` of ``dbname`` (in ``snapshot`` when given) into ``sink``."""
    argv = [target.program("pg_dump"), "--format=custom", "--no-password"]
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    _run([*argv, dbname], target.env(dbname), stdout=sink)


def dump_globals(target: PgTarget, sink: BinaryIO) -> None:
    """Roles and tablespaces, without password hashes: role passwords are derived from the
    stack secret and set again by the host's secrets hook, so they need not be in a backup."""
    _run([target.program("pg_dumpall"), "--globals-only", "--no-role-passwords",
          "--no-password"], target.env("postgres"), stdout=sink)


# "215; 1259 16390 TABLE public auth_group gemnar", "3380; 0 16390 TABLE DATA public ...".
# Only the kinds the completeness check needs; other entries are counted, not parsed.
_TOC_LINE = re.compile(r"^\d+; \d+ \d+ (?P<kind>TABLE DATA|TABLE) (?P<schema>\S+) (?P<name>\S+) ")
_TOC_ENTRY = re.compile(r"^\d+; \d+ \d+ ")


def toc(target: PgTarget, dump_file: Path) -> list[tuple[str, str]]:
    """``pg_restore --list``: (kind, schema.name) of every entry; raises if it cannot be read."""
    out = _run([target.program("pg_restore"), "--list", str(dump_file)], target.env("postgres"))
    entries = []
    for line in out.decode().splitlines():
        match = _TOC_LINE.match(line)
        if match:
            entries.append((match["kind"], f"{match['schema']}.{match['name']}"))
        elif _TOC_ENTRY.match(line):
            entries.append(("OTHER", line.split(" ", 3)[-1]))
    return entries


def missing_from_toc(entries: list[tuple[str, str]], tables: list[str]) -> list[str]:
    """Tables with no ``TABLE`` or no ``TABLE DATA`` entry in a dump's table of contents."""
    have = {(kind, name) for kind, name in entries}
    return [t for t in tables if ("TABLE", t) not in have or ("TABLE DATA", t) not in have]


def create_database(target: PgTarget, dbname: str, owner: str) -> None:
    with target.connect("postgres") as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
            sql.Identifier(dbname), sql.Identifier(owner)))


def drop_database(target: PgTarget, dbname: str) -> None:
    with target.connect("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(dbname)))


def database_exists(target: PgTarget, dbname: str) -> bool:
    with target.connect("postgres") as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        return row is not None


def database_owner(target: PgTarget, dbname: str) -> str:
    with target.connect("postgres") as conn:
        row = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (dbname,)
        ).fetchone()
        if row is None:
            raise PgToolError(f"database {dbname!r} does not exist")
        return str(row[0])


def restore(target: PgTarget, dbname: str, dump_file: Path) -> None:
    """Restore a custom-format dump into the (fresh, empty) ``dbname`` in one transaction."""
    _run([target.program("pg_restore"), "--exit-on-error", "--single-transaction",
          "--no-password", f"--dbname={dbname}", str(dump_file)], target.env(dbname))


def apply_globals(target: PgTarget, globals_file: Path) -> str:
    """Run the globals script; roles that exist already are reported, not fatal."""
    result = subprocess.run(
        [target.program("psql"), "-X", "-q", "-f", str(globals_file)],
        env=target.env("postgres"), capture_output=True, check=False,
    )
    return result.stderr.decode()
