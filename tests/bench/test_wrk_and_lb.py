"""wrk's report is read exactly; the LB bench's upstream rewrites keep everything but their
one change, checked on the upstream the real renderer produces."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bench import wrk
from bench.lb import one_member, without_keepalive
from components.user_data import controller_settings
from provisioning.nginx import render_nginx_upstream
from tests.program.test_stack_config import parse

LINE = ('WRK_JSON {"requests": 1500, "duration_us": 3000000, "bytes": 9, "connect_errors": 1, '
        '"read_errors": 2, "write_errors": 0, "status_errors": 3, "timeouts": 4, '
        '"p50_us": 2500, "p90_us": 7000, "p99_us": 12345, "max_us": 40000, "mean_us": 3100.5}')


def test_parse_reads_the_lua_report_line() -> None:
    result = wrk.parse(f"Running 3s test @ http://x/\n{LINE}\n")
    assert result.rps == pytest.approx(500.0)
    assert (result.p50_ms, result.p90_ms, result.p99_ms) == (2.5, 7.0, 12.345)
    assert (result.errors, result.timeouts) == (6, 4)
    assert result.mean_ms == pytest.approx(3.1005)


def test_parse_without_the_report_fails_loudly() -> None:
    with pytest.raises(ValueError, match="WRK_JSON"):
        wrk.parse("Running 3s test\n  2 threads and 8 connections\n")


def test_combined_runs_add_counts_and_take_median_percentiles() -> None:
    a = wrk.WrkResult(100, 2.0, 1.0, 2.0, 10.0, 50.0, 1.5, 1, 0)
    b = wrk.WrkResult(300, 2.0, 3.0, 4.0, 30.0, 20.0, 2.5, 0, 2)
    c = wrk.combine([a, b])
    assert (c.requests, c.duration_s, c.rps) == (400, 4.0, 100.0)
    assert (c.p50_ms, c.p99_ms, c.max_ms) == (2.0, 20.0, 50.0)
    assert c.mean_ms == pytest.approx((1.5 * 100 + 2.5 * 300) / 400)
    assert (c.errors, c.timeouts) == (1, 2)
    assert wrk.combine([a]) == a
    with pytest.raises(ValueError):
        wrk.combine([])


def test_command_is_bounded_and_never_has_more_threads_than_connections() -> None:
    argv = wrk.command("https://h/", 1, 5, threads=4, headers=["Host: a"])
    assert argv[:5] == ["wrk", "-t1", "-c1", "-d5s", "--timeout=10s"]
    assert argv[-3:] == ["-H", "Host: a", "https://h/"]


@dataclass(frozen=True)
class M:
    address: str
    healthy: bool = True


def upstream(*addresses: str) -> str:
    return render_nginx_upstream([M(a) for a in addresses], controller_settings(parse()))


def test_one_member_keeps_only_that_server() -> None:
    text = upstream("10.0.0.10:8000", "10.0.0.11:8000", "10.0.0.12:8000")
    one = one_member(text, "10.0.0.11:8000")
    assert "10.0.0.11:8000" in one
    assert "10.0.0.10:8000" not in one and "10.0.0.12:8000" not in one
    # Nothing else changes: the rest of the block, keep-alive included, is the same text.
    assert [line for line in text.splitlines() if "server " not in line] == \
        [line for line in one.splitlines() if "server " not in line]
    with pytest.raises(ValueError):
        one_member(text, "10.0.0.99:8000")


def test_without_keepalive_removes_exactly_the_two_directives() -> None:
    text = upstream("10.0.0.10:8000")
    plain = without_keepalive(text)
    removed = set(text.splitlines()) - set(plain.splitlines())
    assert {line.split()[0] for line in removed} == {"keepalive", "keepalive_timeout"}
    assert "server 10.0.0.10:8000" in plain
    with pytest.raises(ValueError):
        without_keepalive(plain)
