"""Which nodes are strays (pure): tables on the real program's graphs, and properties."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from strays.core import HOLDERS, Node, find, held
from strays.sweep import platform_for, strays, sweep
from tests.scaler.program_graph import graph


def with_ids(deployment: dict[str, Any]) -> dict[str, Any]:
    """The graph as the engine records it after the creates: every custom resource an id."""
    return {"resources": [{**r, "id": "id-" + r["urn"].rsplit("::", 1)[1]}
                          for r in deployment["resources"]]}


def test_held_reads_the_program_s_own_worker_resources() -> None:
    local = graph("local", 3).deployment()
    assert held(local, "local") == {"worker-0", "worker-1", "worker-2"}
    vultr = with_ids(graph("vultr", 3).deployment())
    assert held(vultr, "vultr") == {"id-gemnar-worker-0", "id-gemnar-worker-1",
                                    "id-gemnar-worker-2"}
    # The controller's instance and the pool are never a worker's holder.
    assert held(with_ids(graph("vultr", 1).deployment()), "vultr") == {"id-gemnar-worker-0"}


def test_held_table() -> None:
    machine = "command:local:Command"
    urn = "urn:pulumi:s::gemnar::{}::{}"
    cases: list[tuple[str, list[dict[str, Any]], set[str]]] = [
        ("lab", [{"urn": urn.format(machine, "gemnar-worker-4-machine"), "type": machine}],
         {"worker-4"}),
        ("lab", [{"urn": urn.format(machine, "gemnar-controller-machine"), "type": machine}],
         set()),
        # Another resource of the worker with the holder's type is not the holder.
        ("local", [{"urn": urn.format(machine, "gemnar-worker-1-app-push"), "type": machine}],
         set()),
        ("local", [{"urn": urn.format(machine, "gemnar-worker-12-processes"), "type": machine}],
         {"worker-12"}),
        # A Vultr instance the engine has no id for yet holds nothing.
        ("vultr", [{"urn": urn.format(HOLDERS["vultr"].type, "gemnar-worker-0"),
                    "type": HOLDERS["vultr"].type}], set()),
        ("vultr", [], set()),
    ]
    for platform, resources, expected in cases:
        assert held({"resources": resources}, platform) == expected, (platform, resources)


def test_find_table() -> None:
    w = lambda key: Node(key, "worker")  # noqa: E731
    cases: list[tuple[list[Node], set[str], list[Node]]] = [
        ([w("worker-2"), w("worker-0")], {"worker-0"}, [w("worker-2")]),
        ([w("worker-1")], {"worker-1"}, []),
        # The controller, or anything not known to be a worker, is never removed.
        ([Node("controller", "controller"), Node("x", "other")], set(), []),
        ([w("b"), w("a")], set(), [w("a"), w("b")]),
        ([], {"worker-0"}, []),
    ]
    for existing, holds, expected in cases:
        assert find(existing, holds) == expected, (existing, holds)


nodes = st.lists(st.builds(Node, st.sampled_from([f"k{i}" for i in range(8)]),
                           st.sampled_from(["worker", "controller", "other"])), max_size=10)
keys = st.sets(st.sampled_from([f"k{i}" for i in range(8)]))


@given(nodes, keys)
def test_find_takes_exactly_the_unheld_workers(existing: list[Node], holds: set[str]) -> None:
    found = find(existing, holds)
    assert all(n in existing and n.role == "worker" and n.key not in holds for n in found)
    assert {n for n in existing if n.role == "worker" and n.key not in holds} == set(found)
    # Removing them leaves nothing to remove: the sweep converges in one pass.
    assert find([n for n in existing if n not in found], holds) == []


@given(nodes, keys)
def test_a_held_or_non_worker_node_survives_every_sweep(
    existing: list[Node], holds: set[str]
) -> None:
    keep = [n for n in existing if n.key in holds or n.role != "worker"]
    assume(keep)
    assert not set(keep) & set(find(existing, holds))


class FakePlatform:
    """A platform adapter over a list; records the order of its calls."""

    def __init__(self, existing: list[Node], order: list[str]) -> None:
        self.existing = list(existing)
        self.order = order

    def nodes(self) -> list[Node]:
        self.order.append("list")
        return list(self.existing)

    def remove(self, node: Node) -> None:
        self.order.append(f"remove {node.key}")
        self.existing.remove(node)


def test_sweep_lists_before_it_reads_the_state_and_removes_only_strays() -> None:
    order: list[str] = []
    platform = FakePlatform([Node("worker-0", "worker"), Node("worker-2", "worker"),
                             Node("controller", "controller")], order)

    def deployment() -> dict[str, Any]:
        order.append("state")
        return graph("local", 2).deployment()

    assert strays("local", platform, deployment) == [Node("worker-2", "worker")]
    logged: list[str] = []
    assert sweep("local", platform, deployment, logged.append) == [Node("worker-2", "worker")]
    assert order == ["list", "state", "list", "state", "remove worker-2"]
    assert [n.key for n in platform.existing] == ["worker-0", "controller"]
    assert "worker-2" in logged[0] and "not in the stack's state" in logged[0]
    assert sweep("local", platform, deployment) == []


def test_the_platform_comes_from_the_keys_that_say_where_nodes_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.netns import LabNetwork
    from strays import lab
    from strays.local import LocalNodes
    from strays.vultr import VultrInstances

    # A count request set back below a raised minimum: the whole config is invalid for a
    # moment, the nodes' whereabouts are not.
    local = {"gemnar:platform": "local", "gemnar:localStateDir": str(tmp_path),
             "gemnar:workerCount": "2", "gemnar:minWorkers": "3"}
    assert platform_for("s1", local) == ("local", LocalNodes(tmp_path))
    name, default = platform_for("s1", {"gemnar:platform": "local"})
    assert isinstance(default, LocalNodes) and default.state_dir.parts[-3:] == (
        ".state", "local", "s1")
    name, machines = platform_for("s1", {"gemnar:platform": "lab", lab.TOKEN_KEY: "t",
                                         "gemnar:vpcSubnet": "10.30.0.0/24"})
    assert name == "lab" and isinstance(machines, lab.LabMachines)
    assert machines.url == lab.agent.url(LabNetwork(stack="s1", vpc_subnet="10.30.0.0/24"))
    with pytest.raises(RuntimeError, match="labHypervisorToken"):
        platform_for("s1", {"gemnar:platform": "lab"})
    monkeypatch.delenv("VULTR_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="apiKey"):
        platform_for("prod", {})
    monkeypatch.setenv("VULTR_API_KEY", "from-the-scaler-unit")
    name, vultr = platform_for("prod", {})
    assert name == "vultr" and isinstance(vultr, VultrInstances)
    assert vultr.http.headers["Authorization"] == "Bearer from-the-scaler-unit"
    with pytest.raises(ValueError, match="accepted: one of vultr, local, lab"):
        platform_for("s1", {"gemnar:platform": "moon"})
