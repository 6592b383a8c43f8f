"""The timer's path on a controller: ``python -m backups`` as root reaches PostgreSQL over the
unix socket as ``postgres`` through the rendered ``pg_hba.conf``/``pg_ident.conf`` peer map, with
no database password, from the controller's own settings JSON; other OS users are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning.scram import scram_sha256_verifier
from provisioning.settings_codec import to_json
from tests.backups.fixtures import SECRET
from tests.support import daemons
from tests.support.tooling import require_executable

pytestmark = pytest.mark.daemons
REPO = Path(__file__).resolve().parents[2]


def test_root_backs_up_and_restores_through_the_peer_map(tmp_path: Path) -> None:
    require_executable("postgres", "/usr/lib/postgresql/15/bin")
    require_executable("runuser")
    with daemons.state_directory() as root:
        settings = daemons.loopback_controller_settings(root)
        with daemons.running_postgres(settings):
            daemons.create_app_role(settings, scram_sha256_verifier("app-password-" + "p" * 20))
            daemons.psql(settings, "CREATE TABLE t (id int PRIMARY KEY, v text); "
                         "INSERT INTO t SELECT i, md5(i::text) FROM generate_series(1, 500) i",
                         database=settings.db.database)
            settings_file = tmp_path / "controller.json"
            settings_file.write_text(to_json(settings))
            env_file = tmp_path / "backup.env"
            env_file.write_text(f"GEMNAR_BACKUP_KEY='{SECRET}'\n")  # no password, no bucket
            env = {**os.environ, "GEMNAR_BACKUP_METRICS_FILE": str(tmp_path / "m.prom")}

            def backups(*args: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run(
                    [sys.executable, "-m", "backups", "--settings", str(settings_file),
                     "--env", str(env_file), *args],
                    cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)

            done = backups("backup")
            assert done.returncode == 0, done.stderr
            assert "1 tables, 500 rows" in done.stdout
            restored = backups("restore", "--into", "checked", "--with-globals")
            assert restored.returncode == 0, restored.stderr
            assert json.loads(restored.stdout)["rows"] == 500
            assert daemons.psql(settings, "SELECT count(*) FROM t", database="checked") == "500"

            # The map names root and postgres only: any other OS user is refused.
            other = subprocess.run(
                ["runuser", "-u", "nobody", "--", "/usr/lib/postgresql/15/bin/psql", "-h",
                 settings.paths.postgres_run_dir, "-p", str(settings.ports.postgres),
                 "-U", "postgres", "-d", "postgres", "-c", "select 1"],
                capture_output=True, text=True, check=False, cwd="/")
            assert other.returncode != 0
            assert "authentication failed" in other.stderr
