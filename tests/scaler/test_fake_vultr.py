"""The fake Vultr plugin's answers (tests/support/fake_vultr/resources.py): a table."""

from __future__ import annotations

import pytest
from pulumi.runtime import rpc

from tests.support.fake_vultr.resources import INSTANCE, RESERVED_IP, created, diff

URN = "urn:pulumi:prod::gemnar::gemnar:infra:WorkerPool$vultr:index/instance:Instance::w"


def test_a_create_is_deterministic_and_derived_from_the_inputs() -> None:
    inputs = {"hostname": "worker-2", "region": "ams"}
    first, again = created(INSTANCE, URN, inputs, False), created(INSTANCE, URN, inputs, False)
    assert first == again
    assert first.outputs["internalIp"] == "10.20.0.12"
    other = created(INSTANCE, URN, {**inputs, "plan": "vc2-2c-4gb"}, False)
    assert other.id != first.id
    assert created(RESERVED_IP, URN, {}, False).outputs["subnetSize"] == 32


def test_in_preview_the_computed_outputs_are_unknown() -> None:
    answer = created(INSTANCE, URN, {"hostname": "worker-0"}, True)
    assert answer.id == ""
    assert answer.outputs["internalIp"] == rpc.UNKNOWN
    assert answer.outputs["hostname"] == "worker-0"


@pytest.mark.parametrize(("olds", "news", "changed", "replaces"), [
    ({"plan": "a", "osId": 2136}, {"plan": "a", "osId": 2136.0}, (), ()),
    ({"plan": "a"}, {"plan": "b"}, ("plan",), ()),
    ({"userData": "x", "tags": ["a"]}, {"userData": "y", "tags": ["b"]},
     ("tags", "userData"), ("userData",)),
    ({"hostname": "w"}, {"hostname": rpc.UNKNOWN}, ("hostname",), ("hostname",)),
])
def test_an_instance_diff_replaces_only_on_force_new_fields(
    olds: dict[str, object], news: dict[str, object], changed: tuple[str, ...],
    replaces: tuple[str, ...],
) -> None:
    result = diff(INSTANCE, olds, news)
    assert (result.changed, result.replaces) == (changed, replaces)
