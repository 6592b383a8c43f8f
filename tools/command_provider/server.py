"""The ResourceProvider gRPC service: decode requests, check, diff, run, encode replies."""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import traceback
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import grpc
import paramiko
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime.proto import engine_pb2, plugin_pb2, provider_pb2, provider_pb2_grpc

from . import LOCAL_COMMAND, PROVIDER_NAME, PROVIDER_VERSION, REMOTE_COMMAND
from .check import check
from .diff import diff
from .engine_log import EngineLog
from .execution import Cancelled, CancelRegistry, CommandFailed
from .lifecycle import Context, Runners, create, delete, update
from .props import PropertyMap, decode_properties

RESOURCE_TYPES = (LOCAL_COMMAND, REMOTE_COMMAND)
# Failures whose message is the whole story; anything else also gets its traceback.
EXPECTED_FAILURES = (
    CommandFailed,
    Cancelled,
    ConnectionError,
    OSError,
    paramiko.SSHException,
    ValueError,
)
DIAGNOSTICS: Mapping[str, tuple[Any, bool]] = {
    "warning": (engine_pb2.WARNING, False),
    "error": (engine_pb2.ERROR, False),
}
MINIMAL_SCHEMA = json.dumps(
    {
        "name": PROVIDER_NAME,
        "version": PROVIDER_VERSION,
        "description": "Python stand-in for pulumi-resource-command (local and remote Command)",
        "resources": {token: {"isComponent": False} for token in RESOURCE_TYPES},
    }
)

Reply = TypeVar("Reply")


def _aborting(
    method: Callable[[Any, Any, grpc.ServicerContext], Reply],
) -> Callable[[Any, Any, grpc.ServicerContext], Reply]:
    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Reply:
        try:
            return method(self, request, context)
        except EXPECTED_FAILURES as error:
            context.abort(grpc.StatusCode.UNKNOWN, str(error))
        except Exception:
            context.abort(grpc.StatusCode.UNKNOWN, traceback.format_exc())
        raise AssertionError("unreachable: context.abort raises")

    return wrapper


def decode(struct: struct_pb2.Struct | None) -> PropertyMap:
    """The properties as Python values, unknowns kept everywhere (see `props.decode_properties`)."""
    if struct is None:
        return {}
    return decode_properties(struct)


def encode(props: Mapping[str, Any]) -> struct_pb2.Struct:
    # Secrets are already wire-shaped dicts and unknowns the sentinel, so they pass through.
    return asyncio.run(rpc.serialize_properties(dict(props), {}))


def _resource_type(request: Any) -> str:
    if getattr(request, "type", ""):
        return str(request.type)
    # URN: urn:pulumi:<stack>::<project>::<parent types$>type::<name>
    return str(request.urn.split("::")[2].split("$")[-1])


def _resource_name(request: Any) -> str:
    return str(getattr(request, "name", "") or request.urn.split("::")[-1])


def _require_known_type(type_token: str) -> None:
    if type_token not in RESOURCE_TYPES:
        raise ValueError(f"unknown resource type {type_token!r}")


