"""The scaler's targets against the real program's resource graph (Vultr mocked, nothing else).

For every change of count, the engine's own selection rule — the targets, then every resource
whose parent or dependency is selected, in registration order — applied to the program's graph
must select exactly the workers added or removed, their secrets and readiness/drain, and the
membership, for many changes of count on both platforms. The real engine's own selection is
proven for prod in tests/scaler/test_prod_preview.py (a preview with Vultr's API faked) and
for the local platform in tests/e2e/test_scaler.py.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from components.worker_scope import MEMBERSHIP_NAME, MEMBERSHIP_TYPE
from scaler.targets import refresh_targets, scope_targets, strays, worker_indices
from tests.scaler.program_graph import Graph, graph


def selected(g: Graph, targets: Iterable[str]) -> set[str]:
    """What ``up --target ... --target-dependents`` reaches in ``g`` (the engine's rule)."""
    chosen = set(targets) & g.urns
    changed = True
    while changed:
        changed = False
        for r in g.resources:
            if r["urn"] in chosen:
                continue
            if r["parent"] in chosen or chosen & set(r["dependencies"]):
                chosen.add(r["urn"])
                changed = True
    return chosen


def membership_scope(g: Graph) -> set[str]:
    root = g.by_name(MEMBERSHIP_NAME)["urn"]
    return {root} | {r["urn"] for r in g.resources if r["parent"] == root}


CHANGES = [(2, 3), (3, 2), (1, 4), (5, 2), (2, 6)]


@pytest.mark.parametrize("platform", ["vultr", "local"])
@pytest.mark.parametrize(("previous", "target"), CHANGES)
def test_a_scaler_update_touches_only_the_changed_workers_and_the_membership(
    platform: str, previous: int, target: int
) -> None:
    before, after = graph(platform, previous), graph(platform, target)
    targets = scope_targets(before.deployment(), previous, target)
    assert targets, "the state always has a template worker"
    # Every target is a URN the program really registers (before or after the change).
    assert set(targets) <= before.urns | after.urns
    assert {u for u in targets if u.rsplit("::", 1)[1] == MEMBERSHIP_NAME} == {
        after.by_name(MEMBERSHIP_NAME)["urn"]}
    # Creates and updates are chosen among the new graph, deletes among the old one.
    touched = selected(after, targets) | selected(before, targets)
    expected = (after.urns ^ before.urns) | membership_scope(after)
    assert touched == expected
    # And it is not the whole stack.
    assert len(touched) < len(after.urns | before.urns)
    kinds = {r["type"] for r in after.resources + before.resources if r["urn"] in touched}
    assert MEMBERSHIP_TYPE in kinds and "gemnar:infra:HostSecrets" in kinds
    assert "gemnar:infra:WorkerReadiness" in kinds


@pytest.mark.parametrize("platform", ["vultr", "local"])
def test_workers_are_children_of_one_worker_pool_on_every_platform(platform: str) -> None:
    g = graph(platform, 3)
    pool = g.by_name("gemnar-worker")
    assert pool["type"] == "gemnar:infra:WorkerPool"
    for index in range(3):
        assert g.by_name(f"gemnar-worker-{index}")["parent"] == pool["urn"]


def test_workers_in_the_state_and_strays_beyond_the_count() -> None:
    state = graph("local", 4).deployment()
    assert worker_indices(state) == [0, 1, 2, 3]
    assert strays(state, 2) == [2, 3]
    assert strays(state, 4) == []


def test_a_converge_to_the_same_count_removes_the_strays() -> None:
    # An interrupted 2 -> 4 left workers 2 and 3 in the state; the outputs still say 2.
    before, after = graph("vultr", 4), graph("vultr", 2)
    targets = scope_targets(before.deployment(), 2, 2)
    assert selected(before, targets) | selected(after, targets) == (
        (before.urns - after.urns) | membership_scope(after))


def test_without_a_membership_or_a_template_the_answer_is_a_full_up() -> None:
    assert scope_targets({"resources": []}, 2, 3) == []
    only_membership = {"resources": [r for r in graph("local", 2).deployment()["resources"]
                                     if r.get("type") == MEMBERSHIP_TYPE]}
    assert scope_targets(only_membership, 0, 1) == []


@pytest.mark.parametrize("platform", ["vultr", "local"])
def test_a_refresh_names_what_exists_and_everything_under_it(platform: str) -> None:
    # An interrupted 3 -> 4: worker-3 never reached the state.
    g = graph(platform, 3)
    wanted = scope_targets(g.deployment(), 3, 4)
    named = refresh_targets(g.deployment(), wanted)
    assert set(named) <= g.urns | {r["urn"] for r in g.deployment()["resources"]}
    assert not any("gemnar-worker-3" in urn for urn in named)
    # The engine's own closure (parents and dependencies) of what exists, nothing more.
    assert set(named) == selected(g, wanted)
    assert g.by_name(f"{MEMBERSHIP_NAME}-sync")["urn"] in named
