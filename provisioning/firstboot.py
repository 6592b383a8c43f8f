"""Nothing network-facing starts on a node's first boot before its host firewall is loaded.

A node gets its packages one of two ways, from the same user data (docs/hardening.md,
"First boot"):

- a stock Debian 12 image (Vultr): cloud-init's final stage installs them, and each package's
  maintainer script starts its daemon at once with Debian's config (the node exporter, Prometheus
  and Alertmanager on every address);
- an image that already holds them (the lab's images, a Vultr snapshot): they are enabled there,
  so systemd starts them at boot, again before the final stage runs the setup script that
  loads nftables (``cloud-final.service`` is ``After=multi-user.target``).

Debian 12's cloud-init (22.4) runs ``bootcmd`` and then ``write_files`` in its init stage, in
``cloud-init.service``, which is ordered ``Before=sysinit.target``: before any ordinary service,
on every boot. Deferred files and packages come in the final stage. Hence two guards:

- ``bootcmd`` writes, while the flag does not exist, a runtime drop-in
  (``/run/systemd/system/<unit>.d/``) with ``ConditionPathExists=<flag>`` for each guarded unit
  (``COMMON_GUARDED``, and ``CONTROLLER_GUARDED`` on the controller) and reloads systemd, so
  that the boot's pending start jobs (and any start a maintainer script asks for later) are
  skipped. ``bootcmd`` writes them itself because a drop-in from ``write_files`` comes too late:
  the units are loaded when the boot begins and nothing reloads systemd before they start
  (measured in the lab: the unit's ``DropInPaths`` stayed empty and it started). ``/run`` is
  empty at every boot, so nothing of this outlives the boot that needed it;
- ``/usr/sbin/policy-rc.d`` (``exit 101``), a non-deferred ``write_files`` entry: Debian's
  maintainer scripts (``invoke-rc.d``, ``deb-systemd-invoke``) then start nothing during the
  package install, also daemons of dependencies nobody listed here. This is what the lab's image
  build does in its chroot.

The setup script, once ``nftables.service`` is active, creates the flag, removes the policy and
starts the units. Later boots find the flag; ``nftables.service`` (enabled by the setup script)
is ``DefaultDependencies=no`` and ``Before=network-pre.target``, so the ruleset is loaded before
any interface is configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from provisioning.monitoring import MONITORING_UNITS
from provisioning.templates import render

# Created by the setup script once the host firewall is active; persistent (later boots).
FIREWALL_READY_FLAG = "/var/lib/gemnar/firewall-ready"
RUNTIME_UNITS_DIR = "/run/systemd/system"
DROPIN_NAME = "gemnar-firewall-first.conf"
POLICY_RC_D = "/usr/sbin/policy-rc.d"
# invoke-rc.d's and deb-systemd-invoke's "action forbidden by policy" (man invoke-rc.d).
POLICY_RC_D_CONTENT = (
    "#!/bin/sh\n# gemnar: no daemon starts until the host firewall is loaded.\nexit 101\n"
)

# Every unit that listens on a socket, by the packages (and units) each role installs. The lab
# e2e checks each machine's listeners against the firewall's start, so a unit missing here fails
# there. sshd is not held back: the deployer waits for the first boot over SSH (keys only).
COMMON_GUARDED = ("prometheus-node-exporter.service",)
CONTROLLER_GUARDED = (
    # The template: the packaged cluster postgresql@15-main is one instance of it.
    "postgresql@.service",
    "pgbouncer.service",
    "redis-server.service",
    "nginx.service",
    "unbound.service",
    *(f"{unit}.service" for unit in MONITORING_UNITS),
)


def guard_script(units_dir: str = RUNTIME_UNITS_DIR, flag: str = FIREWALL_READY_FLAG) -> str:
    """The ``sh`` script ``bootcmd`` runs with the units as its arguments."""
    return render("common/gemnar-firewall-first.sh", flag=flag, units_dir=units_dir,
                  dropin=DROPIN_NAME)


def bootcmd(units: Sequence[str], units_dir: str = RUNTIME_UNITS_DIR,
            flag: str = FIREWALL_READY_FLAG) -> list[list[str]]:
    """cloud-config ``bootcmd``: the guard with ``units`` as its arguments (``$0`` names it in
    sh's messages)."""
    return [["sh", "-c", guard_script(units_dir, flag), "gemnar-firewall-first", *units]]


def policy_rc_d_entry() -> dict[str, Any]:
    """The ``write_files`` entry of the policy: not deferred, so it is in place before the
    final stage installs packages."""
    return {"path": POLICY_RC_D, "content": POLICY_RC_D_CONTENT, "permissions": "0755",
            "owner": "root:root"}
