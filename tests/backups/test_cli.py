"""``python -m backups`` as the timer and an operator run it: the controller's settings JSON,
the root-only env file, exit codes, the status file and the textfile metric read by the real
node exporter."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from provisioning.settings import ControllerPaths, ControllerPorts, ControllerSettings
from provisioning.settings_codec import to_json
from tests.app.gemnar_app_fixtures import (
    HOST,
    AppEnv,
    Postgres,
    free_port,
    start_daemon,
    wait_for_port,
)
from tests.backups.fixtures import SECRET
from tests.support.s3_server import S3Server
from tests.support.tooling import require_executable

pytestmark = pytest.mark.daemons
REPO = Path(__file__).resolve().parents[2]


def settings_file(tmp: Path, postgres: Postgres, media_root: Path) -> Path:
    paths = replace(
        ControllerPaths.under(tmp / "node"),
        postgres_run_dir=str(postgres.daemon.log.parent / "pgsock"),
        postgres_bin_dir="/usr/lib/postgresql/15/bin",
        media_root=str(media_root),
    )
    settings = ControllerSettings("127.0.0.1", "10.20.0.0/24", 4096, 2, 4, paths=paths,
                                  ports=replace(ControllerPorts(), postgres=postgres.port))
    path = tmp / "controller.json"
    path.write_text(to_json(settings))
    return path


def run(
    settings: Path, env_file: Path, metrics: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GEMNAR_BACKUP_METRICS_FILE": str(metrics)}
    return subprocess.run(
        [sys.executable, "-m", "backups", "--settings", str(settings), "--env", str(env_file),
         *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)


def scrape_textfile(directory: Path) -> str:
    """The metrics as the real node exporter's textfile collector serves them."""
    exporter = require_executable("prometheus-node-exporter")
    port = free_port()
    daemon = start_daemon(
        "node-exporter",
        [str(exporter), f"--web.listen-address={HOST}:{port}", "--collector.disable-defaults",
         "--collector.textfile", f"--collector.textfile.directory={directory}"],
        directory.parent / "node-exporter.log")
    try:
        wait_for_port(daemon, port)
        return httpx.get(f"http://{HOST}:{port}/metrics", timeout=10).text
    finally:
        daemon.stop()


def value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported:\n{text[:2000]}")


def test_the_cli_backs_up_restores_and_reports(
    tmp_path: Path, postgres: Postgres, s3: S3Server, seeded: AppEnv
) -> None:
    settings = settings_file(tmp_path, postgres, seeded.media_root)
    bucket = "cli-bucket-not-created-yet"
    env_file = tmp_path / "backup.env"
    env_file.write_text(
        f"GEMNAR_BACKUP_KEY='{SECRET}'\nGEMNAR_BACKUP_PG_PASSWORD='{postgres.superuser_password}'\n"
        f"GEMNAR_BACKUP_S3_ENDPOINT='{s3.endpoint}'\nGEMNAR_BACKUP_S3_BUCKET='{bucket}'\n"
        f"GEMNAR_BACKUP_S3_ACCESS_KEY='{s3.access_key}'\n"
        f"GEMNAR_BACKUP_S3_SECRET_KEY='{s3.secret_key}'\nGEMNAR_BACKUP_KEEP_DAILY='3'\n")
    metrics = tmp_path / "textfile" / "gemnar_backup.prom"
    status_file = tmp_path / "node/var/lib/gemnar/backup-status.json"

    done = run(settings, env_file, metrics, "backup")
    assert done.returncode == 0, done.stderr
    assert " ok: " in done.stdout
    status = run(settings, env_file, metrics, "status")
    assert status.returncode == 0
    sets = json.loads(status.stdout)["sets_now"]
    assert len(sets["local"]) == 1 and sets["offsite"] == sets["local"]
    exported = scrape_textfile(metrics.parent)
    assert value(exported, "gemnar_backup_last_attempt_success") == 1
    assert value(exported, 'gemnar_backup_sets{store="offsite"}') == 1
    assert abs(value(exported, "gemnar_backup_last_success_timestamp_seconds") - time.time()) < 600

    restored = run(settings, env_file, metrics, "restore", "--from", "latest", "--into",
                   "cli_restored")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["database"] == "cli_restored"
    with contextlib.closing(postgres.connect()) as conn:
        conn.execute('DROP DATABASE "cli_restored"')

    # An operator with the wrong key: exit 1, the reason in plain words, nothing created.
    wrong = tmp_path / "wrong.env"
    wrong.write_text(env_file.read_text().replace(SECRET, "w" * 48))
    refused = run(settings, wrong, metrics, "restore", "--into", "never_created")
    assert refused.returncode == 1 and "wrong key" in refused.stderr
    with contextlib.closing(postgres.connect()) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = 'never_created'"
                            ).fetchone() is None

    # A night whose env file is missing is a failed backup, visible in status and metric.
    missing = run(settings, tmp_path / "absent.env", metrics, "backup")
    assert missing.returncode == 2 and "absent.env" in missing.stderr
    assert json.loads(status_file.read_text())["healthy"] is False
    assert value(scrape_textfile(metrics.parent), "gemnar_backup_last_attempt_success") == 0
    assert run(settings, env_file, metrics, "status").returncode == 1
