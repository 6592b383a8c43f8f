"""The sandbox drop-ins for Debian's monitoring units, scored by ``systemd-analyze security``.

Each drop-in is scored on top of the unit its package installs (read from this machine, where
tools/bootstrap.sh installs the same bookworm packages): Alertmanager and the PostgreSQL and
Nginx exporters score 9.2 UNSAFE as packaged. Target: every gemnar-rendered unit's 5.0.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from provisioning.monitoring import sandbox_dropins
from tests.monitoring.test_rules import SETTINGS
from tests.support.tooling import missing, require_executable

TARGET = 5.0
PACKAGE_UNITS = Path("/lib/systemd/system")


def exposure(text: str, name: str, root: Path) -> float:
    analyze = require_executable("systemd-analyze")
    path = root / name
    path.write_text(text)
    result = subprocess.run(
        [str(analyze), "security", "--offline=true", "--no-pager", str(path)],
        capture_output=True, text=True, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


@pytest.mark.parametrize("unit", sorted(sandbox_dropins(SETTINGS)))
def test_dropin_brings_the_package_unit_within_target(unit: str, tmp_path: Path) -> None:
    package = PACKAGE_UNITS / unit
    if not package.exists():
        missing(f"{package} (its Debian package)")
    before = exposure(package.read_text(), unit, tmp_path)
    # systemd merges a drop-in's [Service] into the unit's, as appending it here does.
    after = exposure(package.read_text() + "\n" + sandbox_dropins(SETTINGS)[unit], unit,
                     tmp_path)
    print(f"{unit}: {before} -> {after}")
    assert after <= TARGET < before
