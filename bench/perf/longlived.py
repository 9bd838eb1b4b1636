"""The long-lived sweep: approaches timed side by side in one process that holds all their models.

Why: every other case runs in a fresh process, which is the honest place for a peak memory but not
where a user trains. A training process is long-lived and holds other models; its allocator has
handed out and taken back memory of every size, and its caches hold other tables. A fast path that
is fast only in a fresh process is not the fast path, so this sweep builds every approach's model
for one case (the headline, default AdamW) in one process, keeps them all alive, warms each up,
and then times their steps in interleaved rounds: in each round every approach takes its steps,
in an order rotated from round to round so that no approach always follows the same one. Each
approach's rows carry ``process = "long-lived"`` and sit beside its fresh-process rows of the
same case (``process`` null); the report gives the ratio. The same machinery times the
``compiled`` sweep's side-by-side groups (:attr:`bench.perf.cases.BenchmarkProfile.side_by_side`):
each approach eager and compiled each way in one process, so compiled against eager is a ratio
of steps taken in the same rounds; a compiled model takes its compiling steps before the warm-up.

A round gives an approach as many steps as fill :data:`ROUND_S` (at least one), calibrated on its
warm-up steps, so a 5 ms step and a 1 s step are both timed over several rounds without the slow
ones dominating the sweep's time. The calibration reads the median of the warm-up steps after the
first, over at least :data:`WARMUP_ROUNDS` rounds' worth of time: an approach's first steps in a
shared process are several times slower than its later ones (the allocator is still growing its
heap for the new shapes), and calibrating on one of them gave ``fused`` one step a round, so
every one of its timed steps was the first after another model's, which alone is slower (measured
at the headline case on 2 cores: 10-20 ms after ``grad_zero``'s step against 5 ms for the next).

The phases come from marks inside each step, as in :mod:`bench.perf.measure`. Each round starts
with a copy of the run's bandwidth size, timed, and the rows' bound is at the median bandwidth of
those copies: on a shared 2-core VM a copy's bandwidth moved between 29 and 52 GB/s from one
process to the next, so a step and the bound it is held to come from the same rounds. The memory
of all models together is estimated before the process starts; an approach that does not fit
what is left is skipped with the estimate as its reason.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bench.common.load import busy_cores
from bench.common.processes import IsolatedFailure, run_isolated
from bench.common.schema import FAILED, SKIPPED, STEP_PHASE
from bench.common.text import error_text
from bench.implementations import Implementation
from bench.perf.bound import BandwidthCopy, bandwidth_copy_bytes
from bench.perf.cases import PHASES, BenchmarkCase
from bench.perf.measure import (
    COMPILE_WARMUP_STEPS,
    PHASE_MARKS,
    Training,
    build_training,
    estimate_memory,
    set_up_malloc,
    tiny_case,
)
from bench.perf.memory import MemoryEstimate, over_budget
from bench.perf.rows import result_row, timed_fields, unmeasured_rows
from bench.perf.tables import TableFiles
from bench.perf.timing import Marks, phase_entry
from impls import UnsupportedOption

ROUND_S = 0.05
"""Seconds of steps an approach takes per round (at least one step)."""
WARMUP_STEPS = 2
"""Warm-up steps an approach takes at least before its steps per round are calibrated."""
WARMUP_ROUNDS = 4
"""Warm-up lasts at least this many rounds' worth of time (:data:`ROUND_S` each)."""


@dataclass
class LongLivedTiming:
    """One approach's timed steps in the shared process: seconds per phase, one value per step."""

    approach: str
    steps_per_round: int
    seconds: dict[str, list[float]]
    threads: int
    bandwidth_bytes_per_s: float | None = None
    """Memory bandwidth timed in the same rounds (one copy at the start of each, the median),
    the same for every approach of the process; None where it was not timed."""


