"""Loopback addresses and ports for the daemons the tests start: never a fixed port."""

from __future__ import annotations

import contextlib
import random
import socket

# The system's randomness, not the ``random`` module: pytest-randomly reseeds that before every
# test, and two runs reproducing one seed must still not pick the same addresses.
_RNG = random.SystemRandom()


def loopback_address() -> str:
    """A random 127/8 address, so that parallel runs do not collide on ports."""
    return f"127.{_RNG.randint(1, 254)}.{_RNG.randint(1, 254)}.{_RNG.randint(2, 254)}"


def loopback_prefix() -> str:
    """A random 127.x.y (a /24 for a whole stack's nodes), other than 127.0.0."""
    return f"127.{_RNG.randint(100, 250)}.{_RNG.randint(1, 250)}"


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port on ``address`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def port_open(address: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether ``address:port`` accepts a TCP connection now."""
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout_s):
        return True
    return False


def free_ports(address: str, count: int) -> list[int]:
    """``count`` distinct free ports on ``address``."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port(address))
    return sorted(ports)
