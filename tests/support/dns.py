"""A tiny authoritative DNS responder on a free loopback UDP port, for tests of name lookups.

It answers A queries for the names it was given and NXDOMAIN for everything else, and counts
the queries it saw, so a test can show that a name was resolved at request time (Nginx's
``resolver``) rather than once at start-up. Runs in a thread; stopped when the context ends.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

HOST = "127.0.0.1"
TTL_S = 1


def _question(packet: bytes) -> tuple[str, int, int]:
    """(name, qtype, offset after the question) of a query's first question."""
    labels, offset = [], 12
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1:offset + 1 + length].decode("ascii").lower())
        offset += 1 + length
    qtype, _qclass = struct.unpack("!HH", packet[offset + 1:offset + 5])
    return ".".join(labels), qtype, offset + 5


def answer(packet: bytes, names: Mapping[str, str]) -> bytes:
    """The response to ``packet``: an A record when the name is known, else NXDOMAIN (pure)."""
    (query_id,) = struct.unpack("!H", packet[:2])
    name, qtype, end = _question(packet)
    address = names.get(name)
    found = address is not None and qtype == 1
    flags = 0x8400 | (0 if address is not None else 3)  # response, authoritative, rcode
    header = struct.pack("!HHHHHH", query_id, flags, 1, 1 if found else 0, 0, 0)
    body = packet[12:end]
    if found:
        assert address is not None
        body += struct.pack("!HHHIH", 0xC00C, 1, 1, TTL_S, 4)
        body += ipaddress.IPv4Address(address).packed
    return header + body


@dataclass
class DnsServer:
    address: str
    port: int
    queries: Counter[str] = field(default_factory=Counter)

    @property
    def resolver(self) -> str:
        """Nginx's ``resolver`` argument for this server."""
        return f"{self.address}:{self.port}"


@contextlib.contextmanager
def dns_server(names: Mapping[str, str]) -> Iterator[DnsServer]:
    """Answer A queries for ``names`` (name -> IPv4) until the context ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    port = int(sock.getsockname()[1])
    sock.settimeout(0.2)
    server = DnsServer(HOST, port)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                packet, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            with contextlib.suppress(Exception):
                server.queries[_question(packet)[0]] += 1
                sock.sendto(answer(packet, {k.lower(): v for k, v in names.items()}), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()
