"""First boot: the rendered user data holds every network-facing unit back until the setup
script has loaded the host firewall (provisioning.firstboot).

The guard's shell runs here as cloud-init runs it (its own ``shellify`` of ``bootcmd``) with a
recording ``systemctl``; the setup scripts are read line by line for their order. That systemd
really skips the units at boot, on a baked image, is the lab e2e's check
(``tests/lab/test_lab_stack.py::test_firewall_was_loaded_before_every_listener_started``).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from provisioning import firstboot
from provisioning.cloud_config import controller_cloud_config, worker_cloud_config
from provisioning.files import (
    FIREWALL_UP_SCRIPT,
    RenderedFile,
    controller_files,
    data_volume_commands,
    worker_files,
)
from tests.provisioning.combos import CONTROLLERS, WORKERS
from tests.support.tooling import require_executable

PROD_CONTROLLERS = {n: s for n, s in CONTROLLERS.items() if not n.startswith("local")}
PROD_WORKERS = {n: s for n, s in WORKERS.items() if not n.startswith("local")}
CONFIGS: list[Any] = [
    *[pytest.param(lambda s=s: controller_cloud_config(s), "controller", id=f"controller-{n}")
      for n, s in PROD_CONTROLLERS.items()],
    *[pytest.param(lambda s=s: worker_cloud_config(s), "worker", id=f"worker-{n}")
      for n, s in PROD_WORKERS.items()],
]


def setup_script(files: list[RenderedFile], name: str) -> str:
    """The setup script ``name`` with the common firewall script's lines in place of its call,
    so that the order checked below spans both."""
    by_name = {PurePosixPath(f.path).name: f.content for f in files}
    firewall = by_name[FIREWALL_UP_SCRIPT]
    return "\n".join(firewall if line.strip().endswith(f"/{FIREWALL_UP_SCRIPT}'") else line
                     for line in by_name[name].splitlines())


SETUP_SCRIPTS: list[Any] = [
    *[pytest.param(lambda s=s: setup_script(controller_files(s), "gemnar-controller-setup.sh"),
                   firstboot.COMMON_GUARDED + firstboot.CONTROLLER_GUARDED, id=f"controller-{n}")
      for n, s in PROD_CONTROLLERS.items()],
    *[pytest.param(lambda s=s: setup_script(worker_files(s), "gemnar-worker-setup.sh"),
                   firstboot.COMMON_GUARDED, id=f"worker-{n}")
      for n, s in PROD_WORKERS.items()],
]
# A line of a setup script that starts (or restarts) units, and the units it names.
START = re.compile(r"\bsystemctl (?:start|restart|reload-or-restart|enable --now)((?: [\w@.-]+)+)")


def units_started(line: str) -> list[str]:
    found = START.search(line)
    return found.group(1).split() if found else []


@pytest.mark.parametrize(("config", "role"), CONFIGS)
def test_guard_and_policy_come_before_the_packages(
    config: Callable[[], dict[str, Any]], role: str
) -> None:
    document = config()
    guarded = firstboot.COMMON_GUARDED + (
        firstboot.CONTROLLER_GUARDED if role == "controller" else ())
    # bootcmd runs in cloud-init's init stage, before any ordinary service (module docstring).
    assert document["bootcmd"] == firstboot.bootcmd(guarded)
    early = [entry for entry in document["write_files"] if not entry.get("defer")]
    assert early == [firstboot.policy_rc_d_entry()], early
    assert {"prometheus-node-exporter.service"} <= set(guarded)


def test_controller_guards_every_packaged_listener() -> None:
    # The daemons of the controller's packages that open a socket with Debian's config, and ours.
    assert set(firstboot.CONTROLLER_GUARDED) >= {
        "postgresql@.service", "pgbouncer.service", "redis-server.service", "nginx.service",
        "unbound.service", "prometheus.service", "prometheus-alertmanager.service",
        "prometheus-postgres-exporter.service", "prometheus-redis-exporter.service",
        "prometheus-nginx-exporter.service", "gemnar-pgbouncer-exporter.service"}


def test_policy_forbids_every_action(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    policy.write_text(firstboot.POLICY_RC_D_CONTENT)
    policy.chmod(0o755)
    for argv in (["nginx", "start"], ["postgresql", "restart"], ["x.service", "stop"]):
        assert subprocess.run([str(policy), *argv]).returncode == 101, argv


def test_guard_script_passes_shellcheck(tmp_path: Path) -> None:
    shellcheck = require_executable("shellcheck")
    path = tmp_path / "gemnar-firewall-first.sh"
    path.write_text(firstboot.guard_script())
    result = subprocess.run([str(shellcheck), "--severity=style", str(path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def run_bootcmd(tmp_path: Path, units: tuple[str, ...], flag: Path) -> tuple[Path, list[str]]:
    """The guard's ``bootcmd`` shellified by cloud-init's own code and run with a
    ``systemctl`` that records its arguments; the runtime units directory and the calls."""
    cloud_init = require_executable("cloud-init")
    # cloud-init's entry point names its interpreter (Debian's python3 with cloudinit).
    python = cloud_init.read_text().splitlines()[0].removeprefix("#!").strip()
    units_dir, calls, bin_dir = tmp_path / "run-units", tmp_path / "calls", tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >>{calls}\n')
    fake.chmod(0o755)
    commands = firstboot.bootcmd(units, units_dir=str(units_dir), flag=str(flag))
    script = subprocess.run(
        [python, "-c", "import json, sys; from cloudinit.util import shellify; "
                       "sys.stdout.write(shellify(json.load(sys.stdin)))"],
        input=json.dumps(commands), capture_output=True, text=True, check=True).stdout
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return units_dir, calls.read_text().splitlines() if calls.exists() else []


def test_bootcmd_holds_each_unit_back_until_the_flag_exists(tmp_path: Path) -> None:
    flag = tmp_path / "state" / "firewall-ready"
    units = firstboot.COMMON_GUARDED + firstboot.CONTROLLER_GUARDED
    units_dir, calls = run_bootcmd(tmp_path, units, flag)
    dropins = sorted(p.relative_to(units_dir).as_posix() for p in units_dir.rglob("*.conf"))
    assert dropins == sorted(f"{unit}.d/{firstboot.DROPIN_NAME}" for unit in units)
    for unit in units:
        text = (units_dir / f"{unit}.d" / firstboot.DROPIN_NAME).read_text()
        assert text == f"[Unit]\nConditionPathExists={flag}\n", (unit, text)
    # One reload, after the drop-ins: the boot's pending start jobs see them.
    assert calls == ["daemon-reload"]


def test_bootcmd_does_nothing_once_the_firewall_was_loaded(tmp_path: Path) -> None:
    flag = tmp_path / "firewall-ready"
    flag.touch()
    units_dir, calls = run_bootcmd(tmp_path, firstboot.COMMON_GUARDED, flag)
    assert not units_dir.exists() and calls == []


def script_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize(("setup", "guarded"), SETUP_SCRIPTS)
def test_setup_loads_the_firewall_before_it_starts_anything(
    setup: Callable[[], str], guarded: tuple[str, ...]
) -> None:
    lines = script_lines(setup())
    firewall = lines.index("systemctl restart nftables")
    assert lines.index("systemctl enable nftables") < firewall
    flag = lines.index(f"touch '{firstboot.FIREWALL_READY_FLAG}'")
    policy = lines.index(f"rm -f '{firstboot.POLICY_RC_D}'")
    assert firewall < flag and firewall < policy, lines
    starts = [(i, units_started(line)) for i, line in enumerate(lines) if units_started(line)]
    early = [units for i, units in starts if i < flag and units not in (["nftables"], ["ssh"])]
    assert early == [], f"started before the firewall's flag: {early}"
    # The setup script starts every guarded unit itself (nothing else will on this boot);
    # PostgreSQL's cluster through gemnar-postgres-setup, once its volume is mounted.
    started = {unit for i, units in starts if i > flag for unit in units}
    for unit in guarded:
        name = unit.removesuffix(".service")
        if name == "postgresql@":
            setup_line = next(i for i, line in enumerate(lines) if "gemnar-postgres-setup" in line)
            assert setup_line > flag
            continue
        assert name in started or unit in started, f"{unit} is never started: {sorted(started)}"


def test_postgres_setup_starts_the_cluster() -> None:
    setup = next(f.content for f in data_volume_commands(CONTROLLERS["prod-default"])
                 if f.path.endswith("/gemnar-postgres-setup"))
    assert "systemctl restart postgresql" in script_lines(setup)
