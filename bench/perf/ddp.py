"""The ``ddp`` sweep: what each approach all-reduces per step under DDP, and its step time.

The measuring is :func:`bench.distributed.runs.measure_ddp_matrix` (gloo, 2 ranks on loopback, bytes
counted by a DDP communication hook); this module turns the profile's ``ddp`` point into cases,
skips what cannot run (an approach that refuses the case or has nothing to train; a case whose two
ranks would not fit in memory), and turns the measurements into result rows with phase ``ddp_step``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from bench.common.load import busy_cores, is_noisy, spread
from bench.common.schema import FAILED, SKIPPED
from bench.implementations import Implementation
from bench.perf.cases import BenchmarkCase, BenchmarkProfile
from bench.perf.measure import build_training, estimate_memory, tiny_case
from bench.perf.memory import over_budget
from bench.perf.rows import result_row
from impls.base import UnsupportedOption

if TYPE_CHECKING:  # the distributed code is imported only when DDP cases run
    from bench.distributed.runs import DdpStepCost

RANKS = 2
PHASE = "ddp_step"


def ddp_cases(profile: BenchmarkProfile, approaches: Sequence[str]) -> list[BenchmarkCase]:
    point = profile.ddp
    if point is None:
        return []
    return [point.case(approach, "cpu", profile.name) for approach in approaches]


def skip_reason(
    case: BenchmarkCase, implementation: Implementation, memory_budget: int | None
) -> str | None:
    """Why ``case`` (of ``implementation``) cannot run under DDP here, or None."""
    try:
        needed = RANKS * estimate_memory(implementation, case).total_bytes
    except UnsupportedOption as refusal:
        return str(refusal)
    if not any(
        p.requires_grad
        for p in build_training(implementation, tiny_case(case, 64, 4)).module.parameters()
    ):
        return "no parameter requires a gradient; DistributedDataParallel refuses such a module"
    return over_budget(needed, memory_budget, case.device, per=f" for {RANKS} ranks")


def ddp_rows(
    cases: Sequence[BenchmarkCase],
    implementations: Mapping[str, Implementation],
    steps: int,
    timeout_s: float,
    memory_budget: int | None,
):
    """One ``ddp_step`` row per case (``implementations``: each case's, by approach name):
    measured, skipped (with reason) or failed (with error)."""
    # Imported here so that a run without DDP cases never loads the distributed code; an import
    # error from inside this package is a bug and surfaces as one.
    from bench.distributed.runs import measure_ddp_matrix

    rows, runnable = {}, []
    for case in cases:
        reason = skip_reason(case, implementations[case.approach], memory_budget)
        if reason is None:
            runnable.append(case)
        else:
            rows[case] = result_row(case, PHASE, SKIPPED, reason)
    if runnable:
        point = runnable[0]
        load = busy_cores()
        measured = measure_ddp_matrix(
            [implementations[case.approach] for case in runnable],
            point.V,
            point.D,
            point.trainable_fraction,
            point.T,
            point.optimizer,
            steps=steps,
            timeout_s=timeout_s,
        )
        for case, result in zip(runnable, measured, strict=True):
            rows[case] = measured_row(case, result, load)
    return [rows[case] for case in cases]


def measured_row(
    case: BenchmarkCase, result: DdpStepCost, load_before: float | None = None
) -> dict:
    """The row of one measured DDP case; its time is the slowest rank's, its peak the largest
    rank's."""
    if result.error is not None:
        status = SKIPPED if result.refused else FAILED
        return result_row(case, PHASE, status, result.error, load_before=load_before)
    return result_row(
        case,
        PHASE,
        median_s=result.median_s,
        iqr_s=result.iqr_s,
        rounds=result.steps,
        tokens_per_s=case.T / result.median_s,
        allreduce_bytes=result.allreduce_bytes,
        frozen_rows_identical=result.frozen_rows_identical,
        peak_bytes=result.peak_bytes,
        peak_method=result.peak_method,
        threads=result.threads_per_rank,
        load_before=load_before,
        noisy=is_noisy(load_before, [spread(result.median_s, result.iqr_s)]),
        attempts=1,
    )
