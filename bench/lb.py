"""Load-balancer overhead on a running local stack: wrk through Nginx (TLS) vs straight to a worker.

Fairness: a direct run reaches ONE worker, so the ratio that answers "what does the LB cost"
puts the same one worker behind Nginx. The controller's upstream is rewritten to worker-0
alone (``one_member``) while the bench holds the membership lock that the health monitor and
``gemnar-lb-apply`` take, so neither rewrites it meanwhile; the committed upstream is put back
and reloaded before the lock is released. The same is done with upstream keep-alive removed
(``without_keepalive``). The stack's own two-worker upstream is measured too, and reported
beside the others, but it is not a like-for-like ratio: it has twice the workers.

Each LB run is paired with a direct run of the same concurrency, alternating which goes first
over a few short rounds, so slow moments of the shared machine hit both sides of a ratio alike.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import wrk
from bench.stats import at_least, fmt, markdown_table, ratio
from healthmon.__main__ import monitor_config
from healthmon.monitor import MonitorConfig, membership_lock, run_command
from provisioning.settings_codec import controller_from_json
from tests.support.waiting import wait_until

LEVELS = (1, 8, 32)
TARGET_RATIO = 0.90
PATH = "/whoami/"
_KEEPALIVE = re.compile(r"^[ \t]*keepalive(?:_timeout)?[ \t]+[^;\n]*;[ \t]*\n", re.MULTILINE)
_SERVER = re.compile(r"^[ \t]*server[ \t]+(\S+)[^;\n]*;[ \t]*\n", re.MULTILINE)


def without_keepalive(upstream: str) -> str:
    """The upstream block with its ``keepalive`` and ``keepalive_timeout`` lines removed:
    Nginx then opens a new connection to the worker for every request."""
    stripped = _KEEPALIVE.sub("", upstream)
    if stripped == upstream:
        raise ValueError("the upstream has no keepalive directive to remove")
    return stripped


def one_member(upstream: str, address: str) -> str:
    """The upstream block with every ``server`` line but the one for ``address`` removed."""
    kept: list[str] = []

    def keep(match: re.Match[str]) -> str:
        if match.group(1) == address:
            kept.append(address)
            return match.group(0)
        return ""

    result = _SERVER.sub(keep, upstream)
    if not kept:
        raise ValueError(f"{address} is not a server of the upstream")
    return result


@dataclass(frozen=True)
class Variant:
    """One way of running the LB: a name and how to change the committed upstream text."""

    name: str
    members: int
    keepalive: bool
    change: Callable[[str], str]


@dataclass(frozen=True)
class Pair:
    variant: str
    members: int
    keepalive: bool
    connections: int
    lb: wrk.WrkResult
    direct: wrk.WrkResult

    @property
    def rps_ratio(self) -> float:
        return ratio(self.lb.rps, self.direct.rps)

    def row(self) -> dict[str, Any]:
        like_for_like = self.members == 1
        return {
            "variant": self.variant, "members": self.members, "keepalive": self.keepalive,
            "connections": self.connections,
            "lb": asdict(self.lb) | {"rps": round(self.lb.rps, 1)},
            "direct": asdict(self.direct) | {"rps": round(self.direct.rps, 1)},
            "rps_ratio": round(self.rps_ratio, 3),
            "p99_ratio": round(ratio(self.lb.p99_ms, self.direct.p99_ms), 3),
            "like_for_like": like_for_like,
            "target_met": at_least(self.rps_ratio, TARGET_RATIO) if like_for_like else None,
        }


@contextlib.contextmanager
def upstream_as(cfg: MonitorConfig, text: str) -> Iterator[None]:
    """Nginx runs ``text`` as its upstream for the duration; the committed one after, both
    checked by ``nginx -t``. The membership lock keeps the health monitor out meanwhile."""
    with membership_lock(cfg):
        original = cfg.upstream_file.read_text()
        try:
            _apply(cfg, text)
            yield
        finally:
            _apply(cfg, original)


def _apply(cfg: MonitorConfig, text: str) -> None:
    cfg.upstream_file.write_text(text)
    for argv in (cfg.test_argv, cfg.reload_argv):
        status, output = run_command(argv)
        if status != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({status}): {output}")


def served_only_by(site: str, worker: str, requests: int = 12) -> bool:
    """Whether ``requests`` fresh connections through the LB were all answered by ``worker``:
    proves the reloaded upstream is the one serving (new connections reach new Nginx workers)."""
    names = set()
    for _ in range(requests):
        with httpx.Client(verify=False, timeout=10) as client:  # self-signed local certificate
            names.add(client.get(f"{site}{PATH}").json()["worker"])
    return names == {worker}


def measure(controller_json: Path, site: str, controller: str, worker_ip: str,
            worker_name: str, duration_s: int = 2, rounds: int = 2,
            levels: Sequence[int] = LEVELS) -> list[Pair]:
    """Every variant at every concurrency level: ``rounds`` alternations of a direct run and
    an LB run of ``duration_s`` each, combined per side (``wrk.combine``)."""
    cfg = monitor_config(controller_from_json(controller_json.read_text()))
    member = f"{worker_ip}:8000"
    variants = [
        Variant("1 worker, keep-alive", 1, True, lambda t: one_member(t, member)),
        Variant("1 worker, no keep-alive", 1, False,
                lambda t: without_keepalive(one_member(t, member))),
    ]
    direct_url = f"http://{worker_ip}:8000{PATH}"
    host = [f"Host: {controller}"]  # the site's name, as Nginx passes it on
    pairs: list[Pair] = []

    def run_levels(variant: str, members: int, keepalive: bool) -> None:
        for level in levels:
            directs: list[wrk.WrkResult] = []
            lbs: list[wrk.WrkResult] = []
            for round_ in range(rounds):
                # Alternating which side goes first cancels an order effect (a warm cache, or
                # the machine's load rising through the pair).
                sides = [(directs, direct_url, host), (lbs, f"{site}{PATH}", [])]
                for into, url, headers in sides if round_ % 2 == 0 else sides[::-1]:
                    into.append(wrk.run(url, level, duration_s, headers=headers))
            pairs.append(Pair(variant, members, keepalive, level, wrk.combine(lbs),
                              wrk.combine(directs)))

    for variant in variants:
        committed = cfg.upstream_file.read_text()
        with upstream_as(cfg, variant.change(committed)):
            wait_until(lambda: served_only_by(site, worker_name), timeout_s=30,
                       what=f"Nginx serving the upstream '{variant.name}'")
            run_levels(variant.name, variant.members, variant.keepalive)
    committed = cfg.upstream_file.read_text()
    members = len(_SERVER.findall(committed))
    run_levels(f"{members} workers (the stack's upstream), keep-alive", members, True)
    return pairs


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    head = ("upstream", "conns", "LB rps", "direct rps", "LB / direct rps", "LB p50 / p99 ms",
            "direct p50 / p99 ms", "errors LB / direct")
    return markdown_table(head, (
        (r["variant"], r["connections"], f"{r['lb']['rps']:.0f}", f"{r['direct']['rps']:.0f}",
         fmt(r["rps_ratio"]) + ("" if r["like_for_like"] else " (not like for like)"),
         f"{r['lb']['p50_ms']:.1f} / {r['lb']['p99_ms']:.1f}",
         f"{r['direct']['p50_ms']:.1f} / {r['direct']['p99_ms']:.1f}",
         f"{r['lb']['errors'] + r['lb']['timeouts']} / "
         f"{r['direct']['errors'] + r['direct']['timeouts']}")
        for r in rows))
