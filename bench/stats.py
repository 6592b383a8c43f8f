"""Small statistics for the benchmarks: percentiles, ratios against a target, verdicts (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; NaN when the denominator is zero (shown as 'n/a')."""
    return numerator / denominator if denominator else math.nan


def at_least(value: float, target: float) -> bool:
    """A 'higher is better' target (e.g. LB rps / direct rps >= 0.90); NaN never passes."""
    return not math.isnan(value) and value >= target


def at_most(value: float, target: float) -> bool:
    """A 'lower is better' target (e.g. p99 <= 20 ms, cost ratio <= 1.3); NaN never passes."""
    return not math.isnan(value) and value <= target


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def fmt(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def markdown_table(
    head: Sequence[str], rows: Iterable[Sequence[object]], text_columns: int = 1
) -> str:
    """A Markdown table: the first ``text_columns`` columns left-aligned, numbers right."""
    align = "|" + "---|" * text_columns + "---:|" * (len(head) - text_columns) + "\n"
    cells = ("| " + " | ".join(str(cell) for cell in line) + " |\n" for line in rows)
    return "| " + " | ".join(head) + " |\n" + align + "".join(cells)