class CommandProvider(provider_pb2_grpc.ResourceProviderServicer):
    def __init__(self, engine_address: str | None = None, runners: Runners | None = None) -> None:
        self._log = EngineLog()
        self._log.connect(engine_address)
        self._cancel = CancelRegistry()
        self._runners = runners or Runners()

    def close(self) -> None:
        self._log.close()

    def _context(self, request: Any) -> Context:
        type_token = _resource_type(request)
        _require_known_type(type_token)
        urn = str(request.urn)

        def sink(stream: str, line: str) -> None:
            # Output and dial retries are ephemeral status lines (upstream's InfoStatus); a
            # refused `env` request is a lasting warning or error (its Logger.Warning/Error).
            severity, ephemeral = DIAGNOSTICS.get(stream, (engine_pb2.INFO, True))
            self._log.log(urn, line, severity, ephemeral)

        return Context(
            type_token=type_token,
            sink=sink,
            cancel=self._cancel,
            runners=self._runners,
        )

    def Handshake(
        self, request: provider_pb2.ProviderHandshakeRequest, context: grpc.ServicerContext
    ) -> provider_pb2.ProviderHandshakeResponse:
        self._log.connect(request.engine_address)
        return provider_pb2.ProviderHandshakeResponse(accept_secrets=True)

    def Attach(
        self, request: plugin_pb2.PluginAttach, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        self._log.connect(request.address)
        return empty_pb2.Empty()

    def GetPluginInfo(
        self, request: empty_pb2.Empty, context: grpc.ServicerContext
    ) -> plugin_pb2.PluginInfo:
        return plugin_pb2.PluginInfo(version=PROVIDER_VERSION)

    def GetSchema(
        self, request: provider_pb2.GetSchemaRequest, context: grpc.ServicerContext
    ) -> provider_pb2.GetSchemaResponse:
        return provider_pb2.GetSchemaResponse(schema=MINIMAL_SCHEMA)

    def CheckConfig(
        self, request: provider_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> provider_pb2.CheckResponse:
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(
        self, request: provider_pb2.DiffRequest, context: grpc.ServicerContext
    ) -> provider_pb2.DiffResponse:
        # The provider has no configuration, so a provider change never touches resources.
        return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)

    def Configure(
        self, request: provider_pb2.ConfigureRequest, context: grpc.ServicerContext
    ) -> provider_pb2.ConfigureResponse:
        return provider_pb2.ConfigureResponse(acceptSecrets=True, supportsPreview=True)

    def GetMapping(
        self, request: provider_pb2.GetMappingRequest, context: grpc.ServicerContext
    ) -> provider_pb2.GetMappingResponse:
        return provider_pb2.GetMappingResponse()

    def GetMappings(
        self, request: provider_pb2.GetMappingsRequest, context: grpc.ServicerContext
    ) -> provider_pb2.GetMappingsResponse:
        return provider_pb2.GetMappingsResponse()

    def Cancel(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> empty_pb2.Empty:
        self._cancel.cancel_all()
        return empty_pb2.Empty()

    @_aborting
    def Check(
        self, request: provider_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> provider_pb2.CheckResponse:
        result = check(_resource_type(request), decode(request.news))
        failures = [
            provider_pb2.CheckFailure(property=f.property, reason=f.reason) for f in result.failures
        ]
        return provider_pb2.CheckResponse(inputs=encode(result.inputs), failures=failures)

    @_aborting
    def Diff(
        self, request: provider_pb2.DiffRequest, context: grpc.ServicerContext
    ) -> provider_pb2.DiffResponse:
        has_old_inputs = request.HasField("old_inputs") and len(request.old_inputs.fields) > 0
        olds = decode(request.old_inputs if has_old_inputs else request.olds)
        result = diff(olds, decode(request.news), request.ignoreChanges)
        detailed = {
            key: provider_pb2.PropertyDiff(
                kind=kind.value,  # type: ignore[arg-type]
                inputDiff=True,
            )
            for key, kind in result.detailed.items()
        }
        changes = (
            provider_pb2.DiffResponse.DIFF_SOME
            if result.changes
            else provider_pb2.DiffResponse.DIFF_NONE
        )
        return provider_pb2.DiffResponse(
            changes=changes,
            replaces=list(result.replaces),
            diffs=list(result.detailed),
            detailedDiff=detailed,
            hasDetailedDiff=True,
        )

    @_aborting
    def Create(
        self, request: provider_pb2.CreateRequest, context: grpc.ServicerContext
    ) -> provider_pb2.CreateResponse:
        ctx = self._context(request)
        outputs = create(ctx, decode(request.properties), preview=request.preview)
        resource_id = "" if request.preview else _resource_name(request) + secrets.token_hex(4)
        return provider_pb2.CreateResponse(id=resource_id, properties=encode(outputs))

    @_aborting
    def Update(
        self, request: provider_pb2.UpdateRequest, context: grpc.ServicerContext
    ) -> provider_pb2.UpdateResponse:
        ctx = self._context(request)
        outputs = update(ctx, decode(request.olds), decode(request.news), preview=request.preview)
        return provider_pb2.UpdateResponse(properties=encode(outputs))

    @_aborting
    def Delete(
        self, request: provider_pb2.DeleteRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        delete(self._context(request), decode(request.properties))
        return empty_pb2.Empty()

    @_aborting
    def Read(
        self, request: provider_pb2.ReadRequest, context: grpc.ServicerContext
    ) -> provider_pb2.ReadResponse:
        # A command cannot be observed after the fact: the recorded state is the truth.
        _require_known_type(_resource_type(request))
        return provider_pb2.ReadResponse(
            id=request.id, properties=request.properties, inputs=request.inputs
        )