def measure_long_lived(
    implementations: Sequence[Implementation],
    cases: Sequence[BenchmarkCase],
    rounds: int,
    threads: int | None = None,
    tables: TableFiles | None = None,
    bandwidth_bytes: int | None = None,
) -> list[LongLivedTiming]:
    """Time ``cases`` (one per implementation, same point) in this process, interleaved.

    All models are built first and stay alive until every round is done. ``bandwidth_bytes``:
    the size of a copy timed at the start of every round (None: none), so that the bound each
    step is held to comes from the same rounds as the step: on a shared 2-core VM the copy's
    bandwidth moved between 29 and 52 GB/s from one process to the next.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    if rounds < 1:
        raise ValueError(f"rounds: expected at least 1, got {rounds}")
    if len(implementations) != len(cases):
        raise ValueError(
            f"implementations, cases: expected one case per implementation, got "
            f"{len(implementations)} and {len(cases)}"
        )
    set_up_malloc(cases)
    synchronize = torch.cuda.synchronize if cases[0].device.startswith("cuda") else None
    build_training(implementations[0], tiny_case(cases[0], 64, 4, cases[0].device)).step()
    trainings = [
        build_training(implementation, case, tables)
        for implementation, case in zip(implementations, cases, strict=True)
    ]
    for training, case in zip(trainings, cases, strict=True):
        if case.compile is not None:
            # Compiling (and recompiling once the optimizer has state) is not a warm-up step:
            # counted as one, it would leave a compiled model one step a round.
            for _ in range(COMPILE_WARMUP_STEPS):
                training.next_batch()
                training.step()
    steps_per_round = [_calibrated_steps(training, synchronize) for training in trainings]
    marks = [Marks(synchronize) for _ in trainings]
    copy = None if bandwidth_bytes is None else BandwidthCopy(bandwidth_bytes, cases[0].device)
    for round_index in range(rounds):
        if copy is not None:
            copy.time()
        start = round_index % len(trainings)
        for index in [*range(start, len(trainings)), *range(start)]:
            training, marked = trainings[index], marks[index]
            for _ in range(steps_per_round[index]):
                training.next_batch()
                marked.start_call()
                marked.mark()
                training.step(marked.mark)
                marked.mark()
    return [
        LongLivedTiming(
            case.approach,
            steps,
            {phase: marked.spans(*_PHASE_SPANS[phase], calls=rounds * steps) for phase in PHASES},
            torch.get_num_threads(),
            None if copy is None else copy.bandwidth(),
        )
        for case, steps, marked in zip(cases, steps_per_round, marks, strict=True)
    ]


_PHASE_SPANS = {
    **{phase: (first + 1, last + 1) for phase, (first, last) in PHASE_MARKS.items()},
    STEP_PHASE: (0, 4),
}
"""Marks each phase lies between: a mark before the step (0), the step's own three
(:meth:`bench.perf.measure.Training.step`, shifted by one) and one after its optimizer step (4),
so ``step`` spans the whole call, ``zero_grad`` included, as a fresh case's does."""


def _calibrated_steps(training: Training, synchronize) -> int:
    """Warm ``training`` up and return how many steps fill :data:`ROUND_S`."""
    seconds: list[float] = []
    while len(seconds) < WARMUP_STEPS or sum(seconds) < WARMUP_ROUNDS * ROUND_S:
        training.next_batch()
        start = time.perf_counter()
        training.step()
        if synchronize is not None:
            synchronize()
        seconds.append(time.perf_counter() - start)
    return steps_filling(seconds, ROUND_S)


def steps_filling(warmup_seconds: Sequence[float], round_s: float) -> int:
    """Steps (at least one) of the typical warm-up step's length that fill ``round_s`` seconds.

    The typical step is the median of the warm-up steps after the first: the first pays for lazy
    state (the optimizer's moments), the next few for the allocator growing its heap, and one of
    those is no measure of the steps that follow.
    """
    if not warmup_seconds:
        raise ValueError("warmup_seconds: expected at least one warm-up step, got none")
    typical = statistics.median(warmup_seconds[1:] or warmup_seconds)
    return max(1, math.floor(round_s / typical)) if typical > 0 else 1


