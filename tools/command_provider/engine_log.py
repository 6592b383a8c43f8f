"""Streams command output to the engine's Log service, shown on the resource's status line."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import grpc
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc


class EngineLog:
    """Best-effort logging: a missing or unreachable engine never fails an operation."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stub: engine_pb2_grpc.EngineStub | None = None
        self._channel: grpc.Channel | None = None

    def connect(self, address: str | None) -> None:
        if not address:
            return
        with self._lock:
            if self._channel is not None:
                return
            self._channel = grpc.insecure_channel(address)
            self._stub = engine_pb2_grpc.EngineStub(self._channel)

    def info(self, urn: str, message: str) -> None:
        """An ephemeral line on the resource's status, as upstream's `InfoStatus`."""
        self.log(urn, message, engine_pb2.INFO, ephemeral=True)

    def log(self, urn: str, message: str, severity: Any, ephemeral: bool) -> None:
        stub = self._stub
        if stub is None:
            return
        request = engine_pb2.LogRequest(
            severity=severity, message=message, urn=urn, ephemeral=ephemeral
        )
        with contextlib.suppress(grpc.RpcError):
            stub.Log(request, timeout=10)

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = None
            self._stub = None
