"""Names of what exists once per worker, shared by the program and the scaler (pure).

The convention: every resource that exists once per worker is named ``gemnar-worker-<i>`` (the
node) or ``gemnar-worker-<i>-<role>`` (its SSH gate, host key pin, first boot, app, secrets,
readiness, and their children). The scaler's targeted ``up`` names exactly those of the workers
it adds or removes, plus the load-balancer membership; it takes the *types* from the stack's
own state, so nothing is guessed. ``tests/scaler/test_targets.py`` checks the convention
against the real program's graph.
"""

from __future__ import annotations

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


def secrets_resource(index: int) -> str:
    return f"{node_resource(index)}-secrets"


def readiness_resource(index: int) -> str:
    return f"{node_resource(index)}-ready"


def ssh_gate_resource(index: int) -> str:
    return f"{node_resource(index)}-ssh"


def app_resource(index: int) -> str:
    """The app delivered to the worker (prod platforms with a bundled app)."""
    return f"{node_resource(index)}-app"


def roll_resource(index: int) -> str:
    """The worker's turn in a rolling app update."""
    return f"{node_resource(index)}-roll"


def in_scope(name: str, index: int) -> bool:
    """Whether the resource ``name`` exists for worker ``index``."""
    node = node_resource(index)
    return name == node or name.startswith(f"{node}-")


def renamed(name: str, index: int, other: int) -> str:
    """``name`` of worker ``index``'s scope as worker ``other``'s resource in the same role."""
    return node_resource(other) + name.removeprefix(node_resource(index))
