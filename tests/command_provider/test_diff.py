"""Table tests for the pure diff logic of the command provider stand-in.

Upstream's diff is pulumi-go-provider v1.3.0 infer/resource.go `diff` (old inputs against new
inputs through the engine's ObjectDiff, `triggers` replace-on-change from pulumi-command v1.2.1
provider/pkg/provider/common/inputs.go); secretness compares as in pulumi sdk
go/common/resource/properties_diff.go `DeepEquals`.
"""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.output import Unknown
from pulumi.runtime import rpc

from tools.command_provider.diff import Kind, diff

SECRET = rpc.wrap_rpc_secret
BASE: dict[str, Any] = {"create": "echo hi", "logging": "stdoutAndStderr"}
CONN = {"host": "10.0.0.1", "port": 22, "user": "root", "dialErrorLimit": 10}

CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Kind]]] = [
    ("identical", BASE, dict(BASE), {}),
    ("outputs ignored", {**BASE, "stdout": "a", "stderr": "b"}, dict(BASE), {}),
    ("create changed", BASE, {**BASE, "create": "echo bye"}, {"create": Kind.UPDATE}),
    ("update added", BASE, {**BASE, "update": "echo u"}, {"update": Kind.ADD}),
    ("delete removed", {**BASE, "delete": "rm x"}, BASE, {"delete": Kind.DELETE}),
    (
        "triggers changed",
        {**BASE, "triggers": ["a"]},
        {**BASE, "triggers": ["b"]},
        {"triggers": Kind.UPDATE_REPLACE},
    ),
    ("triggers added", BASE, {**BASE, "triggers": [1]}, {"triggers": Kind.ADD_REPLACE}),
    (
        "triggers removed",
        {**BASE, "triggers": [1]},
        BASE,
        {"triggers": Kind.DELETE_REPLACE},
    ),
    ("triggers same", {**BASE, "triggers": [1, "x"]}, {**BASE, "triggers": [1.0, "x"]}, {}),
    (
        "environment value",
        {**BASE, "environment": {"A": "1"}},
        {**BASE, "environment": {"A": "2"}},
        {"environment": Kind.UPDATE},
    ),
    # DeepEquals: a secret never equals a plain value, even the same one.
    (
        "secretness only",
        {**BASE, "stdin": "s"},
        {**BASE, "stdin": SECRET("s")},
        {"stdin": Kind.UPDATE},
    ),
    # A state written by a stand-in that defaulted `logging` differs from upstream's inputs.
    ("logging default dropped", BASE, {"create": "echo hi"}, {"logging": Kind.DELETE}),
    (
        "secret value changed",
        {**BASE, "stdin": SECRET("s")},
        {**BASE, "stdin": SECRET("t")},
        {"stdin": Kind.UPDATE},
    ),
    (
        "port int vs float",
        {**BASE, "connection": SECRET(CONN)},
        {**BASE, "connection": SECRET({**CONN, "port": 22.0})},
        {},
    ),
    (
        "connection host",
        {**BASE, "connection": SECRET(CONN)},
        {**BASE, "connection": SECRET({**CONN, "host": "10.0.0.2"})},
        {"connection": Kind.UPDATE},
    ),
    ("unknown create", BASE, {**BASE, "create": Unknown()}, {"create": Kind.UPDATE}),
    (
        "unknown trigger",
        {**BASE, "triggers": ["a"]},
        {**BASE, "triggers": [Unknown()]},
        {"triggers": Kind.UPDATE_REPLACE},
    ),
    (
        "bool is not int",
        {**BASE, "addPreviousOutputInEnv": True},
        {**BASE, "addPreviousOutputInEnv": 1},
        {"addPreviousOutputInEnv": Kind.UPDATE},
    ),
    ("internal keys skipped", {**BASE, "__meta": 1}, {**BASE, "__meta": 2}, {}),
]


@pytest.mark.parametrize(
    ("olds", "news", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_diff_table(olds: dict[str, Any], news: dict[str, Any], expected: dict[str, Kind]) -> None:
    result = diff(olds, news)
    assert dict(result.detailed) == expected
    assert result.changes == bool(expected)
    replace_kinds = (Kind.ADD_REPLACE, Kind.DELETE_REPLACE, Kind.UPDATE_REPLACE)
    assert result.replaces == tuple(sorted(k for k, v in expected.items() if v in replace_kinds))


def test_ignore_changes_drops_property() -> None:
    result = diff({**BASE, "triggers": [1]}, {**BASE, "triggers": [2]}, ignore_changes=["triggers"])
    assert not result.changes


def test_kind_values_match_protocol() -> None:
    from pulumi.runtime.proto import provider_pb2

    for kind in Kind:
        assert provider_pb2.PropertyDiff.Kind.Value(kind.name) == kind.value
