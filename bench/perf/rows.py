"""One result row per case and phase, with every key of ``results.json``.

Rows are built here only, so a measured, skipped or failed row, and a DDP row, carry the same
keys (``bench.common.schema.RESULTS``) in the same order; what was not measured is null.
"""

from __future__ import annotations

from bench.common.environment import environment
from bench.common.schema import CASE_FIELDS, MEASURED_FIELDS, OK, RESULTS, record
from bench.perf.cases import BenchmarkCase


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
