"""Probing a rendered nftables ruleset between network namespaces (``tests.support.netns``).

A hub namespace (the node whose firewall is under test) is joined to spoke namespaces by veth
links; a listener on the hub never accepts, so every SYN that gets through the rules stays in
the hub's kernel queues, where ``ss`` sees it as half-open or open. No packet leaves the
namespaces created here.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.netns import Namespace, link, network_namespace
from tests.support.tooling import require_executable


def star(
    stack: contextlib.ExitStack, prefix: str, links: Sequence[tuple[str, str]]
) -> tuple[Namespace, ...]:
    """The hub, then one spoke per ``(hub interface, spoke interface)`` linked to it; all
    removed when ``stack`` closes. Requires nft and ss, which every probe here uses."""
    require_executable("nft", "/usr/sbin")
    require_executable("ss", "/usr/sbin", "/usr/bin")
    hub = stack.enter_context(network_namespace(f"{prefix}-h"))
    spokes = []
    for i, (hub_interface, spoke_interface) in enumerate(links):
        spoke = stack.enter_context(network_namespace(f"{prefix}-{i}"))
        link(hub, hub_interface, spoke, spoke_interface)
        spokes.append(spoke)
    return (hub, *spokes)


def load_rules(ns: Namespace, rules: str, root: Path) -> None:
    """Load the ruleset text ``rules`` into ``ns`` (written below ``root`` for nft -f)."""
    path = root / f"{ns.name}.nft"
    path.write_text(rules)
    ns.run(["nft", "-f", str(path)])


def _listener(address: str, ports: Sequence[int]) -> str:
    return ("import socket, sys\nkeep = []\n"
            f"for port in {list(ports)}:\n"
            "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"    s.bind(({address!r}, port)); s.listen(16); keep.append(s)\n"
            "print('ready', flush=True); sys.stdin.read()\n")


@contextlib.contextmanager
def holding(ns: Namespace, ports: Sequence[int], address: str = "0.0.0.0") -> Iterator[None]:
    """Something in ``ns`` listens on ``address`` at each of ``ports`` and never accepts."""
    process = subprocess.Popen(ns.argv([sys.executable, "-c", _listener(address, ports)]),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout and process.stdout.readline().strip() == "ready"
        yield
    finally:
        process.kill()
        process.wait(10)


def attempt(ns: Namespace, source: str, target: str, port: int, timeout_s: float = 0.5) -> None:
    """One connection attempt from ``source``, bounded; its outcome is read on the target."""
    code = ("import socket\n"
            f"s = socket.socket(); s.settimeout({timeout_s})\n"
            f"s.bind(('{source}', 0))\n"
            f"try: s.connect(('{target}', {port}))\n"
            "except OSError: pass\n")
    ns.run([sys.executable, "-c", code])


def reached(ns: Namespace, source: str, port: int | None = None) -> bool:
    """Whether a connection from ``source`` (to ``port``, if given) reached ``ns``'s TCP stack."""
    query = ["ss", "-Htn", "state", "all", f"dst {source}"]
    if port is not None:
        query.append(f"sport = :{port}")
    return bool(ns.run(query, check=False).stdout.strip())
