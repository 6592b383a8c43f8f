"""The lab platform's nodes: the machines the lab hypervisor's API lists (``lab/agent.py``).

The lab's API plays Vultr's: the program creates and deletes machines through it with the
stack's token (``gemnar:labHypervisorToken``), from the host's engine or from the controller,
so the sweep lists and deletes the same way. A machine is listed from the moment its
directory exists (``lab.machine.create`` makes it first), so a half-made one is too.
Removing one is the API's delete, the call the program's own delete command makes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from lab import agent
from lab.netns import LabNetwork
from strays.core import Node

TOKEN_KEY = "gemnar:labHypervisorToken"
_WORKER = re.compile(r"^worker-\d+$")


@dataclass(frozen=True)
class LabMachines:
    """The stack's machines through its agent: ``url`` is the machine collection, exactly as
    the agent serves it (httpx's ``base_url`` would add a trailing slash, which it refuses)."""

    http: httpx.Client  # carries the token
    url: str

    def nodes(self) -> list[Node]:
        response = self.http.get(self.url)
        response.raise_for_status()
        names = [str(m["name"]) for m in response.json().get("machines") or []]
        return [Node(name, "worker" if _WORKER.match(name) else name) for name in names]

    def remove(self, node: Node) -> None:
        self.http.delete(f"{self.url}/{node.key}").raise_for_status()


def machines(net: LabNetwork, token: str, transport: httpx.BaseTransport | None = None
             ) -> LabMachines:
    """The adapter for the stack's agent (``agent.url``), authorized by the stack's token."""
    http = httpx.Client(headers={"Authorization": f"Bearer {token}"},
                        timeout=agent.CREATE_TIMEOUT_S, transport=transport)
    return LabMachines(http, agent.url(net))
