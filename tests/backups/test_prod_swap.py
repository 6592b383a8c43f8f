"""``restore --swap`` on a controller as prod renders it: PostgreSQL with the rendered configs,
the rendered ``gemnar-apply-secrets`` writing PgBouncer's auth file from ``controller.env``,
PgBouncer with the rendered ini and hba, and ``python -m backups`` as root with the
``backup.env`` the program renders. Both files come from the program's own functions and one
seed; only ``systemctl`` is a shim (it records the reload the hook asks for).

The app keeps one connection through PgBouncer across the swap: it sees the restored data
afterwards, not an error. With a wrong admin password in ``backup.env`` the swap is refused
and the live database stays as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from components.host_secrets import CONTROLLER_SECRETS, controller_secret_env, render_env_file
from components.offsite_storage import BACKUP_ENV, OffsiteStorageArgs, backup_env
from provisioning.files import controller_files
from provisioning.monitoring import monitoring_files
from provisioning.pgbouncer import STATS_USER as PGBOUNCER_STATS_USER
from provisioning.scram import scram_sha256_verifier
from provisioning.settings import ControllerSettings
from provisioning.settings_codec import to_json
from tests.support import daemons
from tests.support.tooling import require_executable

pytestmark = pytest.mark.daemons
REPO = Path(__file__).resolve().parents[2]
SEED = "swap-test-seed-" + "q" * 40
ROWS = 700


def apply_secrets(settings: ControllerSettings, shims: Path) -> list[str]:
    """Run the rendered hook on the rendered ``controller.env``; the systemctl calls it made."""
    hook = next(f for f in controller_files(settings) if f.path.endswith("/gemnar-apply-secrets"))
    daemons.write_file(hook.path, hook.content, 0o755)
    secrets_file = Path(settings.paths.secrets_dir) / "controller.env"
    daemons.make_dirs(secrets_file.parent, Path(settings.paths.redis_secrets_file).parent,
                      Path(settings.paths.pgbouncer_auth_file).parent)
    daemons.write_file(secrets_file, render_env_file(controller_secret_env(SEED)), 0o600)
    # Alertmanager's config as cloud-init wrote it: the hook sets its webhook receiver.
    alertmanager = settings.paths.alertmanager_conf_file
    daemons.make_dirs(Path(alertmanager).parent)
    daemons.write_file(alertmanager, dict(monitoring_files(settings))[alertmanager], 0o640)
    calls = shims / "systemctl.log"
    shims.mkdir(exist_ok=True)
    systemctl = shims / "systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    systemctl.chmod(0o755)
    result = subprocess.run(
        [str(require_executable("bash")), hook.path], capture_output=True, text=True,
        env={"PATH": f"{shims}:{os.environ['PATH']}"}, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return calls.read_text().splitlines()


def test_restore_swaps_in_through_the_rendered_pgbouncer(tmp_path: Path) -> None:
    require_executable("postgres", "/usr/lib/postgresql/15/bin")
    require_executable("pgbouncer")
    require_executable("runuser")
    with daemons.state_directory() as root:
        settings = daemons.loopback_controller_settings(root)
        db, app = settings.db.database, settings.db.app_user
        with daemons.running_postgres(settings):
            # The hook sets the app role's real password; the role exists from first boot.
            daemons.create_app_role(settings, scram_sha256_verifier("first-boot-" + "x" * 20))
            assert "reload pgbouncer" in apply_secrets(settings, tmp_path / "bin")
            auth = Path(settings.paths.pgbouncer_auth_file).read_text()
            # The app, the admin console's user, and the metrics collector's stats user.
            assert [line.split()[0] for line in auth.splitlines()] == [
                f'"{app}"', '"postgres"', f'"{PGBOUNCER_STATS_USER}"']
            assert "SCRAM-SHA-256$" in auth and controller_secret_env(SEED)[
                "GEMNAR_DB_PASSWORD"] not in auth
            daemons.psql(settings, f"CREATE TABLE t (id int PRIMARY KEY, v text); "
                         f"ALTER TABLE t OWNER TO \"{app}\"; "
                         f"INSERT INTO t SELECT i, md5(i::text) "
                         f"FROM generate_series(1, {ROWS}) i", database=db)
            with daemons.running_pgbouncer(settings, auth):
                settings_file = tmp_path / "controller.json"
                settings_file.write_text(to_json(settings))
                args = OffsiteStorageArgs(
                    connection=None, node_identity="", path=BACKUP_ENV,  # type: ignore[arg-type]
                    seed=SEED, keep_daily=7, keep_weekly=4, keep_monthly=6)
                env_file = tmp_path / "backup.env"
                env_file.write_text(backup_env(SEED, args, None))
                env = {**os.environ, "GEMNAR_BACKUP_METRICS_FILE": str(tmp_path / "m.prom")}

                def backups(
                    *argv: str, env_path: Path = env_file
                ) -> subprocess.CompletedProcess[str]:
                    return subprocess.run(
                        [sys.executable, "-m", "backups", "--settings", str(settings_file),
                         "--env", str(env_path), *argv],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                        check=False)

                done = backups("backup")
                assert done.returncode == 0, done.stderr
                # The app, through PgBouncer with its own password, writes after the backup.
                app_password = controller_secret_env(SEED)["GEMNAR_DB_PASSWORD"]
                assert CONTROLLER_SECRETS["GEMNAR_DB_PASSWORD"]
                client = psycopg.connect(
                    host=settings.private_address, port=settings.ports.pgbouncer, user=app,
                    password=app_password, dbname=db, autocommit=True, prepare_threshold=None,
                    connect_timeout=10)
                with client:
                    client.execute("INSERT INTO t VALUES (100000, 'after the backup')")

                    def live_rows() -> int:
                        row = client.execute("SELECT count(*) FROM t").fetchone()
                        assert row is not None
                        return int(str(row[0]))

                    assert live_rows() == ROWS + 1

                    # A wrong admin password: refused before anything is renamed.
                    wrong = tmp_path / "wrong.env"
                    wrong.write_text(env_file.read_text().replace(
                        "GEMNAR_PGBOUNCER_ADMIN_PASSWORD='",
                        "GEMNAR_PGBOUNCER_ADMIN_PASSWORD='wrong"))
                    refused = backups("restore", "--swap", env_path=wrong)
                    assert refused.returncode != 0
                    assert "admin console refused postgres" in refused.stderr
                    assert "SASL authentication failed" in refused.stderr
                    assert live_rows() == ROWS + 1
                    # Known before the download: nothing was even restored.
                    assert daemons.psql(settings, "SELECT count(*) FROM pg_database "
                                        f"WHERE datname LIKE '{db}_restore_%'") == "0"

                    swapped = backups("restore", "--swap")
                    assert swapped.returncode == 0, swapped.stderr
                    result = json.loads(swapped.stdout)
                    assert result["swapped"] is True and result["rows"] == ROWS
                    # The same client connection, now served by the restored database.
                    assert live_rows() == ROWS
                kept = daemons.psql(settings, "SELECT datname FROM pg_database "
                                    f"WHERE datname LIKE '{db}_pre_restore_%'")
                assert kept == result["kept_as"]
                assert daemons.psql(settings, "SELECT count(*) FROM t",
                                    database=kept) == str(ROWS + 1)
