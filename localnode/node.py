"""What every local node has besides its settings: its root, its sshd's port and keys file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NodeBase:
    """The layout shared by the local controller and workers."""

    root: Path
    ssh_port: int
    authorized_keys: Path

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def supervised(self) -> Path:
        """The pid files of the node's supervised daemons."""
        return self.root / "run" / "supervised"
