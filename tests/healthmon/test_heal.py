"""The self-healing decision: replace one worker unhealthy past the bound, brake on many."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from healthmon.heal import (
    HealPolicy,
    MemberStatus,
    heal_once,
    node_urn,
    plan,
    read_status,
    worker_name_of,
)

POLICY = HealPolicy(bound_s=300, brake_fraction=0.5)
NOW = 10_000.0


def member(i: int, down_for: float | None = None) -> MemberStatus:
    return MemberStatus(f"10.20.0.{10 + i}:8000", down_for is None,
                        None if down_for is None else NOW - down_for)


@pytest.mark.parametrize(
    ("members", "fail_open", "replace", "reason_starts"),
    [
        ([], False, None, "no members"),
        ([member(0), member(1)], False, None, "every member healthy"),
        ([member(0), member(1, down_for=299)], False, None, "1 unhealthy, none for 300s"),
        ([member(0), member(1, down_for=300)], False, "10.20.0.11:8000", "10.20.0.11:8000"),
        # The one down longest goes first; one per run.
        ([member(0), member(1, 400), member(2, 900), member(3), member(4)], False,
         "10.20.0.12:8000", "10.20.0.12:8000 unhealthy for 900s"),
        # Most members down: a shared fault. Brake.
        ([member(0, 900), member(1, 900), member(2)], False, None, "brake: 2 of 3"),
        ([member(0, 900), member(1, 900)], True, None, "brake: 2 of 2"),
        ([member(0, 900)], True, None, "brake: 1 of 1"),
    ],
)
def test_plan(
    members: list[MemberStatus], fail_open: bool, replace: str | None, reason_starts: str
) -> None:
    decision = plan(members, fail_open, NOW, POLICY)
    assert decision.replace == replace
    assert decision.reason.startswith(reason_starts), decision.reason


downs = st.lists(st.one_of(st.none(), st.floats(0, 5000)), min_size=1, max_size=12)


@given(downs)
def test_never_replaces_when_most_are_unhealthy(down_for: list[float | None]) -> None:
    members = [member(i, d) for i, d in enumerate(down_for)]
    sick = sum(1 for d in down_for if d is not None)
    assume(sick * 2 > len(members))
    assert plan(members, False, NOW, POLICY).replace is None


@given(downs)
def test_replaces_only_a_member_unhealthy_past_the_bound(down_for: list[float | None]) -> None:
    members = [member(i, d) for i, d in enumerate(down_for)]
    decision = plan(members, False, NOW, POLICY)
    if decision.replace is not None:
        chosen = next(m for m in members if m.address == decision.replace)
        assert not chosen.healthy
        assert chosen.down_since is not None and NOW - chosen.down_since >= POLICY.bound_s


def test_status_file_as_the_monitor_writes_it(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    path.write_text(json.dumps({"fail_open": False, "members": [
        {"address": "10.20.0.10:8000", "healthy": True, "down_since": None, "last_error": None},
        {"address": "10.20.0.11:8000", "healthy": False, "down_since": 42.0,
         "last_error": "HTTP 503"}]}))
    members, fail_open = read_status(path)
    assert members == [MemberStatus("10.20.0.10:8000", True, None),
                       MemberStatus("10.20.0.11:8000", False, 42.0)]
    assert fail_open is False


DEPLOYMENT = {"resources": [
    {"urn": "urn:pulumi:s::gemnar::gemnar:infra:LocalNode::gemnar-worker-1",
     "type": "gemnar:infra:LocalNode"},
    {"urn": "urn:pulumi:s::gemnar::gemnar:infra:LocalNode$command:local:Command::"
            "gemnar-worker-1-processes", "type": "command:local:Command"},
    {"urn": "urn:pulumi:s::gemnar::gemnar:infra:WorkerPool$vultr:index/instance:Instance::"
            "gemnar-worker-2", "type": "vultr:index/instance:Instance"},
]}
OUTPUTS = {"workers": [{"name": "worker-1", "privateIp": "10.20.0.11"},
                       {"name": "worker-2", "privateIp": "10.20.0.12"}]}


def test_the_node_resource_is_found_on_each_platform() -> None:
    assert node_urn(DEPLOYMENT, "worker-1", ).endswith("::gemnar-worker-1-processes")  # type: ignore[union-attr]
    assert node_urn(DEPLOYMENT, "worker-2").endswith("Instance::gemnar-worker-2")  # type: ignore[union-attr]
    assert node_urn(DEPLOYMENT, "worker-3") is None
    assert worker_name_of(OUTPUTS, "10.20.0.12:8000") == "worker-2"


class RecordingStack:
    def __init__(self) -> None:
        self.ups: list[dict[str, object]] = []

    def outputs(self) -> Mapping[str, object]:
        return OUTPUTS

    def export_stack(self) -> object:
        return DEPLOYMENT

    def up(self, *, replace: list[str] | None = None, message: str | None = None,
           color: str | None = None) -> None:
        self.ups.append({"replace": replace, "message": message})


def test_heal_once_replaces_the_overdue_worker_and_nothing_under_the_brake(
    tmp_path: Path,
) -> None:
    path = tmp_path / "health.json"
    stack = RecordingStack()
    path.write_text(json.dumps({"fail_open": False, "members": [
        {"address": "10.20.0.11:8000", "healthy": True, "down_since": None},
        {"address": "10.20.0.12:8000", "healthy": False, "down_since": NOW - 301}]}))
    decision = heal_once(stack, path, POLICY, lambda: NOW)
    assert decision.replace == "10.20.0.12:8000"
    assert [u["replace"] for u in stack.ups] == [[DEPLOYMENT["resources"][2]["urn"]]]
    path.write_text(json.dumps({"fail_open": True, "members": [
        {"address": "10.20.0.11:8000", "healthy": False, "down_since": NOW - 900},
        {"address": "10.20.0.12:8000", "healthy": False, "down_since": NOW - 900}]}))
    assert heal_once(stack, path, POLICY, lambda: NOW).replace is None
    assert len(stack.ups) == 1
