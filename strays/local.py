"""The local platform's nodes: directories ``<state dir>/nodes/<name>`` with live daemons.

A node exists while a daemon its pid files name runs (a directory alone is what a clean stop
leaves). Removing one stops those daemons as ``localnode stop`` does: the app and the helpers
under the supervisor first, then sshd.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from localnode.supervise import running, stop_pidfile
from strays.core import Node

_WORKER = re.compile(r"^worker-\d+$")


def pidfiles(node_dir: Path) -> list[Path]:
    """The node's pid files, supervised daemons first (sshd, the way in, stops last)."""
    run = node_dir / "run"
    return [*sorted(run.glob("supervised/*.pid")), *sorted(run.glob("*.pid"))]


@dataclass(frozen=True)
class LocalNodes:
    """The nodes under ``state_dir`` (components.local_nodes.state_dir)."""

    state_dir: Path

    def nodes(self) -> list[Node]:
        base = self.state_dir / "nodes"
        found = []
        for node_dir in sorted(base.iterdir()) if base.is_dir() else []:
            live = [p.name for p in pidfiles(node_dir) if running(p)]
            if live:
                role = "worker" if _WORKER.match(node_dir.name) else node_dir.name
                found.append(Node(node_dir.name, role, ", ".join(live)))
        return found

    def remove(self, node: Node) -> None:
        for pidfile in pidfiles(self.state_dir / "nodes" / node.key):
            stop_pidfile(pidfile)
