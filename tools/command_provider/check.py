"""Check: validate a Command's inputs and fill in the defaults the upstream schema declares.

Upstream's Check (pulumi-go-provider v1.3.0 infer/resource.go `defaultCheck`) writes only the
defaults set with `Annotator.SetDefault`: the connection's and proxy's `user`, `port`,
`dialErrorLimit` and `perDialTimeout` (pulumi-command v1.2.1 provider/pkg/provider/remote/
connection.go, proxyConnection.go). `logging` has no declared default, so nothing is written
for it: a stand-in that wrote one would show a diff on every command of a stack that the
upstream plugin touched last, and re-run them all.

Pure. Unknown values (during preview) are accepted as-is; secret wrappers are kept around the
values they wrap, including the `connection` object the SDK always marks secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import LOCAL_COMMAND, REMOTE_COMMAND
from .props import PropertyMap, is_secret, is_unknown, make_secret, reveal

LOGGING_VALUES = ("stdout", "stderr", "stdoutAndStderr", "none")
CONNECTION_DEFAULTS: Mapping[str, Any] = {
    "port": 22,
    "user": "root",
    "dialErrorLimit": 10,
    "perDialTimeout": 15,
}
STRING_INPUTS = ("create", "update", "delete", "stdin", "dir")
# Inputs that upstream accepts but this stand-in cannot honour; failing Check beats silently
# ignoring them.
UNSUPPORTED_INPUTS: Mapping[str, tuple[str, ...]] = {
    LOCAL_COMMAND: ("assetPaths", "archivePaths"),
    REMOTE_COMMAND: (),
}


@dataclass(frozen=True)
class CheckResult:
    inputs: PropertyMap
    failures: tuple[CheckFailure, ...]


@dataclass(frozen=True)
class CheckFailure:
    property: str
    reason: str


def check(type_token: str, news: Mapping[str, Any]) -> CheckResult:
    if type_token not in (LOCAL_COMMAND, REMOTE_COMMAND):
        return CheckResult(dict(news), (CheckFailure("", f"unknown resource type {type_token}"),))
    inputs = dict(news)
    failures: list[CheckFailure] = []
    failures += _check_strings(inputs)
    failures += _check_logging(inputs.get("logging"))
    failures += _check_environment(inputs.get("environment"))
    for key in UNSUPPORTED_INPUTS[type_token]:
        if inputs.get(key) is not None:
            failures.append(CheckFailure(key, f"{key} is not supported by this provider stand-in"))
    if type_token == LOCAL_COMMAND:
        failures += _check_interpreter(inputs.get("interpreter"))
    else:
        connection = inputs.get("connection")
        if connection is None:
            failures.append(CheckFailure("connection", "missing required property 'connection'"))
        else:
            inputs["connection"] = _with_connection_defaults(connection, "connection", failures)
    return CheckResult(inputs, tuple(failures))


def _check_strings(inputs: Mapping[str, Any]) -> list[CheckFailure]:
    failures = []
    for key in STRING_INPUTS:
        value = reveal(inputs.get(key))
        if value is not None and not is_unknown(value) and not isinstance(value, str):
            failures.append(CheckFailure(key, f"{key} must be a string"))
    return failures


def _known(check: Callable[[Any], list[CheckFailure]]) -> Callable[[Any], list[CheckFailure]]:
    """``check`` applied to the revealed value; an absent or not yet known value passes."""

    def checked(value: Any) -> list[CheckFailure]:
        value = reveal(value)
        if value is None or is_unknown(value):
            return []
        return check(value)

    return checked


@_known
def _check_logging(value: Any) -> list[CheckFailure]:
    if value in LOGGING_VALUES:
        return []
    return [CheckFailure("logging", f"logging must be one of {', '.join(LOGGING_VALUES)}")]


@_known
def _check_environment(value: Any) -> list[CheckFailure]:
    if not isinstance(value, Mapping):
        return [CheckFailure("environment", "environment must be a map of strings")]
    return [
        CheckFailure(f"environment.{k}", "environment values must be strings")
        for k, v in value.items()
        if not isinstance(v, str) and not is_unknown(v)
    ]


@_known
def _check_interpreter(value: Any) -> list[CheckFailure]:
    # An empty list is accepted and means the default interpreter, as upstream.
    if isinstance(value, list) and all(isinstance(v, str) or is_unknown(v) for v in value):
        return []
    return [CheckFailure("interpreter", "interpreter must be a list of strings")]


def _with_connection_defaults(value: Any, path: str, failures: list[CheckFailure]) -> Any:
    if is_secret(value):
        return make_secret(_with_connection_defaults(value["value"], path, failures))
    if is_unknown(value):
        return value
    if not isinstance(value, Mapping):
        failures.append(CheckFailure(path, f"{path} must be an object"))
        return value
    result = dict(value)
    for key, default in CONNECTION_DEFAULTS.items():
        if result.get(key) is None:
            result[key] = default
    host = result.get("host")
    if host is None or (not is_unknown(host) and not reveal(host)):
        failures.append(CheckFailure(f"{path}.host", "missing required property 'host'"))
    if result.get("proxy") is not None:
        result["proxy"] = _with_connection_defaults(result["proxy"], f"{path}.proxy", failures)
    return result
