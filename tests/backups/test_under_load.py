"""Backing up, and swapping a restored database in, while the site serves a steady load
through PgBouncer: not one request fails."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from backups.backup import run_backup
from backups.restore import RestoreRequest, run_restore
from tests.app.gemnar_app_fixtures import (
    APP_HOST,
    DB_NAME,
    DB_PASSWORD,
    DB_USER,
    HOST,
    AppEnv,
    PgBouncer,
    Postgres,
    WorkerFactory,
)
from tests.backups.fixtures import make_config
from tests.support.s3_server import S3Server

pytestmark = pytest.mark.daemons
# Bounds of the load: it stops at whichever comes first.
MAX_REQUESTS = 30_000
MAX_SECONDS = 120.0
# Steady, not flat out: each client waits this long between requests.
PACE_S = 0.01
WARM = 50


@dataclass
class Load:
    """Client threads issuing requests back to back until told to stop or a bound is hit."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    warm: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, one: Callable[[], None]) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        while not self.stop.is_set() and time.monotonic() < deadline:
            with self.lock:
                if self.ok + len(self.failures) >= MAX_REQUESTS:
                    return
            try:
                one()
            except Exception as error:  # every failure counts, whatever its kind
                with self.lock:
                    self.failures.append(repr(error)[:200])
            else:
                with self.lock:
                    self.ok += 1
                    if self.ok >= WARM:
                        self.warm.set()
            self.stop.wait(PACE_S)


def test_backup_and_swap_under_load_fail_no_request(
    tmp_path: Path, postgres: Postgres, pgbouncer: PgBouncer, s3: S3Server, seeded: AppEnv,
    worker_factory: WorkerFactory,
) -> None:
    worker = worker_factory("backup-load")
    with postgres.connect(DB_NAME) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.load_tick (id bigserial PRIMARY KEY, "
                     "at timestamptz DEFAULT now())")
        conn.execute("GRANT ALL ON public.load_tick, public.load_tick_id_seq TO gemnar")
    load = Load()
    clients = [worker.client() for _ in range(3)]

    def page(client: httpx.Client) -> Callable[[], None]:
        def one() -> None:
            response = client.get("/", headers={"Host": APP_HOST})
            if response.status_code != 200:
                raise AssertionError(f"GET / answered {response.status_code}")
        return one

    writer = psycopg.connect(host=HOST, port=pgbouncer.port, user=DB_USER, password=DB_PASSWORD,
                             dbname=DB_NAME, autocommit=True, prepare_threshold=None)

    def write() -> None:
        writer.execute("INSERT INTO public.load_tick DEFAULT VALUES")

    threads = [threading.Thread(target=load.run, args=(page(c),)) for c in clients]
    threads.append(threading.Thread(target=load.run, args=(write,)))
    cfg = make_config(tmp_path, postgres, s3, seeded.media_root, pgbouncer)
    for thread in threads:
        thread.start()
    try:
        assert load.warm.wait(30), f"the load did not get going: {load.failures[:3]}"
        before_backup = load.ok
        result = run_backup(cfg)
        during_backup = load.ok - before_backup
        swapped = run_restore(cfg, RestoreRequest(source="offsite", swap=True))
        during_all = load.ok - before_backup
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for client in clients:
            client.close()
        writer.close()
    assert load.failures == []
    assert result.manifest.tables["public.load_tick"].rows > 0
    assert swapped.swapped and swapped.kept_as
    assert during_backup > 10 and during_all > during_backup
    print(f"LOAD-FIGURES ok={load.ok} during_backup={during_backup} during_all={during_all} "
          f"swap_s={swapped.durations['swap']}")
    # The pre-restore database is kept for the operator; this test drops it.
    with postgres.connect() as conn:
        conn.execute(f'DROP DATABASE "{swapped.kept_as}" WITH (FORCE)')
