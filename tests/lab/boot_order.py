"""When a lab machine's host firewall was loaded this boot, and when each unit that listens now
first began to start, from systemd's own journal inside the machine.

Run inside the machine as a script (``python3 -c <this file>``: Debian's Python, standard
library only); it prints one JSON object. The pure parts are tested with tables
(tests/lab/test_lab_pure.py). "First" matters: the setup script and later deploys restart
units, so systemd's ``ActiveEnterTimestamp`` (the last start) would hide a start from boot.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping

# systemd's catalogue: "Starting <unit>..." and "Started/Finished <unit>." (systemd.journal-fields).
UNIT_STARTING = "7d4958e842da4a758f6c1cdc7b36dcc5"
UNIT_STARTED = "39f53479d3a045ac8e11786248231fbf"
FIREWALL_UNIT = "nftables.service"
# A start that a condition skipped is logged with the "started" id too: it is no start.
SKIPPED = re.compile(r" was skipped because of an unmet condition check \((\w+=[^)]*)\)")


def firewall_loaded(entries: Iterable[Mapping[str, str]]) -> int | None:
    """Monotonic µs when nftables.service first finished loading its ruleset this boot."""
    times = [int(e["__MONOTONIC_TIMESTAMP"]) for e in entries
             if e.get("UNIT") == FIREWALL_UNIT and e.get("MESSAGE_ID") == UNIT_STARTED]
    return min(times, default=None)


def first_starts(entries: Iterable[Mapping[str, str]]) -> dict[str, int]:
    """Unit -> monotonic µs of its first start (begun or done) this boot; a start a condition
    skipped does not count."""
    first: dict[str, int] = {}
    for e in entries:
        if (e.get("MESSAGE_ID") in (UNIT_STARTING, UNIT_STARTED) and e.get("UNIT")
                and not SKIPPED.search(str(e.get("MESSAGE", "")))):
            at = int(e["__MONOTONIC_TIMESTAMP"])
            first[e["UNIT"]] = min(at, first.get(e["UNIT"], at))
    return first


def skipped(entries: Iterable[Mapping[str, str]], condition: str) -> list[str]:
    """Units whose start ``condition`` (``ConditionPathExists=...``) skipped, in order."""
    return [e["UNIT"] for e in entries if e.get("UNIT")
            and (m := SKIPPED.search(str(e.get("MESSAGE", "")))) and m.group(1) == condition]


def unit_of_cgroup(cgroup: str) -> str | None:
    """The service a ``/proc/<pid>/cgroup`` text places the process in."""
    for line in cgroup.splitlines():
        path = line.rsplit(":", 1)[-1]
        services = [part for part in path.split("/") if part.endswith(".service")]
        if services:
            return services[-1]
    return None


def listening_units(ss_output: str, cgroup_of: Callable[[int], str]) -> dict[str, list[str]]:
    """Unit -> the local addresses it listens on, from ``ss -Hlntup`` output."""
    found: dict[str, list[str]] = {}
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        for pid in sorted({int(p) for p in re.findall(r"pid=(\d+)", line)}):
            unit = unit_of_cgroup(cgroup_of(pid)) or f"pid {pid}"
            address = f"{fields[0]} {fields[4]}"
            if address not in found.setdefault(unit, []):
                found[unit].append(address)
    return found


def early(firewall: int | None, starts: Mapping[str, int], listeners: Iterable[str],
          exempt: Iterable[str]) -> dict[str, int | None]:
    """Listening units not shown to have started after the firewall: unit -> its first start
    (None: no start recorded). Every listener is early when no firewall was loaded."""
    out: dict[str, int | None] = {}
    for unit in sorted(set(listeners) - set(exempt)):
        at = starts.get(unit)
        if firewall is None or at is None or at <= firewall:
            out[unit] = at
    return out


def _cgroup(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return f.read()
    except OSError:
        return ""


def main(condition: str) -> None:
    journal = subprocess.run(["journalctl", "-b", "-o", "json", "_PID=1", "--no-pager"],
                             capture_output=True, text=True, check=True).stdout
    entries = [json.loads(line) for line in journal.splitlines() if line.strip()]
    ss = subprocess.run(["ss", "-Hlntup"], capture_output=True, text=True, check=True).stdout
    listeners = listening_units(ss, _cgroup)
    print(json.dumps({"firewall": firewall_loaded(entries), "first_starts": first_starts(entries),
                      "listeners": listeners, "skipped": skipped(entries, condition)}))


if __name__ == "__main__":
    import sys

    main(sys.argv[1])
