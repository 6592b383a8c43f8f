"""Pick the platform's adapter from the stack's config, find strays, remove them.

``find`` is read-only (the scaler's tick uses it to decide that a converging ``up`` is due);
``sweep`` removes, and must run only while this process holds the stack's lock (inside the
program of an ``up``, ``scaler.apply``): an update in progress creates workers the state does
not hold yet, and under the lock there is none but ours.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from strays.core import Node, find, held

VULTR_KEY = "vultr:apiKey"


class Platform(Protocol):
    """What an adapter does: list the platform's nodes, remove one."""

    def nodes(self) -> list[Node]: ...

    def remove(self, node: Node) -> None: ...


def platform_for(stack: str, config: Mapping[str, Any]) -> tuple[str, Platform]:
    """The stack's platform name and adapter, from its config (``get_all_config`` values).

    Only the keys that say where nodes are are read (each validated as the stack validates
    it): the whole config may be between two valid states, e.g. a count request set back
    while ``minWorkers`` was raised, and that must not hide the platform's nodes.
    """
    from stack_schema import KEYS, NAMESPACE, convert

    values = {k: getattr(v, "value", v) for k, v in config.items()}

    def value(key: str) -> Any:
        raw = values.get(f"{NAMESPACE}:{key}")
        return KEYS[key].default if raw is None else convert(KEYS[key], raw)

    platform = value("platform")
    if platform == "local":
        from components.local_nodes import configured_state_dir  # the program's own rule
        from strays.local import LocalNodes

        return "local", LocalNodes(configured_state_dir(value("localStateDir"), stack))
    if platform == "lab":
        from lab.netns import LabNetwork
        from strays import lab

        token = values.get(lab.TOKEN_KEY)
        if not token:
            raise RuntimeError(f"cannot list the lab's machines: no {lab.TOKEN_KEY}")
        net = LabNetwork(stack=stack, vpc_subnet=value("vpcSubnet"))
        return "lab", lab.machines(net, str(token))
    from strays.vultr import VultrInstances, client

    key = values.get(VULTR_KEY) or os.environ.get("VULTR_API_KEY")
    if not key:
        raise RuntimeError(f"cannot list the stack's instances: no {VULTR_KEY} or VULTR_API_KEY")
    return "vultr", VultrInstances(stack, client(str(key)))


def strays(name: str, platform: Platform, deployment: Callable[[], Any]) -> list[Node]:
    """The platform's workers the state does not hold. The nodes are listed before the state
    is read: a worker created in between is then in the state, not a stray."""
    existing = platform.nodes()
    return find(existing, held(deployment(), name))


def sweep(
    name: str, platform: Platform, deployment: Callable[[], Any],
    log: Callable[[str], None] = lambda _line: None,
) -> list[Node]:
    """Remove every stray; returns them. Only under the stack's lock (see above)."""
    found = strays(name, platform, deployment)
    for node in found:
        log(f"removing {node.key} ({node.detail or node.role}): it exists on the platform "
            "but not in the stack's state (left by a failed or interrupted update)")
        platform.remove(node)
    return found
