"""Unknown inputs during preview, as the engine sends them, through the stand-in's gRPC methods.

The engine marshals a computed value as the UNKNOWN string, inside a secret when the output is
secret (pulumi sdk go/common/resource/plugin/rpc.go `MarshalPropertyValue`): a new worker's
`connection` (always secret in the SDK) is `{SIG: SECRET, value: UNKNOWN}` or a secret object
whose `host` is UNKNOWN. A provider must let them through Check, Diff and a preview Create or
Update, and validate only known values.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc
import pytest
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2

from tools.command_provider import REMOTE_COMMAND
from tools.command_provider.props import decode_properties
from tools.command_provider.server import CommandProvider

URN = f"urn:pulumi:local::gemnar::{REMOTE_COMMAND}::worker-3-ready"
U = rpc.UNKNOWN


def secret(value: Any) -> dict[str, Any]:
    return {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": value}


def struct(props: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(props)
    return result


class Aborted(Exception):
    pass


class Context:
    """The part of grpc.ServicerContext the provider uses on failure."""

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise Aborted(f"{code}: {details}")


CONTEXT: Any = Context()

UNKNOWN_INPUTS: list[dict[str, Any]] = [
    {"create": "true", "connection": secret(U)},
    {"create": U, "connection": secret({"host": U, "privateKey": "k", "proxy": U})},
    {
        "create": "true",
        "connection": secret({"host": U, "privateKey": "k", "proxy": {"host": U}}),
        "environment": {"A": secret(U), "B": U},
        "triggers": [U, "x"],
        "stdin": secret(U),
        "logging": U,
    },
    {"create": "true", "connection": U, "environment": U, "triggers": U},
]


def provider() -> CommandProvider:
    return CommandProvider(engine_address=None)


def checked(news: dict[str, Any]) -> provider_pb2.CheckResponse:
    request = provider_pb2.CheckRequest(urn=URN, type=REMOTE_COMMAND, news=struct(news))
    return provider().Check(request, CONTEXT)


@pytest.mark.parametrize("news", UNKNOWN_INPUTS)
def test_check_passes_unknowns_through(news: dict[str, Any]) -> None:
    response = checked(news)
    assert list(response.failures) == []
    inputs = decode_properties(response.inputs)
    connection = inputs["connection"]
    inner = connection["value"] if rpc.is_rpc_secret(connection) else connection
    if inner == U:
        assert news["connection"] in (U, secret(U))
    else:
        # A known object gets its defaults; its unknown fields stay unknown.
        assert inner["host"] == U and inner["port"] == 22 and inner["user"] == "root"
    for key in ("environment", "triggers", "stdin", "logging", "create"):
        if key in news:
            assert decode_properties(struct({key: news[key]}))[key] == inputs[key]


def test_decode_keeps_unknowns_inside_secrets() -> None:
    props = decode_properties(struct(UNKNOWN_INPUTS[2]))
    assert props["connection"] == secret({"host": U, "privateKey": "k", "proxy": {"host": U}})
    # As the SDK, a map holding a secret becomes one secret around plain values.
    assert props["environment"] == secret({"A": U, "B": U})
    assert props["stdin"] == secret(U) and props["triggers"] == [U, "x"]


@pytest.mark.parametrize(
    ("news", "failed"),
    [
        ({"connection": secret("not-an-object")}, "connection"),
        ({"connection": secret({"privateKey": "k"})}, "connection.host"),
        ({"connection": secret({"host": "h", "proxy": "x"})}, "connection.proxy"),
        ({"connection": {"host": "h"}, "environment": {"A": 1}}, "environment.A"),
        ({"connection": {"host": "h"}, "create": 3}, "create"),
        ({"create": "true"}, "connection"),
    ],
)
def test_known_values_are_still_validated(news: dict[str, Any], failed: str) -> None:
    assert [f.property for f in checked(news).failures] == [failed]


def test_diff_with_unknowns_is_a_change_and_unknown_triggers_replace() -> None:
    olds = struct({"create": "true", "connection": secret({"host": "h"}), "triggers": ["a"]})
    news = struct({"create": "true", "connection": secret(U), "triggers": [U]})
    request = provider_pb2.DiffRequest(urn=URN, type=REMOTE_COMMAND, olds=olds, news=news)
    response = provider().Diff(request, CONTEXT)
    assert response.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert set(response.diffs) == {"connection", "triggers"}
    assert list(response.replaces) == ["triggers"]


@pytest.mark.parametrize("news", UNKNOWN_INPUTS)
def test_preview_create_and_update_report_unknown_outputs(news: dict[str, Any]) -> None:
    checked_inputs = checked(news).inputs
    create = provider().Create(
        provider_pb2.CreateRequest(
            urn=URN, type=REMOTE_COMMAND, properties=checked_inputs, preview=True
        ),
        CONTEXT,
    )
    state = decode_properties(create.properties)
    assert create.id == "" and state["stdout"] == U and state["stderr"] == U
    assert {k: v for k, v in state.items() if k not in ("stdout", "stderr")} == (
        decode_properties(checked_inputs)
    )
    olds = struct({"create": "old", "connection": secret({"host": "h"}), "stdout": "o"})
    update = provider().Update(
        provider_pb2.UpdateRequest(
            urn=URN, type=REMOTE_COMMAND, olds=olds, news=checked_inputs, preview=True
        ),
        CONTEXT,
    )
    assert decode_properties(update.properties)["stdout"] == U


# Values the engine sends with no unknowns: scalars, lists, maps, secrets anywhere.
LEAVES = st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=8)
VALUES = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=3)
        | inner.map(secret)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=5), VALUES, max_size=4))
def test_decode_matches_the_sdk_when_nothing_is_unknown(props: dict[str, Any]) -> None:
    wire = struct(props)
    assert decode_properties(wire) == rpc.deserialize_properties(wire, keep_unknowns=True)


def test_a_secret_null_stays_a_secret_null() -> None:
    # An earlier decoder (secrets swapped for marker objects) made it `{}`: a map, which
    # Check then rejected as a non-string `stdin`.
    props = decode_properties(struct({"stdin": secret(None), "create": "true"}))
    assert props["stdin"] == secret(None)
    assert [
        f.property for f in checked({"stdin": secret(None), "connection": {"host": "h"}}).failures
    ] == []
