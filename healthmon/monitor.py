"""The monitor loop: probe members, update rise/fall state, rewrite the upstream on change.

Members come from the membership file that ``gemnar-lb-apply`` writes (a JSON list of
``"ip:port"``); probes are parallel HTTP GETs of ``/health/`` with a short timeout. Nginx is
reloaded only when the rendered upstream text changes, so a steady fleet causes no reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import subprocess
from collections.abc import Callable, Iterator, Sequence
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
    # Taken by the monitor and by `gemnar-lb-apply` around read-membership/render/reload, so
    # a monitor round can never write back a member that membership has just removed.
    lock_file: Path
    reload_argv: tuple[str, ...]
    health_path: str = "/health/"
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


@contextlib.contextmanager
def membership_lock(cfg: MonitorConfig) -> Iterator[None]:
    cfg.lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(cfg.lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish(cfg: MonitorConfig, members: Sequence[MemberHealth], render: RenderUpstream) -> bool:
    """Write the upstream for ``members`` and reload Nginx if the text changed (hold the lock)."""
    if not write_if_changed(cfg.upstream_file, render(list(members))):
        return False
    result = subprocess.run(cfg.reload_argv, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        log.error("nginx reload failed: %s", result.stderr.strip())
    return True


def apply_membership(cfg: MonitorConfig, addresses: list[str], render: RenderUpstream) -> bool:
    """What `gemnar-lb-apply` does: store the member list and route to all of them now.

    Members join only after their readiness check passed, so they start healthy; the
    monitor's next round takes any that fail out again.
    """
    with membership_lock(cfg):
        write_if_changed(cfg.membership_file, json.dumps(addresses))
        return publish(cfg, [MemberHealth(a) for a in addresses], render)


async def tick(
    client: httpx.AsyncClient,
    state: dict[str, MemberHealth],
    cfg: MonitorConfig,
    render: RenderUpstream,
) -> dict[str, MemberHealth]:
    """One round: probe the members, then under the lock re-read them, update and publish."""
    probed = reconcile(state, read_members(cfg.membership_file))
    results = dict(
        zip(probed, await asyncio.gather(*(probe(client, a, cfg) for a in probed)), strict=True)
    )
    with membership_lock(cfg):
        current = reconcile(probed, read_members(cfg.membership_file))
        new_state = {}
        for address, member in current.items():
            if address not in results:
                new_state[address] = member  # joined during the probes: as apply left it
                continue
            ok, error = results[address]
            new_state[address] = observe(member, ok, error, cfg.thresholds)
            if new_state[address].healthy != member.healthy:
                log.warning(
                    "member %s is now %s %s",
                    address,
                    "UP" if new_state[address].healthy else "DOWN",
                    new_state[address].last_error,
                )
        publish(cfg, list(new_state.values()), render)
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
