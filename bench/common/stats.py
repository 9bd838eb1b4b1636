"""One definition of a time column's median and IQR: pytest-benchmark's own.

The benchmark's phases are timed by pytest-benchmark, whose ``Stats`` computes the quartiles its
way; the DDP rows and every later workload time their steps themselves. They all summarise here,
so an IQR means the same spread in every row of every result file.
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_benchmark.stats import Stats


def time_stats(seconds: Sequence[float]) -> Stats:
    """pytest-benchmark's statistics of ``seconds`` (at least one)."""
    if not seconds:
        raise ValueError("seconds: expected at least one timing, got none")
    stats = Stats()
    for value in seconds:
        stats.update(float(value))
    return stats


def time_summary(seconds: Sequence[float]) -> dict[str, float | int]:
    """``median_s``, ``iqr_s`` and ``rounds`` of ``seconds``, as result rows name them."""
    stats = time_stats(seconds)
    return {"median_s": stats.median, "iqr_s": stats.iqr, "rounds": stats.rounds}
