"""The fake Vultr plugin's gRPC service: decode, answer from ``resources``, encode.

Decoding and encoding are the command provider stand-in's (``tools/command_provider``), so
both plugins speak the protocol the same way. Nothing here calls a network.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import empty_pb2
from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

from tools.command_provider.server import decode, encode

from . import PROVIDER_NAME, PROVIDER_VERSION
from .resources import created, diff, updated


def _type(request: Any) -> str:
    # URN: urn:pulumi:<stack>::<project>::<parent types$>type::<name>
    return str(getattr(request, "type", "") or request.urn.split("::")[2].split("$")[-1])


class FakeVultr(provider_pb2_grpc.ResourceProviderServicer):
    """Vultr's resources with deterministic answers; every call is accepted."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def close(self) -> None:
        pass

    def Handshake(self, request: Any, context: grpc.ServicerContext) -> Any:
        return provider_pb2.ProviderHandshakeResponse(accept_secrets=True)

    def Attach(self, request: Any, context: grpc.ServicerContext) -> Any:
        return empty_pb2.Empty()

    def GetPluginInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return plugin_pb2.PluginInfo(version=PROVIDER_VERSION)

    def GetSchema(self, request: Any, context: grpc.ServicerContext) -> Any:
        schema = {"name": PROVIDER_NAME, "version": PROVIDER_VERSION,
                  "description": "test stand-in for Vultr's API (tests/support/fake_vultr)"}
        return provider_pb2.GetSchemaResponse(schema=json.dumps(schema))

    def CheckConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        return provider_pb2.CheckResponse(inputs=request.news)

    def DiffConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)

    def Configure(self, request: Any, context: grpc.ServicerContext) -> Any:
        return provider_pb2.ConfigureResponse(acceptSecrets=True, supportsPreview=True)

    def GetMapping(self, request: Any, context: grpc.ServicerContext) -> Any:
        return provider_pb2.GetMappingResponse()

    def GetMappings(self, request: Any, context: grpc.ServicerContext) -> Any:
        return provider_pb2.GetMappingsResponse()

    def Cancel(self, request: Any, context: grpc.ServicerContext) -> Any:
        return empty_pb2.Empty()

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        # No defaults: the state keeps exactly what the program declared.
        return provider_pb2.CheckResponse(inputs=request.news)

    def Diff(self, request: Any, context: grpc.ServicerContext) -> Any:
        has_old_inputs = request.HasField("old_inputs") and len(request.old_inputs.fields) > 0
        olds = decode(request.old_inputs if has_old_inputs else request.olds)
        result = diff(_type(request), olds, decode(request.news))
        return provider_pb2.DiffResponse(
            changes=(provider_pb2.DiffResponse.DIFF_SOME if result.changed
                     else provider_pb2.DiffResponse.DIFF_NONE),
            replaces=list(result.replaces),
            diffs=list(result.changed),
            deleteBeforeReplace=False,
        )

    def Create(self, request: Any, context: grpc.ServicerContext) -> Any:
        answer = created(_type(request), request.urn, decode(request.properties),
                         preview=request.preview)
        return provider_pb2.CreateResponse(id=answer.id, properties=encode(answer.outputs))

    def Update(self, request: Any, context: grpc.ServicerContext) -> Any:
        outputs = updated(decode(request.olds), decode(request.news))
        return provider_pb2.UpdateResponse(properties=encode(outputs))

    def Delete(self, request: Any, context: grpc.ServicerContext) -> Any:
        return empty_pb2.Empty()

    def Read(self, request: Any, context: grpc.ServicerContext) -> Any:
        # Vultr would answer with what it holds; the fake holds exactly the recorded state.
        return provider_pb2.ReadResponse(id=request.id, properties=request.properties,
                                         inputs=request.inputs)
