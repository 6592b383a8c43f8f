"""The rendered gemnar units' sandboxes, started by real systemd in a lab controller machine.

``systemd-analyze security`` scores the units offline (tests/hardening); this starts each
sandbox for real with a probe as its command: what the service does that the sandbox could
forbid. Every [Service] line of the rendered unit is kept except the command and what only
the real program needs (working directory, conditions); the probe then shows that
- the health monitor (root, bounded capabilities, read-only system) can ``nginx -t`` and
  reload Nginx, and write only where ReadWritePaths= says;
- the scaler runs as a user of its own that resolves (ssh refuses an unknown uid), gets its
  credentials from the root-only file through systemd, and cannot read that file itself.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from lab import image, machine
from lab.netns import LabNetwork
from provisioning.files import controller_files
from tests.provisioning.combos import CONTROLLERS

DROPPED = ("ExecStart=", "Type=", "WorkingDirectory=", "ConditionPathExists=", "Restart=",
           "RestartSec=", "TimeoutStartSec=")


def probe_unit(name: str, probe: str) -> str:
    """The rendered unit ``name`` with ``probe`` as its one-shot command."""
    unit = next(f for f in controller_files(CONTROLLERS["prod-domain-big"])
                if f.path.endswith(f"/{name}"))
    lines = []
    for line in unit.content.splitlines():
        if line == "[Install]":
            break
        if line.startswith(DROPPED) or line.startswith("Condition"):
            continue
        lines.append(line)
        if line == "[Service]":
            lines += ["Type=oneshot", f"ExecStart=/bin/sh -c '{probe}'"]
    assert "[Service]" in lines
    return "\n".join(lines) + "\n"


def run(stack_dir: Path, argv: list[str]) -> str:
    result = machine.exec_in(stack_dir, "c0", argv, timeout=120)
    assert result.returncode == 0, (argv, result.stdout, result.stderr)
    return result.stdout


def start_probe(stack_dir: Path, name: str, text: str) -> tuple[str, str]:
    """Install ``text`` as ``name``, start it, and return (result, its output)."""
    encoded = base64.b64encode(text.encode()).decode()
    run(stack_dir, ["sh", "-c", f"echo {encoded} | base64 -d > /etc/systemd/system/{name}"
                                f" && systemctl daemon-reload"])
    machine.exec_in(stack_dir, "c0", ["systemctl", "start", name], timeout=120)
    result = run(stack_dir, ["systemctl", "show", "-p", "Result", "--value", name]).strip()
    output = run(stack_dir, ["journalctl", "-u", name, "-o", "cat", "--no-pager"])
    return result, output


@pytest.fixture
def controller(lab_net: tuple[LabNetwork, Path], lab_image: str) -> Path:
    net, stack_dir = lab_net
    lower = image.lower_dirs(image.default_spec(Path(__file__).resolve().parents[2]),
                             "controller")
    machine.create(net, stack_dir, lower, machine.MachineSpec(
        name="c0", vpc_address="10.20.0.3", user_data="#cloud-config\n{}\n"))
    machine.exec_in(stack_dir, "c0", ["systemctl", "is-system-running", "--wait"], timeout=120)
    return stack_dir


def test_health_monitor_sandbox_tests_and_reloads_nginx(controller: Path) -> None:
    run(controller, ["systemctl", "start", "nginx"])
    result, output = start_probe(controller, "gemnar-probe-healthmon.service", probe_unit(
        "gemnar-healthmon.service",
        "nginx -t && nginx -s reload && echo reloaded; "
        "touch /etc/nginx/nginx.conf 2>/dev/null || echo system-read-only"))
    assert result == "success", output
    assert "reloaded" in output and "system-read-only" in output


def test_scaler_sandbox_runs_as_its_own_resolvable_user(controller: Path) -> None:
    run(controller, ["sh", "-c", "install -d -m 0700 /etc/gemnar/secrets && "
                                 "echo GEMNAR_PROBE_SECRET=s3cret > /etc/gemnar/secrets/scaler.env"
                                 " && chmod 0600 /etc/gemnar/secrets/scaler.env"])
    result, output = start_probe(controller, "gemnar-probe-scaler.service", probe_unit(
        "gemnar-scaler.service",
        'echo "user=$(id -u):$(getent passwd $(id -u) | cut -d: -f1)"; '
        'echo "secret=$GEMNAR_PROBE_SECRET"; '
        "cat /etc/gemnar/secrets/scaler.env 2>/dev/null || echo file-unreadable; "
        'touch "$STATE_DIRECTORY/x" && echo state-writable'))
    assert result == "success", output
    user = next(line for line in output.splitlines() if line.startswith("user="))
    uid, name = user.removeprefix("user=").split(":")
    assert uid != "0" and name, output
    assert "secret=s3cret" in output and "file-unreadable" in output
    assert "state-writable" in output
