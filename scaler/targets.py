"""What a scaler update must touch, read from the stack's own state (pure).

The names come from ``components.worker_scope`` (shared with the program); the URNs and types
come from the deployment ``export_stack()`` returns, so nothing here invents a type.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.worker_scope import MEMBERSHIP_TYPE, in_scope, renamed

# Worker indices searched in the state (maxWorkers is at most 1000).
MAX_INDEX = 1000


def resources(deployment: Any) -> list[Mapping[str, Any]]:
    """The resource entries of ``export_stack()``'s deployment (or of a plain mapping)."""
    body = getattr(deployment, "deployment", deployment)
    if not isinstance(body, Mapping):
        return []
    found = body.get("resources") or []
    return [r for r in found if isinstance(r, Mapping)]


def _by_name(deployment: Any) -> list[tuple[str, str]]:
    """(name, URN) of every resource; two resources of different types may share a name."""
    found = []
    for resource in resources(deployment):
        urn = str(resource.get("urn", ""))
        if "::" in urn:
            found.append((urn.rsplit("::", 1)[1], urn))
    return found


def _scope(names: list[tuple[str, str]], index: int) -> list[tuple[str, str]]:
    return [(name, urn) for name, urn in names if in_scope(name, index)]


def worker_indices(deployment: Any) -> list[int]:
    """Indices of every worker with any resource in the state."""
    names = _by_name(deployment)
    return [i for i in range(MAX_INDEX) if _scope(names, i)]


def strays(deployment: Any, count: int) -> list[int]:
    """Workers the state holds outside ``count`` (left by a failed or interrupted update)."""
    return [i for i in worker_indices(deployment) if i >= count]


def refresh_targets(deployment: Any, urns: list[str]) -> list[str]:
    """What a refresh of ``urns`` must name: those the state holds, and everything in the
    state whose parent, dependency or deleted-with is among them, transitively.

    Only resources that exist: the engine fails on any other name, and a worker that was only
    about to be created does not. The dependents by name, not through ``--target-dependents``:
    the engine (v3.274.1, ``deploymentExecutor.refresh``) refreshes a dependent without loading
    its provider, and fails with "unknown provider" when no named target shares it (the
    membership's command under the membership component did).
    """
    found = resources(deployment)
    known = {str(r.get("urn", "")) for r in found}
    chosen = {urn for urn in urns if urn in known}
    # The state lists a resource after everything it depends on: one pass is transitive.
    for r in found:
        links = {r.get("parent"), r.get("deletedWith"), *(r.get("dependencies") or [])}
        for deps in (r.get("propertyDependencies") or {}).values():
            links.update(deps or [])
        if chosen & {str(link) for link in links if link}:
            chosen.add(str(r.get("urn", "")))
    return [str(r.get("urn", "")) for r in found if str(r.get("urn", "")) in chosen]


def scope_targets(deployment: Any, previous: int, target: int) -> list[str]:
    """URNs that converge the state from ``previous`` to ``target`` workers.

    The membership; every resource of every worker in the state at an index at or above
    ``target`` (to remove); and of every index from ``previous`` (or ``target``, when scaling
    in) up to ``target`` (to add or finish). A removed worker's URNs come from the state; an
    added worker's are those of a worker in the state with the index changed, so the types are
    the program's own. ``target_dependents`` brings anything that depends on them. An empty
    list means "cannot tell": the caller runs a full ``up``.
    """
    names = _by_name(deployment)
    membership = [
        str(r["urn"]) for r in resources(deployment) if r.get("type") == MEMBERSHIP_TYPE
    ]
    if len(membership) != 1:
        return []
    urns = set(membership)
    for index in strays(deployment, target):
        urns.update(urn for _, urn in _scope(names, index))
    template = next((i for i in range(MAX_INDEX) if _scope(names, i)), None)
    for index in range(min(previous, target), target):
        if template is None:
            return []
        for name, urn in _scope(names, template):
            # The same type chain, the other index: the URN the program registers for it.
            urns.add(f"{urn.rsplit('::', 1)[0]}::{renamed(name, template, index)}")
    return sorted(urns)
