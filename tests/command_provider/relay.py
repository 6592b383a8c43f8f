"""A TCP relay in front of a real server that misbehaves on purpose, for SSH dial tests.

It accepts every TCP connection at once (so a client's connect succeeds), then, per
connection, either closes it without a byte (the first ``drop_first`` connections: an sshd
restarting mid-boot) or forwards it to the real server after ``delay`` seconds (a server that
accepts TCP but is slow to answer the SSH handshake). Threads and sockets end with the context.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field


@dataclass
class RelayStats:
    accepted: int = 0
    dropped: int = 0
    forwarded: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class Relay:
    address: str
    port: int
    stats: RelayStats


@contextmanager
def tcp_relay(
    listen_address: str,
    target: tuple[str, int],
    drop_first: int = 0,
    delay: float = 0.0,
) -> Iterator[Relay]:
    stop = threading.Event()
    stats = RelayStats()
    server = socket.create_server((listen_address, 0))
    server.settimeout(0.2)
    open_sockets: list[socket.socket] = []
    workers: list[threading.Thread] = []

    def handle(client: socket.socket, index: int) -> None:
        if index < drop_first:
            with stats.lock:
                stats.dropped += 1
            client.close()
            return
        # The behaviour under test (a slow server), not a wait for an event.
        if stop.wait(delay):
            client.close()
            return
        try:
            upstream = socket.create_connection(target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        open_sockets.append(upstream)
        with stats.lock:
            stats.forwarded += 1
        pumps = [
            threading.Thread(target=_pump, args=(client, upstream), daemon=True),
            threading.Thread(target=_pump, args=(upstream, client), daemon=True),
        ]
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            open_sockets.append(client)
            with stats.lock:
                index = stats.accepted
                stats.accepted += 1
            worker = threading.Thread(target=handle, args=(client, index), daemon=True)
            workers.append(worker)
            worker.start()

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    try:
        yield Relay(listen_address, int(server.getsockname()[1]), stats)
    finally:
        stop.set()
        acceptor.join(timeout=5)
        server.close()
        for sock in open_sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for worker in workers:
            worker.join(timeout=5)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
