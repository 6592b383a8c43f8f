"""Resident memory of a process tree, read from /proc.

The tree walk is pure (a parent map in, pids out) so it is testable without processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

PROC = Path("/proc")


def descendants(parents: Mapping[int, int], roots: Iterable[int]) -> set[int]:
    """Every pid in ``parents`` (child -> parent) that is one of ``roots`` or below one."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    stack = [pid for pid in roots if pid in parents]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        stack.extend(children.get(pid, ()))
    return found


def _parent_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended while we looked
        # The command name may contain spaces and parentheses: fields start after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
    return parents


def _rss_bytes(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_pids(roots: Iterable[int]) -> set[int]:
    """``roots`` and all their descendants that are alive now."""
    return descendants(_parent_map(), roots)


def tree_rss_bytes(roots: Iterable[int]) -> int:
    """Sum of resident memory of ``roots`` and all their descendants that are alive now."""
    return sum(_rss_bytes(pid) for pid in descendants(_parent_map(), roots))
