"""Names of what exists once per worker, shared by the program and the scaler (pure).

The convention: every resource that exists once per worker is named ``gemnar-worker-<i>`` (the
node) or ``gemnar-worker-<i>-<role>`` (its SSH gate, host key pin, first boot, app, secrets,
readiness, and their children). The scaler's targeted ``up`` names exactly those of the workers
it adds or removes, plus the load-balancer membership; it takes the *types* from the stack's
own state, so nothing is guessed. ``tests/scaler/test_targets.py`` checks the convention
against the real program's graph.
"""

from __future__ import annotations

from typing import Literal

POOL_TYPE = "gemnar:infra:WorkerPool"
MEMBERSHIP_TYPE = "gemnar:infra:Membership"
POOL_NAME = "gemnar-worker"
MEMBERSHIP_NAME = "gemnar-membership"


def worker_name(index: int) -> str:
    """The node's short name (hostname, outputs): worker-0, worker-1, ..."""
    return f"worker-{index}"


def node_resource(index: int) -> str:
    """The resource that makes worker ``index`` exist (a Vultr instance, a local node)."""
    return f"{POOL_NAME}-{index}"


# The roles of the resources that exist once per worker besides the node itself: its SSH gate,
# secrets, readiness, and (prod platforms with a bundled app) its app and its turn in a rolling
# app update.
WorkerRole = Literal["ssh", "secrets", "ready", "app", "roll"]


def role_resource(index: int, role: WorkerRole) -> str:
    """The resource of worker ``index`` in ``role``: ``gemnar-worker-<i>-<role>``."""
    return f"{node_resource(index)}-{role}"


def in_scope(name: str, index: int) -> bool:
    """Whether the resource ``name`` exists for worker ``index``."""
    node = node_resource(index)
    return name == node or name.startswith(f"{node}-")


def renamed(name: str, index: int, other: int) -> str:
    """``name`` of worker ``index``'s scope as worker ``other``'s resource in the same role."""
    return node_resource(other) + name.removeprefix(node_resource(index))
