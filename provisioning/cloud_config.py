"""Controller and worker user data: cloud-config built as data, dumped with PyYAML.

Files are written with ``defer: true`` so they land after the packages are installed (the
owners, such as ``postgres`` and ``redis``, exist only then, and package installs would
otherwise overwrite our configs); the setup script then runs from ``runcmd``. Before all that,
``bootcmd`` and one early file keep every network-facing daemon from starting until the setup
script has loaded the host firewall (provisioning.firstboot). No secret is
ever part of this text: any process on a Vultr instance can read its user data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml  # type: ignore[import-untyped]  # no types-PyYAML in requirements

from provisioning import firstboot
from provisioning.files import RenderedFile, controller_files, worker_files
from provisioning.settings import ControllerSettings, WorkerSettings

HEADER = "#cloud-config\n"
# The app user has the same fixed uid on every host, so files it owns mean the same everywhere.
APP_USER = {
    "name": "gemnar",
    "uid": 2000,
    "system": True,
    "homedir": "/var/lib/gemnar-app",
    "shell": "/usr/sbin/nologin",
    "lock_passwd": True,
}
COMMON_PACKAGES = ["nftables", "prometheus-node-exporter", "unattended-upgrades"]
CONTROLLER_PACKAGES = [
    "nginx",
    "postgresql-15",
    "postgresql-client-15",
    "pgbouncer",
    "redis-server",
    # Nginx resolves the media bucket's host name through it, on loopback (provisioning.media).
    "unbound",
    # unbound's DNSSEC root key (/usr/share/dns/root.key, copied to /var/lib/unbound at start):
    # only a Recommends of unbound, so an install without recommends leaves unbound failing
    # "unable to open /var/lib/unbound/root.key" (found in the lab, whose image has none).
    "dns-root-data",
    "certbot",
    "openssl",
    "python3-venv",
    "git",
    # The scaler runs as a DynamicUser=; its uid must resolve (ssh refuses an unknown uid).
    "libnss-systemd",
    # Monitoring (docs/monitoring.md), Debian 12's versions: Prometheus 2.42, Alertmanager
    # 0.25, postgres_exporter 0.11, redis_exporter 1.45, nginx exporter 0.11. Named
    # without versions like every package here: bookworm's security updates apply
    # (unattended-upgrades), the release is the pin.
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-postgres-exporter",
    "prometheus-redis-exporter",
    "prometheus-nginx-exporter",
    # gemnar-pgbouncer-exporter runs with the system Python and these two.
    "python3-psycopg2",
    "python3-prometheus-client",
]
WORKER_PACKAGES = ["python3-venv", "git"]
# Keys only (the sshd drop-in enforces it too); root keeps its keys because Pulumi logs in as
# gemnar:sshUser, root by default, where Debian's stock cloud.cfg would lock root out.
SSH_LOGIN = {"ssh_pwauth": False, "disable_root": False}


def _write_files(files: Sequence[RenderedFile]) -> list[dict[str, Any]]:
    return [
        {
            "path": f.path,
            "content": f.content,
            "permissions": f.permissions,
            "owner": f.owner,
            "defer": True,
        }
        for f in files
    ]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the user data reads like the files it writes."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(document: dict[str, Any]) -> str:
    body = yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096
    )
    return HEADER + body


def controller_cloud_config(settings: ControllerSettings) -> dict[str, Any]:
    """The controller's cloud-config as data."""
    return _node_cloud_config(settings.hostname, COMMON_PACKAGES + CONTROLLER_PACKAGES,
                              controller_files(settings), "gemnar-controller-setup.sh",
                              firstboot.COMMON_GUARDED + firstboot.CONTROLLER_GUARDED)


def worker_cloud_config(settings: WorkerSettings) -> dict[str, Any]:
    """A worker's cloud-config as data."""
    return _node_cloud_config(settings.name, COMMON_PACKAGES + WORKER_PACKAGES,
                              worker_files(settings), "gemnar-worker-setup.sh",
                              firstboot.COMMON_GUARDED)


def _node_cloud_config(hostname: str, packages: Sequence[str], files: list[RenderedFile],
                       setup_script: str, guarded: Sequence[str]) -> dict[str, Any]:
    """Either role's cloud-config: ``guarded`` held back until the firewall, its packages and
    files, then its setup script, once."""
    setup = next(f.path for f in files if f.path.endswith(f"/{setup_script}"))
    return {
        "hostname": hostname,
        "timezone": "UTC",
        "package_update": True,
        "package_upgrade": True,
        "packages": packages,
        "users": ["default", dict(APP_USER)],
        **SSH_LOGIN,
        "bootcmd": firstboot.bootcmd(guarded),
        "write_files": [firstboot.policy_rc_d_entry(), *_write_files(files)],
        "runcmd": [[setup]],
    }


def controller_user_data(settings: ControllerSettings) -> str:
    """The controller's full ``#cloud-config`` text."""
    return _dump(controller_cloud_config(settings))


def worker_user_data(settings: WorkerSettings) -> str:
    """A worker's full ``#cloud-config`` text."""
    return _dump(worker_cloud_config(settings))