def long_lived_entry(timing: LongLivedTiming, case: BenchmarkCase, phase: str) -> dict:
    """A pytest-benchmark entry of ``timing``'s ``phase``, named like a fresh case's."""
    name = f"{phase}[{case.label()}]"
    group = f"{phase} {case.label().removeprefix(f'{case.approach}-')}"
    extra = {**case.description(), "phase": phase, "steps_per_round": timing.steps_per_round}
    template = {"name": name, "fullname": name, "group": group, "extra_info": extra}
    return phase_entry(template, timing.seconds[phase], name=name, group=group, extra_info=extra)


def long_lived_rows(
    implementations: Sequence[Implementation],
    cases: Sequence[BenchmarkCase],
    rounds: int,
    *,
    bandwidth: float | None,
    memory_budget: int | None,
    timeout_s: float,
    threads: int | None = None,
    tables: TableFiles | None = None,
) -> tuple[list[dict], list[dict]]:
    """Result rows (every case and phase) and pytest-benchmark entries of one long-lived process.

    Each approach's memory is estimated first; approaches are admitted in order while the models
    admitted so far, together, fit (``memory_budget``, or what is available); one that refuses
    the case, or does not fit, is skipped with its reason. A failure of the shared process fails
    every admitted approach's rows with the same reason. The rows' bound is at the bandwidth
    timed in the process's own rounds where its copy fits beside the admitted models (else at
    ``bandwidth``, the run's).
    """
    by_name = {implementation.name: implementation for implementation in implementations}
    rows: dict[BenchmarkCase, list[dict]] = {}
    admitted: list[tuple[BenchmarkCase, MemoryEstimate]] = []
    persistent = transient = 0
    for case in cases:
        try:
            estimate = estimate_memory(by_name[case.approach], case)
        except UnsupportedOption as refusal:
            rows[case] = unmeasured_rows([case], SKIPPED, str(refusal), bandwidth)
            continue
        except Exception as error:
            reason = f"while estimating memory: {error_text(error)}"
            rows[case] = unmeasured_rows([case], FAILED, reason, bandwidth)
            continue
        needed = persistent + estimate.persistent_bytes + max(transient, estimate.transient_bytes)
        reason = over_budget(needed, memory_budget, case.device, " with the models before it")
        if reason is not None:
            rows[case] = unmeasured_rows(
                [case], SKIPPED, reason, bandwidth, estimated_bytes=estimate.total_bytes
            )
            continue
        admitted.append((case, estimate))
        persistent += estimate.persistent_bytes
        transient = max(transient, estimate.transient_bytes)
    entries: list[dict] = []
    if admitted:
        admitted_cases = [case for case, _ in admitted]
        copy_bytes: int | None = bandwidth_copy_bytes(admitted_cases[0].device)
        needed = persistent + transient + 2 * copy_bytes  # the copy's source and target
        if over_budget(needed, memory_budget, admitted_cases[0].device) is not None:
            copy_bytes = None
        load = busy_cores()
        try:
            if tables is not None:
                tables.ensure(admitted_cases[0])  # one point: every case reads the same table
            timings = run_isolated(
                measure_long_lived,
                [by_name[case.approach] for case in admitted_cases],
                admitted_cases,
                rounds,
                threads,
                tables,
                copy_bytes,
                timeout_s=timeout_s,
            )
        except Exception as error:  # IsolatedFailure, or the process could not even start
            reason = str(error) if isinstance(error, IsolatedFailure) else repr(error)
            for case, estimate in admitted:
                rows[case] = unmeasured_rows(
                    [case], FAILED, reason, bandwidth, estimated_bytes=estimate.total_bytes
                )
        else:
            for (case, estimate), timing in zip(admitted, timings, strict=True):
                case_entries = [long_lived_entry(timing, case, phase) for phase in PHASES]
                entries += case_entries
                measured = timing.bandwidth_bytes_per_s or bandwidth
                rows[case] = [
                    result_row(
                        case,
                        entry["extra_info"]["phase"],
                        **timed_fields(case, entry["extra_info"]["phase"], entry, measured, load),
                        estimated_bytes=estimate.total_bytes,
                        load_before=load,
                        threads=timing.threads,
                        attempts=1,
                    )
                    for entry in case_entries
                ]
    return [row for case in cases for row in rows[case]], entries
