"""Helpers for Pulumi property values as decoded by `pulumi.runtime.rpc.deserialize_properties`.

Secrets arrive as `{SIG: SECRET_SIG, "value": ...}` dictionaries and unknowns (preview only) as
`pulumi.output.Unknown` instances or the raw UNKNOWN sentinel string. These helpers unwrap,
detect and re-wrap them without caring where in a value they sit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi.output import Unknown
from pulumi.runtime import rpc

PropertyMap = dict[str, Any]


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
