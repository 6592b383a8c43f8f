"""The bundled app artifact: named by content, reproducible, and installable with no index.

The install runs the rendered ``gemnar-install-app`` inside a fresh network namespace
(``unshare -n``: no route anywhere, so no index can be reached); the installed release then
serves ``/health/`` under Uvicorn, started by the rendered ``gemnar-uvicorn.sh``, against real
PostgreSQL (through PgBouncer) and Redis on a loopback address.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from appdelivery.artifact import build, sha256_of
from appdelivery.source import AppSource, app_requirements
from engine.toolchain import PROJECT_ROOT
from localnode.supervise import start_detached, stop_pid, wait_for
from localnode.worker import parse_env_file
from provisioning.app_env import render_worker_app_env, render_worker_secrets_env
from provisioning.files import render_install_app, worker_files
from provisioning.scram import scram_sha256_verifier
from provisioning.settings import WorkerPaths, WorkerPorts, WorkerSettings
from tests.support import daemons
from tests.support.tooling import require_executable


def _copy_app(tmp_path: Path) -> AppSource:
    target = tmp_path / "app"
    shutil.copytree(PROJECT_ROOT / "app", target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return AppSource(target, ("Django==5.2.19",))


def test_requirements_are_the_app_section_only() -> None:
    text = "# Engine\npulumi==1\n# Application (app/)\nDjango==5\n\nredis==8\n# Tests\npytest==9\n"
    assert app_requirements(text) == ("Django==5", "redis==8")


@pytest.mark.parametrize("change", ["edit", "add", "requirement", "none", "cache-only"])
def test_content_hash_changes_exactly_with_the_content(change: str, tmp_path: Path) -> None:
    source = _copy_app(tmp_path)
    before = source.content_hash
    if change == "edit":
        settings = source.app_dir / "sampleproject" / "views.py"
        settings.write_text(settings.read_text() + "\n# changed\n")
    elif change == "add":
        (source.app_dir / "sampleproject" / "extra.py").write_text("X = 1\n")
    elif change == "requirement":
        source = replace(source, requirements=("Django==5.2.20",))
    elif change == "cache-only":
        cache = source.app_dir / "sampleproject" / "__pycache__"
        cache.mkdir()
        (cache / "views.cpython-311.pyc").write_bytes(b"\0")
    changed = source.content_hash != before
    assert changed is (change in {"edit", "add", "requirement"})


@pytest.fixture(scope="module")
def artifact() -> Path:
    return build(AppSource.of_project(PROJECT_ROOT))


def test_artifact_is_named_by_its_content_and_rebuilt_identically(
    artifact: Path, tmp_path: Path
) -> None:
    source = AppSource.of_project(PROJECT_ROOT)
    assert artifact.name == source.artifact_name
    again = build(source, cache=tmp_path / "cache")
    assert sha256_of(again) == sha256_of(artifact)
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
    assert "app/manage.py" in names and "requirements.txt" in names
    wheels = {n.split("/", 1)[1].split("-")[0].lower() for n in names if n.startswith("wheels/")}
    assert {"django", "channels", "psycopg", "redis", "uvicorn"} <= wheels
    assert not any("__pycache__" in n for n in names)


@pytest.fixture
def installed(artifact: Path) -> Iterator[WorkerSettings]:
    require_executable("unshare")
    require_executable("python3", "/usr/bin")
    with daemons.state_directory("gemnar-install-") as root:
        worker = WorkerSettings(
            private_address=daemons.random_loopback_address(),
            controller_address="127.0.0.1", vpc_subnet="127.0.0.0/8", memory_mb=512, vcpus=1,
            processes=1, paths=WorkerPaths.under(root), public_hosts=("127.0.0.1",),
        )
        script = render_install_app(worker)
        program = daemons.write_file(script.path, script.content, 0o755)
        env = {"PATH": os.environ["PATH"], "HOME": str(root),
               # Even a configured index would be unreachable: there is no network at all.
               "PIP_INDEX_URL": "https://pypi.invalid/simple"}
        result = subprocess.run(
            ["unshare", "-n", str(program), str(artifact), sha256_of(artifact)],
            capture_output=True, text=True, check=False, env=env, timeout=600,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        yield worker


def test_artifact_installs_with_no_index_and_serves_health(installed: WorkerSettings) -> None:
    for program in ("pgbouncer", "redis-server", "runuser"):
        require_executable(program)
    paths = installed.paths
    assert Path(paths.app_dir).is_symlink() and Path(paths.venv_dir).is_symlink()
    assert Path(paths.venv_dir, "bin", "uvicorn").exists()
    with daemons.state_directory() as controller_root:
        controller = daemons.loopback_controller_settings(controller_root)
        password, redis_password = secrets.token_hex(16), secrets.token_hex(16)
        verifier = scram_sha256_verifier(password)
        with daemons.running_postgres(controller), daemons.running_redis(
            controller, redis_password
        ):
            daemons.create_app_role(controller, verifier)
            with daemons.running_pgbouncer_with_role(controller, verifier):
                port = daemons.free_port(installed.private_address)
                worker = replace(
                    installed, controller_address=controller.private_address,
                    controller_ports=controller.ports, ports=WorkerPorts(app=port),
                )
                daemons.make_dirs(worker.paths.media_root, worker.paths.static_root)
                env = {
                    "PATH": os.environ["PATH"], "LANG": "C.UTF-8",
                    **parse_env_file(render_worker_app_env(worker)),
                    **parse_env_file(render_worker_secrets_env(
                        worker, db_password=password, redis_password=redis_password,
                        secret_key=secrets.token_hex(32))),
                }
                venv_python = str(Path(worker.paths.venv_dir) / "bin" / "python")
                migrate = subprocess.run(
                    [venv_python, "manage.py", "migrate", "--noinput"],
                    cwd=worker.paths.app_dir, env=env, capture_output=True, text=True,
                    check=False,
                )
                assert migrate.returncode == 0, migrate.stderr[-2000:]
                uvicorn = next(f for f in worker_files(worker)
                               if f.path.endswith("gemnar-uvicorn.sh"))
                script = daemons.write_file(uvicorn.path, uvicorn.content, 0o755)
                log = Path(worker.paths.run_dir) / "uvicorn.log"
                pid = start_detached([str(script)], Path(worker.paths.run_dir) / "uvicorn.pid", log,
                                     env=env, cwd=Path(worker.paths.app_dir))
                try:
                    address = worker.private_address
                    wait_for(lambda: daemons.port_open(address, port), 60, "installed app")
                    response = httpx.get(f"http://{address}:{port}/health/", timeout=20)
                finally:
                    stop_pid(pid)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"


def test_the_cache_keeps_only_the_newest_bundles(tmp_path: Path) -> None:
    from appdelivery.bundle import KEEP_PER_KIND, prune

    for index in range(KEEP_PER_KIND + 2):
        bundle = tmp_path / f"gemnar-app-{index:04d}.tar.gz"
        bundle.write_bytes(b"x")
        os.utime(bundle, (1000 + index, 1000 + index))
    (tmp_path / "gemnar-ops-0000.tar.gz").write_bytes(b"x")
    prune(tmp_path, "gemnar-app-")
    left = sorted(p.name for p in tmp_path.glob("*.tar.gz"))
    assert left == ["gemnar-app-0002.tar.gz", "gemnar-app-0003.tar.gz",
                    "gemnar-app-0004.tar.gz", "gemnar-ops-0000.tar.gz"]
