"""Self-healing: replace a worker that has stayed unhealthy past a bound, with a brake.

``python -m healthmon.heal --stack NAME --status-file health.json`` reads what the health
monitor knows (``health.json``: each member, healthy or not, down since when), decides with the
pure ``plan`` and, when it names a worker, runs ``pulumi up --replace`` on that worker's node
resource through the Automation API: the same path on every platform (a Vultr instance, a
local node's processes, a lab machine), so the new node goes through readiness and joins the
load balancer like any new worker.

The brake: when more than ``brake_fraction`` of the members are unhealthy (or the monitor is
failing open), nothing is replaced. That many sick workers at once points at something they
share (the database, Redis, the controller, the network), which new workers would not fix;
replacing them would only add an outage of their own. One worker at most is replaced per run,
so a wrong decision costs one worker, never the pool. A locked stack is "try next run".
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("gemnar.heal")

# The resource that *is* worker N on each platform: vultr.Instance "gemnar-worker-N", the local
# node's processes "gemnar-worker-N-processes", the lab's machine "gemnar-worker-N-machine".
NODE_RESOURCE_SUFFIXES = ("", "-processes", "-machine")


@dataclass(frozen=True)
class MemberStatus:
    address: str  # ip:port
    healthy: bool
    down_since: float | None


@dataclass(frozen=True)
class HealPolicy:
    bound_s: float = 300.0
    brake_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.bound_s <= 0 or not 0 < self.brake_fraction <= 1:
            raise ValueError("bound_s must be > 0 and brake_fraction within (0, 1]")


@dataclass(frozen=True)
class Decision:
    replace: str | None  # a member address, or None
    reason: str


def plan(
    members: Sequence[MemberStatus], fail_open: bool, now: float, policy: HealPolicy
) -> Decision:
    """Which member to replace now, if any, and why (pure)."""
    if not members:
        return Decision(None, "no members")
    sick = [m for m in members if not m.healthy]
    if fail_open or len(sick) > policy.brake_fraction * len(members):
        return Decision(None, f"brake: {len(sick)} of {len(members)} members unhealthy; "
                              "a shared fault is not fixed by replacing workers")
    overdue = sorted(
        (m for m in sick if m.down_since is not None and now - m.down_since >= policy.bound_s),
        key=lambda m: (m.down_since, m.address),
    )
    if not overdue:
        if sick:
            return Decision(None, f"{len(sick)} unhealthy, none for {policy.bound_s:.0f}s yet")
        return Decision(None, "every member healthy")
    chosen = overdue[0]
    assert chosen.down_since is not None
    return Decision(chosen.address,
                    f"{chosen.address} unhealthy for {now - chosen.down_since:.0f}s "
                    f"(bound {policy.bound_s:.0f}s)")


def read_status(path: Path) -> tuple[list[MemberStatus], bool]:
    data = json.loads(path.read_text())
    members = [MemberStatus(str(m["address"]), bool(m["healthy"]), m.get("down_since"))
               for m in data.get("members", [])]
    return members, bool(data.get("fail_open"))


def node_urn(deployment: Any, worker_name: str) -> str | None:
    """The URN of the resource that is ``worker_name``'s node, on whichever platform."""
    body = getattr(deployment, "deployment", deployment) or {}
    wanted = {f"gemnar-{worker_name}{suffix}" for suffix in NODE_RESOURCE_SUFFIXES}
    for resource in body.get("resources") or []:
        urn = str(resource.get("urn", ""))
        if urn.rsplit("::", 1)[-1] in wanted and not str(resource.get("type", "")).startswith(
            "gemnar:"
        ):
            return urn
    return None


def worker_name_of(outputs: Mapping[str, Any], address: str) -> str | None:
    """The worker whose private IP serves ``address`` (ip:port), from the stack's outputs."""
    ip = address.rpartition(":")[0]
    workers = getattr(outputs.get("workers"), "value", outputs.get("workers")) or []
    return next((str(w["name"]) for w in workers if w.get("privateIp") == ip), None)


class HealStack(Protocol):
    def outputs(self) -> Mapping[str, Any]: ...

    def export_stack(self) -> Any: ...

    def up(
        self,
        *,
        replace: list[str] | None = None,
        message: str | None = None,
        color: str | None = None,
    ) -> Any: ...


def heal_once(
    stack: HealStack, status_file: Path, policy: HealPolicy, clock: Callable[[], float]
) -> Decision:
    """Read the monitor's status, decide, and replace at most one worker's node."""
    members, fail_open = read_status(status_file)
    decision = plan(members, fail_open, clock(), policy)
    log.info("heal: %s", decision.reason)
    if decision.replace is None:
        return decision
    name = worker_name_of(stack.outputs(), decision.replace)
    urn = node_urn(stack.export_stack(), name) if name else None
    if urn is None:
        return Decision(None, f"{decision.replace}: no worker node found in the stack")
    from pulumi.automation.errors import ConcurrentUpdateError

    try:
        stack.up(replace=[urn], message=f"heal: {decision.reason}", color="never")
    except ConcurrentUpdateError:
        return Decision(None, "stack locked by another update; next run")
    log.warning("heal: replaced %s (%s)", name, decision.reason)
    return decision


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m healthmon.heal", description=__doc__)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--status-file", type=Path, required=True, help="the monitor's health.json")
    parser.add_argument("--bound", type=float, default=HealPolicy.bound_s,
                        help="seconds a worker may stay unhealthy before it is replaced")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from engine.workspace import open_stack  # needs the Pulumi toolchain

    decision = heal_once(open_stack(args.stack), args.status_file, HealPolicy(args.bound),
                         time.time)
    print(decision.reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
