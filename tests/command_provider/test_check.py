"""Tests for Check: defaults, validation failures, secrets kept around the connection.

Upstream's defaults are only those set with `Annotator.SetDefault` (pulumi-command v1.2.1
provider/pkg/provider/remote/connection.go, proxyConnection.go), applied by pulumi-go-provider
v1.3.0 infer/resource.go `defaultCheck`.
"""

from __future__ import annotations

from pulumi.output import Unknown
from pulumi.runtime import rpc

from tools.command_provider import LOCAL_COMMAND, REMOTE_COMMAND
from tools.command_provider.check import check


def test_no_default_written_for_logging() -> None:
    # remote/command.go and local/command.go declare no default for `logging`.
    for type_token in (LOCAL_COMMAND, REMOTE_COMMAND):
        news = {"create": "true", "connection": {"host": "h"}}
        if type_token == LOCAL_COMMAND:
            news = {"create": "true"}
        result = check(type_token, news)
        assert result.failures == ()
        assert "logging" not in result.inputs


def test_remote_connection_defaults_inside_secret() -> None:
    news = {"create": "true", "connection": rpc.wrap_rpc_secret({"host": "h"})}
    result = check(REMOTE_COMMAND, news)
    assert result.failures == ()
    connection = result.inputs["connection"]
    assert rpc.is_rpc_secret(connection)
    assert connection["value"] == {
        "host": "h",
        "port": 22,
        "user": "root",
        "dialErrorLimit": 10,
        "perDialTimeout": 15,
    }


def test_proxy_gets_defaults() -> None:
    news = {"connection": {"host": "h", "proxy": {"host": "jump", "user": "ops"}}}
    proxy = check(REMOTE_COMMAND, news).inputs["connection"]["proxy"]
    assert proxy["port"] == 22 and proxy["user"] == "ops" and proxy["perDialTimeout"] == 15


def test_remote_requires_connection_and_host() -> None:
    assert [f.property for f in check(REMOTE_COMMAND, {}).failures] == ["connection"]
    failures = check(REMOTE_COMMAND, {"connection": {"port": 22}}).failures
    assert [f.property for f in failures] == ["connection.host"]


def test_unknowns_pass_during_preview() -> None:
    news = {"create": Unknown(), "connection": Unknown(), "environment": {"A": Unknown()}}
    assert check(REMOTE_COMMAND, news).failures == ()


def test_invalid_values_fail() -> None:
    news = {"create": 3, "logging": "loud", "environment": {"A": 1}, "interpreter": "sh"}
    properties = sorted(f.property for f in check(LOCAL_COMMAND, news).failures)
    assert properties == ["create", "environment.A", "interpreter", "logging"]


def test_empty_interpreter_means_default() -> None:
    # local/commandOutputs.go: `len(*in.Interpreter) > 0` else /bin/sh -c.
    assert check(LOCAL_COMMAND, {"create": "true", "interpreter": []}).failures == ()


def test_unsupported_asset_paths_fail() -> None:
    failures = check(LOCAL_COMMAND, {"create": "true", "assetPaths": ["*"]}).failures
    assert [f.property for f in failures] == ["assetPaths"]


def test_unknown_type_fails() -> None:
    assert check("command:remote:CopyToRemote", {}).failures
