"""``python -m healthmon run|apply|wait --settings controller.json``.

``run`` is the controller's health-monitor daemon. ``apply`` is ``gemnar-lb-apply``: it reads a
JSON list of ``"ip:port"`` members on stdin, stores it and reloads Nginx with exactly those
members, exiting non-zero when ``nginx -t`` or the reload fails. Both render the upstream with
the controller's own settings; probe timing comes from ``ControllerSettings.health``.
``wait`` is ``gemnar-lb-wait``, the controller's side of a rolling update (healthmon.rollwait).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from backups.status import STATUS_FILE_NAME as BACKUP_STATUS_FILE_NAME
from healthmon.checks import MemberHealth, Thresholds
from healthmon.monitor import ApplyError, MonitorConfig, apply_membership, run
from healthmon.rollwait import wait
from provisioning.monitoring import worker_target_files
from provisioning.nginx import render_nginx_upstream
from provisioning.settings import ControllerSettings
from provisioning.settings_codec import controller_from_json


def monitor_config(settings: ControllerSettings) -> MonitorConfig:
    paths = settings.paths
    nginx = ("nginx", "-c", paths.nginx_conf_file, "-e", paths.nginx_error_log)
    health = settings.health
    return MonitorConfig(
        membership_file=Path(paths.membership_file),
        upstream_file=Path(paths.nginx_upstream_file),
        lock_file=Path(paths.state_dir) / "membership.lock",
        reload_argv=(*nginx, "-s", "reload"),
        test_argv=(*nginx, "-t", "-q"),
        applied_file=Path(paths.state_dir) / "upstream.applied",
        status_file=Path(paths.state_dir) / "health.json",
        backup_status_file=Path(paths.state_dir) / BACKUP_STATUS_FILE_NAME,
        targets_dir=Path(paths.prometheus_targets_dir),
        render_targets=lambda members: worker_target_files(members, settings.monitoring),
        metrics_dir=Path(paths.node_exporter_textfile_dir),
        certificate_file=Path(paths.tls_cert_file),
        alerts_url=f"http://{settings.loopback_address}:{settings.ports.alertmanager}"
        "/api/v2/alerts",
        interval_s=health.interval_s,
        timeout_s=health.timeout_s,
        thresholds=Thresholds(rise=health.rise, fall=health.fall),
    )


def parse_members(text: str) -> list[str]:
    """Validate the stdin document: a JSON list of ``"ipv4:port"`` strings."""
    data = json.loads(text or "[]")
    if not isinstance(data, list):
        raise ValueError("members must be a JSON list of ip:port strings")
    members = []
    for item in data:
        host, _, port = str(item).rpartition(":")
        ipaddress.IPv4Address(host)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad member {item!r}: want ip:port")
        members.append(f"{host}:{port}")
    return members


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m healthmon", description=__doc__)
    parser.add_argument("action", choices=["run", "apply", "wait"])
    parser.add_argument("--settings", type=Path, required=True, help="controller.json")
    parser.add_argument("--mode", choices=["spare", "back"], help="wait: what to wait for")
    parser.add_argument("--member", help="wait: the rolled worker's ip:port")
    parser.add_argument("--count", type=int, default=1,
                        help="wait --mode spare: healthy members needed besides --member")
    parser.add_argument("--timeout", type=float, default=120, help="wait: seconds at most")
    parser.add_argument("--release", default="", help="wait: the release being rolled out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per probe is noise
    settings = controller_from_json(args.settings.read_text())
    cfg = monitor_config(settings)

    def render(members: Sequence[MemberHealth]) -> str:
        return render_nginx_upstream(members, settings)

    if args.action == "wait":
        if not args.mode or not args.member:
            parser.error("wait needs --mode and --member")
        assert cfg.status_file is not None
        outcome = wait(cfg.status_file, args.mode, args.member, args.count, args.timeout)
        print(f"gemnar-lb-wait: {outcome.why}"
              + (f" (rolling out {args.release})" if args.release else ""),
              file=sys.stdout if outcome.done else sys.stderr)
        return 0 if outcome.done else 1

    if args.action == "apply":
        try:
            members = parse_members(sys.stdin.read())
        except ValueError as err:
            print(f"gemnar-lb-apply: {err}", file=sys.stderr)
            return 2
        try:
            changed = apply_membership(cfg, members, render)
        except ApplyError as err:
            # Loudly: Pulumi shows this and fails the step; the monitor keeps retrying.
            print(f"gemnar-lb-apply: {err}", file=sys.stderr)
            return 1
        print(f"members: {len(members)} ({'reloaded' if changed else 'unchanged'})")
        return 0

    stop = asyncio.Event()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(cfg, render, stop)

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
