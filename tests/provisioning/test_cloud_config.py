"""Rendered user data is valid cloud-config (Debian's cloud-init) and carries no secrets."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from provisioning.app_env import render_worker_secrets_env
from provisioning.cloud_config import controller_user_data, worker_user_data
from provisioning.pgbouncer import render_pgbouncer_userlist
from provisioning.redis import render_redis_secrets
from provisioning.scram import scram_sha256_verifier
from provisioning.settings import ControllerSettings, WorkerSettings
from tests.provisioning.combos import CONTROLLERS, WORKERS
from tests.support.tooling import require_executable

USER_DATA = [
    *[pytest.param(lambda s=s: controller_user_data(s), id=f"controller-{n}")
      for n, s in CONTROLLERS.items()],
    *[pytest.param(lambda s=s: worker_user_data(s), id=f"worker-{n}") for n, s in WORKERS.items()],
]


@pytest.mark.parametrize("render", USER_DATA)
def test_user_data_passes_cloud_init_schema(render, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cloud_init = require_executable("cloud-init")
    text = render()
    assert text.startswith("#cloud-config\n") and text.count("#cloud-config") == 1
    path = tmp_path / "user-data"
    path.write_text(text)
    result = subprocess.run([str(cloud_init), "schema", "-c", str(path)],
                            capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Valid cloud-config" in output
    assert "deprecat" not in output.lower(), output


@pytest.mark.parametrize("render", USER_DATA)
def test_user_data_is_plain_yaml_data(render) -> None:  # type: ignore[no-untyped-def]
    document = yaml.safe_load(render())
    assert {"packages", "write_files", "runcmd"} <= document.keys()
    for entry in document["write_files"]:
        # Only the package policy lands before the packages (provisioning.firstboot).
        assert entry.get("defer", False) is (entry["path"] != "/usr/sbin/policy-rc.d")
        assert entry["path"].startswith("/")


def _secret_bearing_fields(cls: type) -> list[str]:
    names: list[str] = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.type) or f.name in {"paths", "ports", "db"}:
            continue
        if any(word in f.name for word in ("password", "secret", "token", "key", "seed")):
            names.append(f.name)
    return names


def test_settings_have_no_field_that_could_hold_a_secret() -> None:
    assert _secret_bearing_fields(ControllerSettings) == []
    assert _secret_bearing_fields(WorkerSettings) == []


def test_no_rendered_user_data_contains_a_secret_value() -> None:
    db_password = secrets.token_urlsafe(24)
    redis_password = secrets.token_hex(24)
    secret_key = secrets.token_urlsafe(40)
    verifier = scram_sha256_verifier(db_password)
    # The secret-bearing files exist and do contain them: the check below is not vacuous.
    delivered = {
        "worker-secrets": render_worker_secrets_env(
            WORKERS["prod-default"], db_password=db_password,
            redis_password=redis_password, secret_key=secret_key),
        "redis-secrets": render_redis_secrets(redis_password),
        "userlist": render_pgbouncer_userlist("gemnar", verifier),
    }
    assert db_password in delivered["worker-secrets"]
    # Redis keeps the password's SHA-256, which is as good as the password to Redis.
    redis_hash = hashlib.sha256(redis_password.encode()).hexdigest()
    assert redis_hash in delivered["redis-secrets"]
    assert verifier in delivered["userlist"]

    needles = [db_password, redis_password, redis_hash, secret_key, verifier,
               *verifier.split("$")[1:],
               *verifier.split("$")[2].split(":")]
    user_data = [controller_user_data(s) for s in CONTROLLERS.values()]
    user_data += [worker_user_data(s) for s in WORKERS.values()]
    for text in user_data:
        for needle in needles:
            assert needle not in text
        assert not re.search(r"^\s*requirepass\s", text, re.MULTILINE)
        assert not re.search(r"^\s*user \S+ on ", text, re.MULTILINE)
        assert "SCRAM-SHA-256$" not in text
        # Scripts may name the variables they read from the secrets file; none assigns one.
        assert not re.search(r"GEMNAR_(SECRET_KEY|DB_PASSWORD|REDIS_PASSWORD)\s*=", text)


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_no_node_serves_or_mounts_nfs(name: str) -> None:
    """Media live in object storage: no NFS package, export, mount or unit dependency."""
    controller = yaml.safe_load(controller_user_data(CONTROLLERS[name]))
    texts = [controller_user_data(CONTROLLERS[name])]
    for worker_name in sorted(WORKERS):
        worker = yaml.safe_load(worker_user_data(WORKERS[worker_name]))
        assert "mounts" not in worker
        assert not {"nfs-common", "rpcbind"} & set(worker["packages"])
        app_unit = next(f["content"] for f in worker["write_files"]
                        if f["path"].endswith("/gemnar-app.service"))
        assert "RequiresMountsFor" not in app_unit and "remote-fs" not in app_unit
        texts.append(worker_user_data(WORKERS[worker_name]))
    assert not {"nfs-kernel-server", "nfs-common", "rpcbind"} & set(controller["packages"])
    assert "/etc/exports" not in {f["path"] for f in controller["write_files"]}
    for text in texts:
        assert not re.search(r"nfs|exportfs|rpcbind|\b2049\b", text, re.IGNORECASE)
    # /media/ answers 503 until the deploy says where media live (provisioning.media).
    media = next(f["content"] for f in controller["write_files"]
                 if f["path"] == CONTROLLERS[name].paths.nginx_media_file)
    assert "return 503;" in media


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_app_unit_migrates_and_collects_static_before_it_serves(name: str) -> None:
    """Every start of the app (roll, secrets, reboot) applies the release's migrations, then
    writes its static files, then serves; only the static root is writable for it."""
    settings = WORKERS[name]
    worker = yaml.safe_load(worker_user_data(settings))
    unit = next(f["content"] for f in worker["write_files"]
                if f["path"].endswith("/gemnar-app.service"))
    lines = [line for line in unit.splitlines() if line.startswith(("ExecStartPre=", "ExecStart="))]
    manage = f"{settings.paths.venv_dir}/bin/python {settings.paths.app_dir}/manage.py"
    assert lines[0] == f"ExecStartPre={manage} migrate --noinput", lines
    assert lines[1] == f"ExecStartPre={manage} collectstatic --noinput -v 0", lines
    assert lines[2].startswith("ExecStart=") and len(lines) == 3, lines
    assert f"ReadWritePaths={settings.paths.static_root}" in unit.splitlines()
    assert re.search(r"^TimeoutStartSec=[1-9][0-9]+$", unit, re.MULTILINE)
    setup = next(f["content"] for f in worker["write_files"]
                 if f["path"].endswith("/gemnar-worker-setup.sh"))
    assert f"install -d -o gemnar -g gemnar -m 0755 '{settings.paths.static_root}'" in setup
