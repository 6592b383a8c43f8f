"""``systemd-analyze security`` scores every gemnar unit as rendered for prod.

Before the issue: app 8.7 EXPOSED; health monitor, scaler, backup and certbot 9.6 UNSAFE
each (root, no sandbox). Targets: app <= 3.0, every other gemnar unit <= 5.0, and a user of
its own for each unit that needs no root.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from provisioning.files import RenderedFile, controller_files, worker_files
from tests.provisioning.combos import CONTROLLERS, WORKERS
from tests.support.tooling import require_executable

TARGETS = {"gemnar-app.service": 3.0}
DEFAULT_TARGET = 5.0
# Units that need no root run as a user of their own (static, or created per run).
OWN_USER = {"gemnar-app.service": "User=gemnar", "gemnar-scaler.service": "DynamicUser=yes",
            "gemnar-heal.service": "DynamicUser=yes",
            "gemnar-pgbouncer-exporter.service": "User=prometheus"}


def _units() -> dict[str, RenderedFile]:
    found: dict[str, RenderedFile] = {}
    for files in [controller_files(CONTROLLERS["prod-domain-big"]),
                  worker_files(WORKERS["prod-git"])]:
        for f in files:
            name = Path(f.path).name
            if f.kind == "unit" and name.startswith("gemnar-") and name.endswith(".service"):
                found[name] = f
    return found


UNITS = _units()


def exposure(unit: RenderedFile, root: Path) -> float:
    analyze = require_executable("systemd-analyze")
    path = root / Path(unit.path).name
    path.write_text(unit.content)
    result = subprocess.run(
        [str(analyze), "security", "--offline=true", "--no-pager", str(path)],
        capture_output=True, text=True, check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def test_every_gemnar_service_is_scored() -> None:
    assert set(UNITS) == {"gemnar-app.service", "gemnar-backup.service",
                          "gemnar-certbot.service", "gemnar-healthmon.service",
                          "gemnar-scaler.service", "gemnar-heal.service",
                          "gemnar-pgbouncer-exporter.service"}


@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_exposure_is_within_target(name: str, tmp_path: Path) -> None:
    score = exposure(UNITS[name], tmp_path)
    assert score <= TARGETS.get(name, DEFAULT_TARGET), f"{name}: {score}"


@pytest.mark.parametrize("name", sorted(OWN_USER))
def test_units_without_root_needs_run_as_their_own_user(name: str) -> None:
    lines = UNITS[name].content.splitlines()
    assert OWN_USER[name] in lines
    assert "CapabilityBoundingSet=" in lines


def test_the_scaler_credentials_reach_only_its_process() -> None:
    """Root-only on disk, read by systemd before it drops to the scaler's own user."""
    lines = UNITS["gemnar-scaler.service"].content.splitlines()
    assert any(line.startswith("EnvironmentFile=-/etc/gemnar/secrets/") for line in lines)
    assert "DynamicUser=yes" in lines and "ProtectSystem=strict" in lines


def test_the_healer_runs_as_the_scaler_with_its_state_and_credentials() -> None:
    """The healer's `pulumi up` needs what the scaler's does: the same user (shared by name),
    state directory and root-only credentials; its timer is installed and enabled."""
    heal = UNITS["gemnar-heal.service"].content.splitlines()
    scaler = UNITS["gemnar-scaler.service"].content.splitlines()
    state = next(line for line in scaler if line.startswith("StateDirectory="))
    assert state in heal and f"User={state.split('=')[1]}" in heal
    assert [line for line in heal if line.startswith("EnvironmentFile=")] == [
        line for line in scaler if line.startswith("EnvironmentFile=")]
    # health.json lives in a root-only directory: systemd hands the run a copy.
    assert "LoadCredential=health.json:/var/lib/gemnar/health.json" in heal
    assert any(line.startswith("ExecStart=") and "-m healthmon.heal --stack ${GEMNAR_STACK} "
               "--status-file %d/health.json --bound 300" in line for line in heal)
    files = {Path(f.path).name: f for f in controller_files(CONTROLLERS["prod-domain-big"])}
    assert "OnUnitInactiveSec=60s" in files["gemnar-heal.timer"].content
    assert any("gemnar-heal.timer" in f.content for f in files.values()
               if f.path.endswith("gemnar-controller-setup.sh"))


def test_the_scorer_tells_an_open_unit_from_a_sandboxed_one(tmp_path: Path) -> None:
    """The checker is live: the app's unit without its sandbox scores as before (8.7)."""
    app = UNITS["gemnar-app.service"]
    bare = "\n".join(line for line in app.content.splitlines()
                     if line.startswith(("[", "Description", "ExecStart", "User", "Group",
                                         "Type", "NoNewPrivileges", "PrivateTmp")))
    score = exposure(RenderedFile(app.path, bare + "\nProtectSystem=full\n", kind="unit"),
                     tmp_path)
    assert score >= 8.0
