"""The lab platform's nodes: machine directories ``<lab stack dir>/machines/<name>``.

A machine exists from the moment its directory does (``lab.machine.create`` makes it first,
``delete`` removes it last), so a half-made machine is listed too. Removing one runs the same
``python -m lab.hypervisor delete`` the program's delete command runs.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from components.lab_nodes import hypervisor_argv
from lab import machine
from lab.netns import LabNetwork
from project import PROJECT_ROOT
from strays.core import Node

_WORKER = re.compile(r"^worker-\d+$")
Run = Callable[[Sequence[str]], object]


def _run(argv: Sequence[str]) -> object:
    return subprocess.run(list(argv), check=True, cwd=PROJECT_ROOT, capture_output=True)


@dataclass(frozen=True)
class LabMachines:
    network: LabNetwork
    stack_dir: Path
    run: Run = field(default=_run)

    def nodes(self) -> list[Node]:
        return [Node(name, "worker" if _WORKER.match(name) else name)
                for name in machine.names(self.stack_dir)]

    def delete_argv(self, node: Node) -> list[str]:
        return hypervisor_argv("delete", self.network, node.key)

    def remove(self, node: Node) -> None:
        self.run(self.delete_argv(node))
