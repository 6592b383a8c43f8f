"""Which existing nodes are strays: workers the stack's state does not hold (pure).

A platform lists its nodes as ``Node(key, role)``; ``held`` reads from a deployment
(``export_stack()``) which worker keys the state holds, by the resource that makes a worker
exist on that platform (``HOLDERS``, data per platform). A stray is a worker node whose key
the state does not hold. The controller and anything not known to be a worker are never
strays: missing data must never remove a node.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from components.worker_scope import POOL_NAME, worker_name
from scaler.targets import resources


@dataclass(frozen=True)
class Node:
    """A node as its platform lists it: ``key`` is what the state's holder resource records
    (a Vultr instance id, a local node's or lab machine's name)."""

    key: str
    role: str
    detail: str = ""


@dataclass(frozen=True)
class Holder:
    """The state resource that makes worker ``i`` exist: ``gemnar-worker-<i><suffix>`` of
    ``type``; its ``key`` is the resource's ``id`` or the worker's name."""

    type: str
    suffix: str
    key: Literal["id", "name"]


HOLDERS: Mapping[str, Holder] = {
    "vultr": Holder("vultr:index/instance:Instance", "", "id"),
    "local": Holder("command:local:Command", "-processes", "name"),
    "lab": Holder("command:local:Command", "-machine", "name"),
}

# gemnar-worker-<i> and the rest of the name (components.worker_scope).
_INDEX = re.compile(rf"^{re.escape(POOL_NAME)}-(\d+)(.*)$")


def held(deployment: Any, platform: str) -> set[str]:
    """Keys of the workers the state holds (pending operations are not held)."""
    holder = HOLDERS[platform]
    found = set()
    for resource in resources(deployment):
        name = str(resource.get("urn", "")).rsplit("::", 1)[-1]
        match = _INDEX.match(name)
        if match is None or match[2] != holder.suffix or resource.get("type") != holder.type:
            continue
        key = resource.get("id") if holder.key == "id" else worker_name(int(match[1]))
        if key:
            found.add(str(key))
    return found


def find(existing: Iterable[Node], holds: Collection[str]) -> list[Node]:
    """The worker nodes whose key the state does not hold, in key order."""
    return sorted((n for n in existing if n.role == "worker" and n.key not in holds),
                  key=lambda n: n.key)
