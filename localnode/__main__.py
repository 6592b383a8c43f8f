"""``python -m localnode start|stop``: what the local stack's node commands run.

The node's spec arrives as JSON in ``GEMNAR_NODE_SPEC`` (role, root directory, SSH port,
authorized keys and the rendered settings); its secrets arrive as ``GEMNAR_DB_PASSWORD``,
``GEMNAR_REDIS_PASSWORD`` and ``GEMNAR_SECRET_KEY`` in the environment, from Pulumi secrets,
and are written only to root-only files under the node's root.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from localnode.controller import ControllerNode, start_controller, stop_controller
from localnode.worker import SPEC_FILE, WorkerNode, install_app, start_worker, stop_worker
from provisioning.settings_codec import controller_from_json, worker_from_json


def authorized_keys(spec: Mapping[str, Any]) -> Path:
    """The node's authorized_keys file, written from the stack's public keys."""
    path = Path(spec["root"]) / "ssh" / "authorized_keys"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key}\n" for key in spec["authorizedKeys"]))
    path.chmod(0o600)
    return path


def _layout(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The fields every node has (``localnode.node.NodeBase``), from its spec."""
    return {"root": Path(spec["root"]), "ssh_port": int(spec["sshPort"]),
            "authorized_keys": authorized_keys(spec)}


def controller_node(spec: Mapping[str, Any]) -> ControllerNode:
    return ControllerNode(settings=controller_from_json(json.dumps(spec["settings"])),
                          **_layout(spec))


def worker_node(spec: Mapping[str, Any]) -> WorkerNode:
    return WorkerNode(settings=worker_from_json(json.dumps(spec["settings"])),
                      deploy_lock=Path(spec["deployLock"]), **_layout(spec))


def main(argv: list[str]) -> int:
    """Run the action, keeping a log under the node's root.

    The command provider marks this command's output secret (its environment holds
    secrets), so the engine cannot show it; the log file is where a failure is read.
    """
    spec_root = json.loads(os.environ.get("GEMNAR_NODE_SPEC", "{}")).get("root")
    try:
        return _main(argv)
    except Exception:
        if spec_root:
            log = Path(spec_root) / "log" / "localnode.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as handle:
                handle.write(traceback.format_exc())
            print(f"localnode {' '.join(argv)} failed; see {log}", file=sys.stderr)
        raise


def _main(argv: list[str]) -> int:
    if argv[:1] == ["install-app"] and len(argv) >= 2:
        # Run over SSH on the node (gemnar-install-app): the spec comes from the node's file.
        spec = json.loads(Path(argv[1]).read_text())
        try:
            print(install_app(worker_node(spec), argv[2:]))
        except ValueError as err:
            print(f"gemnar-install-app: {err}", file=sys.stderr)
            return 1
        return 0
    if len(argv) != 1 or argv[0] not in {"start", "stop"}:
        print("usage: python -m localnode start|stop  (spec in GEMNAR_NODE_SPEC)", file=sys.stderr)
        return 2
    spec = json.loads(os.environ["GEMNAR_NODE_SPEC"])
    env = os.environ
    if spec["role"] == "controller":
        controller = controller_node(spec)
        if argv[0] == "start":
            start_controller(controller, env)
        else:
            stop_controller(controller)
    else:
        worker = worker_node(spec)
        if argv[0] == "start":
            spec_file = worker.root / SPEC_FILE
            spec_file.parent.mkdir(parents=True, exist_ok=True)
            spec_file.write_text(json.dumps(spec))
            start_worker(worker, {
                "db_password": env["GEMNAR_DB_PASSWORD"],
                "redis_password": env["GEMNAR_REDIS_PASSWORD"],
                "secret_key": env["GEMNAR_SECRET_KEY"],
            })
        else:
            stop_worker(worker)
    print(f"{spec['role']} {spec['settings'].get('name', 'controller')}: {argv[0]} done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
