"""Entry point: serve the provider on a loopback port and announce the port on stdout.

The engine starts the plugin as `pulumi-resource-command [flags] <engine address>`, reads the
first stdout line as the gRPC port, and kills the process when it is done with it.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from types import FrameType

import grpc
from pulumi.runtime.proto import provider_pb2_grpc

from .server import CommandProvider

MAX_MESSAGE_BYTES = 400 * 1024 * 1024
WORKERS = 32


def engine_address(argv: list[str]) -> str | None:
    positional = [arg for arg in argv if not arg.startswith("-")]
    return positional[-1] if positional else None


def serve(
    provider: provider_pb2_grpc.ResourceProviderServicer, close: Callable[[], None]
) -> int:
    """Serve ``provider`` on a loopback port, announce the port, run until SIGTERM/SIGINT,
    then ``close``.

    Shared with the test fakes built on the same protocol (tests/support/fake_vultr).
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=WORKERS),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(provider, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    server.stop(grace=2).wait()
    close()
    return 0


def main(argv: list[str]) -> int:
    provider = CommandProvider(engine_address(argv))
    return serve(provider, provider.close)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
