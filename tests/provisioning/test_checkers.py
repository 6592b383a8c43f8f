"""Firewall rules, scripts, units and the worker's Nginx pass their real checkers.

``nft -c -f`` runs in a fresh network namespace (``unshare -n``) so even a check can never
touch this machine's ruleset; units are verified with ``systemd-analyze verify`` after writing
every rendered file below a temp root (the settings' paths rebased there).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from provisioning.files import RenderedFile, controller_files, worker_files
from provisioning.nftables import render_nftables_controller, render_nftables_worker
from provisioning.settings import ControllerPaths, WorkerPaths
from tests.provisioning.combos import CONTROLLERS, WORKERS
from tests.support.tooling import require_executable

ALL_FILES = [
    *[pytest.param(lambda s=s: controller_files(s), id=f"controller-{n}")
      for n, s in CONTROLLERS.items()],
    *[pytest.param(lambda s=s: worker_files(s), id=f"worker-{n}") for n, s in WORKERS.items()],
]
FIREWALLS = [
    *[pytest.param(render_nftables_controller(s), id=f"controller-{n}")
      for n, s in CONTROLLERS.items()],
    *[pytest.param(render_nftables_worker(s), id=f"worker-{n}") for n, s in WORKERS.items()],
]


@pytest.mark.parametrize("ruleset", FIREWALLS)
def test_nftables_rules_pass_nft_check(ruleset: str, tmp_path: Path) -> None:
    nft = require_executable("nft", "/usr/sbin")
    path = tmp_path / "rules.nft"
    path.write_text(ruleset)
    result = subprocess.run(["unshare", "-n", str(nft), "-c", "-f", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_controller_firewall_opens_private_ports_to_the_subnet_only() -> None:
    rules = render_nftables_controller(CONTROLLERS["prod-default"])
    assert "ip saddr 10.20.0.0/24 tcp dport { 6379, 6432 } accept" in rules
    # No NFS: media live in object storage (provisioning.media).
    assert "2049" not in rules and "111" not in rules
    # Only on the interface that routes back to the VPC (a spoofed VPC source is dropped).
    assert "ip saddr 10.20.0.0/24 fib saddr . iif oif missing drop" in rules
    assert "5432" not in rules
    assert "policy drop" in rules


def test_worker_firewall_admits_only_the_controller() -> None:
    rules = render_nftables_worker(WORKERS["prod-default"])
    assert "ip saddr 10.20.0.3 tcp dport { 22, 8000, 9100, 9101 } accept" in rules


def _scripts() -> Iterator[object]:
    for param in ALL_FILES:
        for f in param.values[0]():  # type: ignore[operator]
            if f.kind == "script":
                yield pytest.param(f, id=f"{param.id}:{Path(f.path).name}")


@pytest.mark.parametrize("script", list(_scripts()))
def test_scripts_pass_shellcheck(script: RenderedFile, tmp_path: Path) -> None:
    shellcheck = require_executable("shellcheck")
    path = tmp_path / Path(script.path).name
    path.write_text(script.content)
    result = subprocess.run([str(shellcheck), "--severity=style", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def _materialise(files: list[RenderedFile], root: Path) -> list[Path]:
    """Write every rendered file under root; returns the units."""
    units: list[Path] = []
    for f in files:
        target = root / f.path.lstrip("/") if not f.path.startswith(str(root)) else Path(f.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.content)
        target.chmod(int(f.permissions, 8))
        if f.kind == "unit":
            units.append(target)
    return units


@pytest.mark.parametrize("which", ["controller-prod-domain-big", "worker-prod-git"])
def test_units_pass_systemd_analyze_verify(which: str, tmp_path: Path) -> None:
    analyze = require_executable("systemd-analyze")
    root = tmp_path / "root"
    if which.startswith("controller"):
        settings = CONTROLLERS["prod-domain-big"]
        settings = replace(settings, paths=ControllerPaths.under(root))
        files = controller_files(settings)
        # The project's venv python, as the controller holds it.
        python = Path(settings.paths.project_dir) / ".venv/bin/python"
        python.parent.mkdir(parents=True)
        python.symlink_to("/usr/bin/python3")
    else:
        worker = WORKERS["prod-git"]
        paths = WorkerPaths.under(root)
        files = worker_files(replace(worker, paths=paths))
        # The installed release's venv python (the app unit's ExecStartPre runs manage.py).
        python = Path(paths.venv_dir) / "bin/python"
        python.parent.mkdir(parents=True)
        python.symlink_to("/usr/bin/python3")
    units = _materialise(files, root)
    assert units
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "warning"}
    result = subprocess.run(
        [str(analyze), "verify", "--man=no", *map(str, units)],
        capture_output=True, text=True, check=False, env=env,
    )
    own = [line for line in (result.stdout + result.stderr).splitlines()
           if "gemnar" in line]
    assert result.returncode == 0 and not own, result.stdout + result.stderr


