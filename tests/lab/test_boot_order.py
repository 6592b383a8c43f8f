"""The pure parts of tests/lab/boot_order.py on journal entries and ``ss`` lines shaped as a lab
controller's first boot printed them (systemd 252, iproute2 6.1)."""

from __future__ import annotations

import pytest

from tests.lab import boot_order
from tests.lab.boot_order import UNIT_STARTED, UNIT_STARTING

FLAG = "ConditionPathExists=/var/lib/gemnar/firewall-ready"


def entry(unit: str, at: int, message_id: str, message: str = "") -> dict[str, str]:
    return {"UNIT": unit, "__MONOTONIC_TIMESTAMP": str(at), "MESSAGE_ID": message_id,
            "MESSAGE": message or f"Starting {unit}..."}


def skip(unit: str, at: int, condition: str = FLAG) -> dict[str, str]:
    return entry(unit, at, UNIT_STARTED, f"{unit} - x was skipped because of an unmet "
                                         f"condition check ({condition}).")


BOOT = [
    skip("systemd-firstboot.service", 5, "ConditionFirstBoot=yes"),
    skip("prometheus-node-exporter.service", 10),
    skip("redis-server.service", 11),
    entry("ssh.service", 12, UNIT_STARTING),
    entry("nftables.service", 20, UNIT_STARTING),
    entry("nftables.service", 21, UNIT_STARTED, "Finished nftables.service - nftables."),
    entry("redis-server.service", 30, UNIT_STARTING),
    entry("prometheus-node-exporter.service", 31, UNIT_STARTING),
    entry("nftables.service", 40, UNIT_STARTED, "Finished nftables.service - nftables."),
    entry("redis-server.service", 50, UNIT_STARTING),
]


def test_firewall_is_its_first_finished_load() -> None:
    assert boot_order.firewall_loaded(BOOT) == 21
    assert boot_order.firewall_loaded(BOOT[:4]) is None


def test_first_starts_ignore_skipped_starts_and_later_restarts() -> None:
    starts = boot_order.first_starts(BOOT)
    assert starts["redis-server.service"] == 30
    assert starts["prometheus-node-exporter.service"] == 31
    assert "systemd-firstboot.service" not in starts


def test_skipped_names_only_the_flag_condition() -> None:
    assert boot_order.skipped(BOOT, FLAG) == ["prometheus-node-exporter.service",
                                              "redis-server.service"]


@pytest.mark.parametrize(("firewall", "starts", "expected"), [
    # Every listener after the firewall (ssh is exempt): nothing early.
    (21, {"redis-server.service": 30, "ssh.service": 12}, {}),
    # A start at boot, before the firewall, even though restarted later.
    (21, {"redis-server.service": 9, "ssh.service": 12}, {"redis-server.service": 9}),
    # No start recorded: not proven, so early.
    (21, {"ssh.service": 12}, {"redis-server.service": None}),
    # No firewall loaded this boot: every listener is early.
    (None, {"redis-server.service": 30, "ssh.service": 12}, {"redis-server.service": 30}),
])
def test_early_listeners(firewall: int | None, starts: dict[str, int],
                         expected: dict[str, int | None]) -> None:
    listeners = ["redis-server.service", "ssh.service"]
    assert boot_order.early(firewall, starts, listeners, exempt=["ssh.service"]) == expected


SS = """\
udp UNCONN 0 0 127.0.0.1:53 0.0.0.0:* users:(("unbound",pid=306,fd=5))
tcp LISTEN 0 511 0.0.0.0:80 0.0.0.0:* users:(("nginx",pid=395,fd=7),("nginx",pid=394,fd=7))
tcp LISTEN 0 4096 10.20.0.3:9100 0.0.0.0:* users:(("prometheus-node",pid=384,fd=3))
tcp LISTEN 0 128 [::]:22 [::]:* users:(("sshd",pid=174,fd=4))
"""
CGROUPS = {
    306: "0::/system.slice/unbound.service\n",
    395: "0::/system.slice/nginx.service\n", 394: "0::/system.slice/nginx.service\n",
    384: "0::/system.slice/prometheus-node-exporter.service\n",
    174: "0::/system.slice/ssh.service\n",
}


def test_listening_units_from_ss_and_cgroups() -> None:
    found = boot_order.listening_units(SS, lambda pid: CGROUPS[pid])
    assert found == {
        "unbound.service": ["udp 127.0.0.1:53"],
        "nginx.service": ["tcp 0.0.0.0:80"],
        "prometheus-node-exporter.service": ["tcp 10.20.0.3:9100"],
        "ssh.service": ["tcp [::]:22"],
    }


@pytest.mark.parametrize(("cgroup", "unit"), [
    ("0::/system.slice/system-postgresql.slice/postgresql@15-main.service\n",
     "postgresql@15-main.service"),
    ("0::/user.slice/user-0.slice/session-1.scope\n", None),
    ("", None),
])
def test_unit_of_cgroup(cgroup: str, unit: str | None) -> None:
    assert boot_order.unit_of_cgroup(cgroup) == unit
