"""The platform adapters: local nodes with real daemons, lab machine directories, and Vultr's
API (its list and delete calls, answered by a fake of the API's v2 shape)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from components.lab_nodes import agent_delete_command
from lab import agent
from lab.netns import LabNetwork
from localnode.supervise import alive, read_pid, start_detached, stop_pidfile
from strays.core import Node
from strays.lab import machines as lab_machines
from strays.local import LocalNodes
from strays.sweep import sweep
from strays.vultr import VultrInstances, client, stack_tag
from tests.scaler.program_graph import graph

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_local_nodes_are_the_ones_with_live_daemons_and_removal_stops_them(
    tmp_path: Path,
) -> None:
    nodes = tmp_path / "nodes"
    app = nodes / "worker-2" / "run" / "supervised" / "uvicorn.pid"
    sshd = nodes / "worker-2" / "run" / "sshd.pid"
    controller = nodes / "controller" / "run" / "supervised" / "redis.pid"
    # A node stopped cleanly (or whose daemons died) leaves files but no process.
    (nodes / "worker-1" / "run").mkdir(parents=True)
    (nodes / "worker-1" / "run" / "sshd.pid").write_text(f"{2**30}\n")
    started = [start_detached(SLEEPER, pidfile, tmp_path / "log", restart=restart)
               for pidfile, restart in ((app, True), (sshd, False), (controller, False))]
    try:
        local = LocalNodes(tmp_path)
        assert local.nodes() == [Node("controller", "controller", "redis.pid"),
                                 Node("worker-2", "worker", "uvicorn.pid, sshd.pid")]
        local.remove(Node("worker-2", "worker"))
        assert not alive(started[0]) and not alive(started[1])
        assert alive(started[2]), "another node's daemon"
        assert local.nodes() == [Node("controller", "controller", "redis.pid")]
    finally:
        for pidfile in (app, sshd, controller):
            stop_pidfile(pidfile)
    assert read_pid(controller) is None


def test_lab_machines_are_what_the_agent_lists_and_removal_is_its_delete() -> None:
    # The agent's API (lab/agent.py) as far as the adapter uses it; tests/lab/test_agent.py
    # calls the real agent's list.
    net = LabNetwork(stack="lab1", vpc_subnet="10.99.0.0/24")
    machines = ["controller", "worker-0", "worker-3"]
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url}")
        if request.headers.get("Authorization") != "Bearer t0ken":
            return httpx.Response(401, json={"error": "bad token"})
        if request.method == "GET":
            return httpx.Response(200, json={"machines": [{"name": m} for m in machines]})
        machines.remove(request.url.path.rsplit("/", 1)[1])
        return httpx.Response(200, json={"deleted": request.url.path.rsplit("/", 1)[1]})

    lab = lab_machines(net, "t0ken", httpx.MockTransport(answer))
    assert lab.nodes() == [Node("controller", "controller"), Node("worker-0", "worker"),
                           Node("worker-3", "worker")]
    # The collection's URL exactly: the agent answers 404 to /v1/machines/ (a trailing slash,
    # which httpx's base_url would add; every scaler tick on the lab then missed its strays).
    assert calls == [f"GET {agent.url(net)}"]
    lab.remove(Node("worker-3", "worker"))
    assert machines == ["controller", "worker-0"]
    # Exactly the URL the program's delete command calls (components.lab_nodes).
    assert calls[-1] == f"DELETE {agent.url(net)}/worker-3"
    assert f"{agent.url(net)}/worker-3" in agent_delete_command(net, "worker-3")
    wrong = lab_machines(net, "nope", httpx.MockTransport(answer))
    with pytest.raises(httpx.HTTPStatusError):
        wrong.nodes()


class FakeVultrApi:
    """Vultr API v2's instance list and delete, as far as the adapter uses them: ``tag`` and
    ``per_page`` filters, cursor pages (``meta.links.next``), bearer-token auth, 204 on
    delete and 404 for an unknown instance."""

    def __init__(self, key: str, instances: list[dict[str, Any]]) -> None:
        self.key = key
        self.instances = instances
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(f"{request.method} {request.url.path}")
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return httpx.Response(401, json={"error": "Invalid API token."})
        if request.method == "GET" and request.url.path == "/v2/instances":
            tag = request.url.params.get("tag")
            chosen = [i for i in self.instances if tag is None or tag in i["tags"]]
            start = int(request.url.params.get("cursor") or 0)
            size = int(request.url.params.get("per_page") or 100)
            page = chosen[start:start + size]
            following = str(start + size) if start + size < len(chosen) else ""
            return httpx.Response(200, json={
                "instances": page,
                "meta": {"total": len(chosen), "links": {"next": following, "prev": ""}}})
        if request.method == "DELETE" and request.url.path.startswith("/v2/instances/"):
            found = [i for i in self.instances if i["id"] == request.url.path.rsplit("/", 1)[1]]
            if not found:
                return httpx.Response(404, json={"error": "Invalid instance-id."})
            self.instances.remove(found[0])
            return httpx.Response(204)
        return httpx.Response(404, json={"error": "not found"})


def instance(id_: str, label: str, role: str, stack: str) -> dict[str, Any]:
    return {"id": id_, "label": label, "tags": ["gemnar", f"gemnar-{role}", stack_tag(stack)],
            "region": "ams", "status": "active"}


def test_vultr_lists_only_the_stack_s_tagged_instances_across_pages() -> None:
    fleet = [instance(f"w{i}", f"gemnar-worker-{i}", "worker", "prod") for i in range(250)]
    fleet += [instance("c", "gemnar-controller", "controller", "prod"),
              instance("s0", "gemnar-worker-0", "worker", "staging"),
              {"id": "u", "label": "gemnar-worker-9", "tags": ["gemnar", "gemnar-worker"]},
              {"id": "x", "label": "gemnar-worker-x", "tags": [stack_tag("prod")]}]
    api = FakeVultrApi("key", fleet)
    vultr = VultrInstances("prod", client("key", httpx.MockTransport(api)))
    found = vultr.nodes()
    assert len(api.calls) == 3, "three pages of 100"
    assert {n.key for n in found if n.role == "worker"} == {f"w{i}" for i in range(250)}
    # Tagged with the stack but not a worker by both its role tag and label: never a stray.
    assert {n.key: n.role for n in found if not n.key.startswith("w")} == {
        "c": "other", "x": "other"}
    vultr.remove(Node("w7", "worker"))
    vultr.remove(Node("w7", "worker"))  # already gone: fine
    assert "w7" not in {i["id"] for i in api.instances} and len(api.instances) == 253
    assert json.dumps(api.calls[-2:]) == '["DELETE /v2/instances/w7", "DELETE /v2/instances/w7"]'


def test_a_bad_vultr_key_is_an_error_not_an_empty_list() -> None:
    api = FakeVultrApi("key", [instance("w0", "gemnar-worker-0", "worker", "prod")])
    vultr = VultrInstances("prod", client("wrong", httpx.MockTransport(api)))
    try:
        vultr.nodes()
    except httpx.HTTPStatusError as error:
        assert error.response.status_code == 401
    else:
        raise AssertionError("a listing that failed must not read as 'no instances'")


def test_prod_under_mocks_a_killed_create_s_instance_is_deleted_and_nothing_else() -> None:
    # The state of a prod stack at two workers, as the program declares it (under mocks), with
    # the ids the engine recorded; the account also holds worker-2, whose create was killed
    # before the state recorded it, and another stack's worker.
    deployment = {"resources": [
        {**r, "id": "id-" + r["urn"].rsplit("::", 1)[1]}
        for r in graph("vultr", 2).deployment()["resources"]]}
    fleet = [instance("id-gemnar-worker-0", "gemnar-worker-0", "worker", "prod"),
             instance("id-gemnar-worker-1", "gemnar-worker-1", "worker", "prod"),
             instance("id-gemnar-controller-instance", "gemnar-controller", "controller",
                      "prod"),
             instance("half-made", "gemnar-worker-2", "worker", "prod"),
             instance("staging-2", "gemnar-worker-2", "worker", "staging")]
    api = FakeVultrApi("key", fleet)
    vultr = VultrInstances("prod", client("key", httpx.MockTransport(api)))

    removed = sweep("vultr", vultr, lambda: deployment)

    assert [n.key for n in removed] == ["half-made"]
    left = {i["id"] for i in api.instances}
    assert left == {"id-gemnar-worker-0", "id-gemnar-worker-1",
                    "id-gemnar-controller-instance", "staging-2"}
    # Workers of the stack on the account = the configured count.
    assert len([n for n in vultr.nodes() if n.role == "worker"]) == 2
    assert sweep("vultr", vultr, lambda: deployment) == []
