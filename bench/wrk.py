"""Running ``wrk`` (Debian's package) and reading its result as data.

wrk's human output rounds and changes units; a small Lua ``done`` hook prints one JSON line
with the exact counts and latency percentiles (microseconds) instead, which ``parse`` reads.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MARKER = "WRK_JSON "

# wrk calls done() once, after every thread finished; latency is in microseconds.
# Each `summary.errors` field is a count; `status` counts non-2xx/3xx answers.
REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, '
    .. '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\\n',
    "WRK_JSON ", summary.requests, summary.duration, summary.bytes, e.connect, e.read,
    e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency (ms) and every kind of failure it counted."""

    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    errors: int
    timeouts: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def parse(output: str) -> WrkResult:
    """The result from wrk's stdout (the line ``REPORT_LUA`` printed); ValueError if absent."""
    for line in output.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER):])
            break
    else:
        raise ValueError(f"no {MARKER.strip()} line in wrk's output: {output[-500:]!r}")
    errors = sum(int(data[k]) for k in ("connect_errors", "read_errors", "write_errors",
                                         "status_errors"))
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=int(data["duration_us"]) / 1e6,
        p50_ms=int(data["p50_us"]) / 1000,
        p90_ms=int(data["p90_us"]) / 1000,
        p99_ms=int(data["p99_us"]) / 1000,
        max_ms=int(data["max_us"]) / 1000,
        mean_ms=float(data["mean_us"]) / 1000,
        errors=errors,
        timeouts=int(data["timeouts"]),
    )


def combine(results: Sequence[WrkResult]) -> WrkResult:
    """Several runs of the same load as one: counts and time add up; p50/p90/p99 are the
    median of the runs' own (wrk reports percentiles, not its histogram), max the maximum."""
    if not results:
        raise ValueError("nothing to combine")
    requests = sum(r.requests for r in results)

    def median(values: list[float]) -> float:
        return float(statistics.median(values))

    return WrkResult(
        requests=requests,
        duration_s=sum(r.duration_s for r in results),
        p50_ms=median([r.p50_ms for r in results]),
        p90_ms=median([r.p90_ms for r in results]),
        p99_ms=median([r.p99_ms for r in results]),
        max_ms=max(r.max_ms for r in results),
        mean_ms=(sum(r.mean_ms * r.requests for r in results) / requests) if requests else 0.0,
        errors=sum(r.errors for r in results),
        timeouts=sum(r.timeouts for r in results),
    )


def command(url: str, connections: int, duration_s: int, threads: int = 1,
            headers: Sequence[str] = (), script: Path | None = None,
            timeout_s: int = 10) -> list[str]:
    """wrk's argv; one thread by default (the machine has two cores and the server needs them)."""
    argv = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{duration_s}s",
            f"--timeout={timeout_s}s"]
    for header in headers:
        argv += ["-H", header]
    if script is not None:
        argv += ["-s", str(script)]
    return [*argv, url]


def available() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, connections: int, duration_s: int, headers: Sequence[str] = ()) -> WrkResult:
    """One bounded wrk run (``duration_s`` plus a grace for the timeout) and its result."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "report.lua"
        script.write_text(REPORT_LUA, encoding="utf-8")
        done = subprocess.run(command(url, connections, duration_s, headers=headers,
                                      script=script),
                              capture_output=True, text=True, timeout=duration_s + 30,
                              check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-500:]}")
    return parse(done.stdout)
