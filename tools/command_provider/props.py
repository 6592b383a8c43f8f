"""Decoding a request's Pulumi property values, and helpers for secrets and unknowns in them.

Secrets arrive as `{SIG: SECRET_SIG, "value": ...}` dictionaries and unknowns (preview only) as
the raw UNKNOWN sentinel string (or `pulumi.output.Unknown` instances in values built by hand).
These helpers decode, unwrap, detect and re-wrap them without caring where in a value they sit.

`decode_properties` replaces the SDK's `rpc.deserialize_properties`, which loses unknowns inside
a secret (pulumi 3.272 deserializes a secret's value without `keep_unknowns`, so an unknown
becomes `None` and is dropped): during a preview the still-unknown `connection` of a new worker,
which the SDK always marks secret, arrived as an empty secret and failed Check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2
from pulumi.output import Unknown
from pulumi.runtime import rpc

PropertyMap = dict[str, Any]


SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def decode_properties(struct: struct_pb2.Struct) -> PropertyMap:
    """A request's properties, unknowns kept at any depth (secret or not) as the UNKNOWN string.

    Otherwise as the SDK: a `null` is an absent key, and a map or list holding a secret becomes
    one secret around the plain values (the shape the stand-in's state has always had). Other
    signatures (assets, archives, resource references) are left to the SDK.
    """
    # Top-level properties keep their own wrappers: secretness is pushed up only inside values.
    return _fields(struct)


def _fields(struct: struct_pb2.Struct) -> PropertyMap:
    fields = {k: _decode(v) for k, v in struct.items()}
    return {k: v for k, v in fields.items() if v is not None}


def _decode(value: Any) -> Any:
    if isinstance(value, struct_pb2.ListValue):
        items = [_decode(v) for v in value]
        if any(is_secret(v) for v in items):
            return make_secret([unwrap(v) for v in items])
        return items
    if not isinstance(value, struct_pb2.Struct):
        return value
    if SIG_KEY in value:
        if value[SIG_KEY] == SECRET_SIG:
            return make_secret(_decode(value["value"]))
        return rpc.deserialize_properties(value, keep_unknowns=True)
    fields = _fields(value)
    if any(is_secret(v) for v in fields.values()):
        return make_secret({k: unwrap(v) for k, v in fields.items()})
    return fields


def is_secret(value: Any) -> bool:
    return rpc.is_rpc_secret(value)


def make_secret(value: Any) -> Any:
    return rpc.wrap_rpc_secret(value)


def is_unknown(value: Any) -> bool:
    return isinstance(value, Unknown) or value == rpc.UNKNOWN


def unwrap(value: Any) -> Any:
    """The value inside one secret wrapper (or the value itself)."""
    return rpc.unwrap_rpc_secret(value) if is_secret(value) else value


def reveal(value: Any) -> Any:
    """The value with every secret wrapper removed, at any depth."""
    if is_secret(value):
        return reveal(rpc.unwrap_rpc_secret(value))
    if isinstance(value, Mapping):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [reveal(v) for v in value]
    return value


def contains_secret(value: Any) -> bool:
    if is_secret(value):
        return True
    if isinstance(value, Mapping):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_secret(v) for v in value)
    return False


def contains_unknown(value: Any) -> bool:
    if is_unknown(value):
        return True
    if is_secret(value):
        return contains_unknown(rpc.unwrap_rpc_secret(value))
    if isinstance(value, Mapping):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_unknown(v) for v in value)
    return False


def secret_if(value: Any, secret: bool) -> Any:
    return make_secret(value) if secret and not is_secret(value) else value


def optional_str(props: Mapping[str, Any], key: str) -> str | None:
    value = reveal(props.get(key))
    return None if value is None else str(value)


def flag(props: Mapping[str, Any], key: str, default: bool) -> bool:
    value = reveal(props.get(key))
    return default if value is None else bool(value)
