"""``python -m appdelivery push|hash|build|scan``: what the deploy runs on the operator's machine.

push      build (or reuse) the app artifact and install it on one worker over SSH
push-ops  the controller's project, venv wheels and pinned Pulumi CLI, installed over SSH
hash      print the app's (or with --ops the project's) content hash
build     build (or reuse) the app artifact (or with --ops the ops bundle) and print its path
scan      wait until HOST:PORT answers SSH and print its ed25519 host key (first contact)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appdelivery.artifact import build as build_artifact
from appdelivery.operations import OpsSource, build_bundle
from appdelivery.ops_push import INSTALL_OPS, OPS_DIR, plan_ops, run_ops
from appdelivery.push import ARTIFACTS_DIR, INSTALL, PushError, plan, run
from appdelivery.source import AppSource
from appdelivery.ssh import Endpoint
from engine.toolchain import tool_paths

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _endpoint(spec: str | None, user: str, host_key: str | None) -> Endpoint | None:
    if not spec:
        return None
    host, _, port = spec.rpartition(":") if spec.count(":") == 1 else (spec, "", "")
    return Endpoint(host=host or spec, port=int(port or 22), user=user,
                    host_key=host_key or None)


def scan(host: str, port: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        result = subprocess.run(
            ["ssh-keyscan", "-T", "5", "-t", "ed25519", "-p", str(port), host],
            capture_output=True, text=True, check=False,
        )
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] == "ssh-ed25519":
                print(f"{parts[1]} {parts[2]}")
                return 0
        if time.monotonic() >= deadline:
            print(f"no SSH host key from {host}:{port} within {timeout_s:.0f}s", file=sys.stderr)
            return 1
        time.sleep(2)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m appdelivery")
    sub = parser.add_subparsers(dest="action", required=True)
    hasher = sub.add_parser("hash")
    hasher.add_argument("--ops", action="store_true")
    # Builds (and caches) the app artifact or the ops bundle now, e.g. before the engine runs
    # where no package index is reachable (inside the lab's network namespace).
    builder = sub.add_parser("build")
    builder.add_argument("--ops", action="store_true")
    ops = sub.add_parser("push-ops")
    ops.add_argument("--target", required=True, help="host[:port] of the controller")
    ops.add_argument("--user", default="root")
    ops.add_argument("--source-hash", required=True)
    ops.add_argument("--cli", type=Path, default=None,
                     help="the Pulumi CLI to copy (default: this project's pinned one)")
    ops.add_argument("--cli-version", required=True)
    ops.add_argument("--fetch-plugin", action="append", default=[],
                     help="NAME:VERSION installed the official way on the controller")
    ops.add_argument("--ops-dir", default=OPS_DIR)
    ops.add_argument("--install", default=INSTALL_OPS)
    ops.add_argument("--app-cache-dir", help="also seed the app artifact into this directory")
    push = sub.add_parser("push")
    push.add_argument("--target", required=True, help="host[:port]")
    push.add_argument("--jump", help="host[:port] of the jump host (the controller)")
    push.add_argument("--user", default="root")
    push.add_argument("--source-hash", required=True)
    push.add_argument("--artifacts-dir", default=ARTIFACTS_DIR)
    push.add_argument("--install", default=INSTALL)
    push.add_argument("--ready", help="readiness command run with the target's address")
    push.add_argument("--secrets-file", help="the app waits for its secrets while this is absent")
    push.add_argument("--roll", help="gemnar-worker-roll on the target: drain, install, healthy")
    push.add_argument("--worker", default="", help="the worker's name, for the roll's messages")
    push.add_argument("--address", default="", help="the worker's private address")
    push.add_argument("--roll-timeout", type=int, default=300)
    push.add_argument("--app-dir", type=Path, help="the bundled app (default: the project's)")
    scanner = sub.add_parser("scan")
    scanner.add_argument("host")
    scanner.add_argument("--port", type=int, default=22)
    scanner.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)
    if args.action == "hash":
        source = OpsSource if args.ops else AppSource
        print(source.of_project(PROJECT_ROOT).content_hash)
        return 0
    if args.action == "build":
        if args.ops:
            print(build_bundle(OpsSource.of_project(PROJECT_ROOT)))
        else:
            print(build_artifact(AppSource.of_project(PROJECT_ROOT)))
        return 0
    if args.action == "push-ops":
        controller = _endpoint(args.target, args.user, os.environ.get("GEMNAR_TARGET_HOST_KEY"))
        assert controller is not None
        try:
            cli = args.cli or tool_paths().cli
            pushed = plan_ops(PROJECT_ROOT, args.source_hash, cli, args.cli_version,
                              controller, tuple(args.fetch_plugin), args.ops_dir, args.install,
                              app_cache_dir=args.app_cache_dir)
            with tempfile.TemporaryDirectory(prefix="gemnar-ops-") as scratch:
                print(run_ops(pushed, os.environ.get("GEMNAR_SSH_PRIVATE_KEY"), Path(scratch)))
        except PushError as error:
            print(f"appdelivery: {error}", file=sys.stderr)
            return 1
        return 0
    if args.action == "scan":
        return scan(args.host, args.port, args.timeout)
    target = _endpoint(args.target, args.user, os.environ.get("GEMNAR_TARGET_HOST_KEY"))
    jump = _endpoint(args.jump, args.user, os.environ.get("GEMNAR_JUMP_HOST_KEY"))
    assert target is not None
    try:
        pushed = plan(PROJECT_ROOT, args.source_hash, target, jump,
                      artifacts_dir=args.artifacts_dir, install=args.install,
                      ready=args.ready, secrets_file=args.secrets_file, roll=args.roll,
                      worker=args.worker, address=args.address,
                      roll_timeout_s=args.roll_timeout, app_dir=args.app_dir)
        print(run(pushed, os.environ.get("GEMNAR_SSH_PRIVATE_KEY")))
    except PushError as error:
        print(f"appdelivery: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
