"""The monitor loop: probe members, update rise/fall state, rewrite the upstream on change.

Members come from the membership file that ``gemnar-lb-apply`` writes (a JSON list of
``"ip:port"``); probes are parallel HTTP GETs of ``/health/`` with a short timeout. Nginx is
reloaded only when the rendered upstream text changes, so a steady fleet causes no reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from healthmon.checks import MemberHealth, Thresholds, observe, reconcile

log = logging.getLogger("gemnar.healthmon")

RenderUpstream = Callable[[Sequence[MemberHealth]], str]


@dataclass(frozen=True)
class MonitorConfig:
    membership_file: Path
    upstream_file: Path
    reload_argv: tuple[str, ...]
    health_path: str = "/health/"
    host_header: str = "health.internal"
    interval_s: float = 2.0
    timeout_s: float = 2.0
    thresholds: Thresholds = field(default_factory=Thresholds)


def read_members(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        # A half-written file is never seen (the writer renames into place); anything else is
        # a bug worth shouting about, but keep the last good upstream meanwhile.
        log.error("unreadable membership file %s: %s", path, err)
        raise
    return [str(item) for item in data]


async def probe(client: httpx.AsyncClient, address: str, cfg: MonitorConfig) -> tuple[bool, str]:
    try:
        response = await client.get(
            f"http://{address}{cfg.health_path}",
            headers={"Host": cfg.host_header},
            timeout=cfg.timeout_s,
        )
    except httpx.HTTPError as err:
        return False, f"{type(err).__name__}: {err}"
    if response.status_code != 200:
        return False, f"HTTP {response.status_code}"
    return True, ""


def write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


async def tick(
    client: httpx.AsyncClient,
    state: dict[str, MemberHealth],
    cfg: MonitorConfig,
    render: RenderUpstream,
) -> dict[str, MemberHealth]:
    """One round: re-read members, probe them all, rewrite the upstream and reload if needed."""
    state = reconcile(state, read_members(cfg.membership_file))
    results = await asyncio.gather(*(probe(client, a, cfg) for a in state))
    new_state = {
        address: observe(member, ok, error, cfg.thresholds)
        for (address, member), (ok, error) in zip(state.items(), results, strict=True)
    }
    for address, member in new_state.items():
        if member.healthy != state[address].healthy:
            log.warning(
                "member %s is now %s %s",
                address,
                "UP" if member.healthy else "DOWN",
                member.last_error,
            )
    if write_if_changed(cfg.upstream_file, render(list(new_state.values()))):
        subprocess.run(cfg.reload_argv, check=False)
    return new_state


async def run(cfg: MonitorConfig, render: RenderUpstream, stop: asyncio.Event) -> None:
    state: dict[str, MemberHealth] = {}
    async with httpx.AsyncClient() as client:
        while not stop.is_set():
            try:
                state = await tick(client, state, cfg, render)
            except (OSError, ValueError) as err:
                log.error("health round failed: %s", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=cfg.interval_s)
