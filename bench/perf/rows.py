"""One result row per case and phase, with every key of ``results.json`` (schemas.md).

Rows are built here only, so a measured, skipped or failed row, and a DDP row, carry the same
keys in the same order; what was not measured is null.
"""

from __future__ import annotations

from bench.common.environment import environment
from bench.perf.cases import BenchmarkCase

CASE_FIELDS = (
    "approach", "device", "dtype", "V", "D", "trainable_fraction", "n_trainable", "T",
    "optimizer", "sparse", "sweep", "profile",
)  # fmt: skip
MEASURED_FIELDS = (
    "median_s", "iqr_s", "rounds", "tokens_per_s", "persistent_bytes", "peak_bytes",
    "bound_bytes", "bandwidth_bytes_per_s", "bound_s", "fraction_of_bound", "allreduce_bytes",
    "frozen_rows_identical", "estimated_bytes", "peak_method",
)  # fmt: skip
RESULT_KEY = (*(f for f in CASE_FIELDS if f != "n_trainable"), "phase")
"""What makes a row unique: a resumed run skips the keys it finds finished."""


def result_row(
    case: BenchmarkCase, phase: str, status: str = "ok", reason: str | None = None, **fields
):
    """The row of ``case`` and ``phase``; ``fields`` fill measured keys (others stay null)."""
    unknown = set(fields) - set(MEASURED_FIELDS)
    if unknown:
        raise ValueError(
            f"fields: unknown result keys {sorted(unknown)}; expected {MEASURED_FIELDS}"
        )
    description = case.description()
    return {
        **{name: description[name] for name in CASE_FIELDS},
        "phase": phase,
        "status": status,
        "reason": reason,
        **{name: fields.get(name) for name in MEASURED_FIELDS},
        "seed": case.seed,
        "env": environment(),
    }
