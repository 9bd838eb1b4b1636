"""One result row per case and phase, with every key of ``results.json``.

Rows are built here only, so a measured, skipped or failed row, and a DDP row, carry the same
keys (``bench.common.schema.RESULTS``) in the same order; what was not measured is null.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.common.environment import environment
from bench.common.load import is_noisy, spread
from bench.common.schema import CASE_FIELDS, MEASURED_FIELDS, OK, RESULTS, record
from bench.perf.bound import case_bound
from bench.perf.cases import PHASES, BenchmarkCase
from bench.perf.timing import summary


def result_row(
    case: BenchmarkCase, phase: str, status: str = OK, reason: str | None = None, **fields
):
    """The row of ``case`` and ``phase``; ``fields`` fill measured keys (others stay null)."""
    unknown = set(fields) - set(MEASURED_FIELDS)
    if unknown:
        raise ValueError(
            f"fields: unknown result keys {sorted(unknown)}; expected {MEASURED_FIELDS}"
        )
    description = case.description()
    return record(
        RESULTS,
        **{name: description[name] for name in CASE_FIELDS},
        phase=phase,
        status=status,
        reason=reason,
        **fields,
        seed=case.seed,
        env=environment(),
    )


def timed_fields(
    case: BenchmarkCase, phase: str, entry: dict, bandwidth: float | None, load: float | None
) -> dict:
    """The fields a timed row takes from its pytest-benchmark ``entry``: median, IQR, rounds,
    tokens/s, the bound, and ``noisy`` (from ``load`` before it and the entry's spread)."""
    timing = summary(entry)
    median = timing["median_s"]
    return {
        **timing,
        "tokens_per_s": case.T / median,
        **case_bound(case, phase, bandwidth, median),
        "noisy": is_noisy(load, [spread(median, timing["iqr_s"])]),
    }


def unmeasured_rows(
    cases: Sequence[BenchmarkCase], status: str, reason: str, bandwidth: float | None, **fields
) -> list[dict]:
    """Rows of ``cases`` for every phase, skipped or failed: the bound is known even when the
    time is not."""
    return [
        result_row(case, phase, status, reason, **fields, **case_bound(case, phase, bandwidth))
        for case in cases
        for phase in PHASES
    ]
