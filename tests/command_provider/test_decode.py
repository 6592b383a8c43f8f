"""Decoding properties: unknowns inside secrets survive (preview of a secret connection)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import struct_pb2
from pulumi.runtime import rpc

from tools.command_provider import REMOTE_COMMAND
from tools.command_provider.check import check
from tools.command_provider.props import is_unknown, reveal
from tools.command_provider.server import decode

SIG, SECRET = rpc._special_sig_key, rpc._special_secret_sig


def secret(value: Any) -> dict[str, Any]:
    return {SIG: SECRET, "value": value}


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(value)
    return result


def test_a_secret_connection_unknown_in_preview_stays_unknown_and_passes_check() -> None:
    # What the engine sends for a new worker's connection: secret (the key) and unknown (the
    # host key is read by a command that has not run). The SDK alone decodes it to None.
    news = decode(struct({"connection": secret(rpc.UNKNOWN), "create": "true"}))
    assert rpc.is_rpc_secret(news["connection"])
    assert is_unknown(reveal(news["connection"]))
    assert check(REMOTE_COMMAND, news).failures == ()
    nested = decode(struct({"connection": secret({"host": "h", "hostKey": rpc.UNKNOWN})}))
    assert is_unknown(reveal(nested["connection"])["hostKey"])


@pytest.mark.parametrize("value", [
    {"a": {"b": secret("k"), "c": 1}, "l": [1, secret("z")], "n": 2.5, "nul": None},
    {"connection": secret({"host": "h", "port": 22, "proxy": {"host": "j"}})},
    {"environment": {"A": "1"}, "triggers": [secret(["x"]), "y"]},
])
def test_known_values_decode_as_the_sdk_decodes_them(value: dict[str, Any]) -> None:
    assert decode(struct(value)) == dict(rpc.deserialize_properties(struct(value),
                                                                    keep_unknowns=True))
