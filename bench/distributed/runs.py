"""P7 under DistributedDataParallel and FSDP2, and what DDP communicates per step.

Each case trains one approach on 2 gloo ranks over loopback (:mod:`bench.distributed.launch`)
from the same table on every rank but with *different* ids per rank, so the ranks stay equal
only if the wrapper's gradient reduction reaches everything that updates the table. An approach
that cannot run under a wrapper is a result, not a crash: its error text is kept in the outcome.
What an approach needed under a wrapper (``find_unused_parameters``, hooks that ``fully_shard``
dropped, a skipped backward) is kept as notes. The verification matrix turns outcomes into P1/P7
records with :func:`ranks_agree` and :func:`frozen_row_changes`; the benchmark's ``ddp`` sweep
calls :func:`measure_ddp_step`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

from bench.common.frozen_rows import bits, changed_frozen_rows
from bench.common.optimizers import optimizer_spec
from bench.common.stats import time_summary
from bench.common.text import check_choice, check_positive_ints
from bench.distributed.launch import run_cases
from bench.distributed.rank import (
    RankStepCost,
    RankTrainingCase,
    StepCostCase,
    initial_weight,
    step_cost_case,
    train_case,
    trainable_mask,
)
from bench.implementations import Implementation, implementation_of
from impls.validation import as_trainable_mask

WRAPPERS = ("ddp", "fsdp2")


@dataclass
class DistributedOutcome:
    """One approach × wrapper run: every rank's table after the steps, or why it could not run."""

    approach: str
    wrapper: str
    optimizer: str
    initial_weight: Tensor
    trainable_mask: Tensor
    per_rank_merged: list[Tensor] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    notes: list[str] = field(default_factory=list)


class FrozenRowChange(NamedTuple):
    rank: int
    row: int
    before: Tensor
    after: Tensor


def run_distributed(
    approach: Implementation | str, wrapper: str, **arguments
) -> DistributedOutcome:
    """Train ``approach`` wrapped in ``wrapper`` ("ddp" | "fsdp2") on 2 ranks; the keyword
    arguments are :func:`run_distributed_matrix`'s."""
    return run_distributed_matrix([approach], [wrapper], **arguments)[0]


def run_distributed_matrix(
    approaches: Sequence[Implementation | str],
    wrappers: Sequence[str] = WRAPPERS,
    optimizer: str | Sequence[str] = "adamw",
    steps: int = 3,
    num_rows: int = 16,
    dim: int = 4,
    trainable=None,
    seed: int = 0,
    timeout_s: float = 60,
    *,
    tokens: int = 8,
    stall_rank: int | None = None,
    **options,
) -> list[DistributedOutcome]:
    """Every optimizer × approach × wrapper, in that order, sharing one pair of processes.

    ``trainable``: bool mask or row ids (default: every fourth row from row 1, so trainable rows
    lie in every FSDP2 shard). ``options`` go to ``from_pretrained``. ``stall_rank`` makes that
    rank sleep forever, to exercise the timeout.
    """
    optimizers = [optimizer] if isinstance(optimizer, str) else list(optimizer)
    cases = [
        dataclasses.replace(
            train_case_for(a, w, o, steps, num_rows, dim, trainable, seed, tokens, options),
            stall_rank=stall_rank,
        )
        for o in optimizers
        for a in approaches
        for w in wrappers
    ]
    return run_train_cases(cases, timeout_s)


def train_case_for(
    approach, wrapper, optimizer, steps, num_rows, dim, trainable, seed, tokens, options
) -> RankTrainingCase:
    """A validated case; bad arguments fail here, in the caller's process, naming the argument."""
    implementation = implementation_of(approach)
    check_choice("wrapper", wrapper, WRAPPERS)
    optimizer_spec(optimizer)
    check_positive_ints(steps=steps, num_rows=num_rows, dim=dim, tokens=tokens)
    if trainable is None:
        ids = tuple(range(1, num_rows, 4))
    else:
        mask = as_trainable_mask(torch.as_tensor(trainable), num_rows, torch.device("cpu"))
        ids = tuple(mask.nonzero().squeeze(1).tolist())
    options = tuple(sorted(options.items()))
    return RankTrainingCase(
        implementation, wrapper, optimizer, steps, num_rows, dim, ids, tokens, seed, options
    )


def run_train_cases(
    cases: Sequence[RankTrainingCase], timeout_s: float
) -> list[DistributedOutcome]:
    """Run prepared cases (one pair, a fresh one after a failure) and collect their outcomes."""
    results = run_cases(train_case, cases, [c.label for c in cases], timeout_s)
    outcomes = []
    for case, result in zip(cases, results, strict=True):
        outcome = DistributedOutcome(
            case.approach,
            case.wrapper,
            case.optimizer,
            initial_weight(case.seed, case.num_rows, case.dim),
            trainable_mask(case.num_rows, case.trainable_ids),
            error=result.error,
            traceback="\n".join(r.traceback for r in result.ranks if r and r.traceback) or None,
        )
        values = [r.value for r in result.ranks if r is not None and r.value is not None]
        for value in values:
            outcome.notes += [n for n in value["notes"] if n not in outcome.notes]
        if outcome.error is None:
            outcome.per_rank_merged = [value["merged"] for value in values]
        outcomes.append(outcome)
    return outcomes


def ranks_agree(outcome: DistributedOutcome) -> tuple[bool, str]:
    """Whether every rank holds a bit-identical table (P7), and the first difference if not.

    Compared as raw bits, so a NaN that both ranks hold in the same place counts as agreement
    (``torch.equal`` would call it a difference) and ``-0.0`` vs ``0.0`` as a difference.
    """
    tables = [bits(table) for table in ran_tables(outcome)]
    for rank, table in enumerate(tables[1:], start=1):
        if not torch.equal(table, tables[0]):
            row = int((table != tables[0]).any(dim=1).nonzero()[0])
            first, other = outcome.per_rank_merged[0][row], outcome.per_rank_merged[rank][row]
            return False, (
                f"{outcome.approach} under {outcome.wrapper}: rank {rank} differs from rank 0 at "
                f"row {row}: {first.tolist()} vs {other.tolist()}"
            )
    return True, f"{len(tables)} ranks hold bit-identical tables"


def frozen_row_changes(outcome: DistributedOutcome) -> list[FrozenRowChange]:
    """Every (rank, frozen row) whose values are not bit-identical to the initial table (P1)."""
    before = outcome.initial_weight
    return [
        FrozenRowChange(rank, row, before[row], table[row])
        for rank, table in enumerate(ran_tables(outcome))
        for row in changed_frozen_rows(before, table, outcome.trainable_mask).tolist()
    ]


def ran_tables(outcome: DistributedOutcome) -> list[Tensor]:
    if outcome.error is not None:
        raise ValueError(
            f"outcome: {outcome.approach} under {outcome.wrapper} did not run, so there are no "
            f"tables to compare (error: {outcome.error.splitlines()[0]})"
        )
    return outcome.per_rank_merged


def measure_ddp_step(approach: Implementation | str, *arguments, **keywords) -> DdpStepCost:
    """:func:`measure_ddp_matrix` for one approach."""
    return measure_ddp_matrix([approach], *arguments, **keywords)[0]


@dataclass(frozen=True)
class DdpStepCost:
    """One approach's DDP step on 2 ranks; with an ``error`` (why it could not run) the
    measured fields are None."""

    approach: str
    n_trainable: int
    steps: int
    error: str | None
    allreduce_bytes: int | None = None
    """Counted by a DDP communication hook, equal on both ranks."""
    allreduce_buckets: int | None = None
    median_s: float | None = None
    """Of the slowest rank's time per step (as ``iqr_s``)."""
    iqr_s: float | None = None
    rounds: int | None = None
    threads_per_rank: int | None = None
    buffer_bytes: int | None = None
    """What DDP's default ``broadcast_buffers=True`` would broadcast every forward; off here,
    see :func:`bench.distributed.rank.step_cost_case`."""
    peak_bytes: int | None = None
    """The fullest rank's."""
    peak_method: str | None = None
    frozen_rows_identical: bool | None = None
    """On every rank."""
    refused: bool = False
    """The ``error`` is the approach refusing a process group (``UnsupportedOption``)."""


def measure_ddp_matrix(
    approaches: Sequence[Implementation | str],
    num_rows: int,
    dim: int,
    trainable_fraction: float,
    tokens: int,
    optimizer: str = "adamw",
    steps: int = 5,
    warmup: int = 2,
    timeout_s: float = 300,
) -> list[DdpStepCost]:
    """Step time and bytes all-reduced per step per rank of each approach under DDP on 2 ranks,
    in one pair of processes; one :class:`DdpStepCost` per approach."""
    implementations = [implementation_of(approach) for approach in approaches]
    optimizer_spec(optimizer)
    check_positive_ints(num_rows=num_rows, dim=dim, tokens=tokens, steps=steps)
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup: expected an int >= 0, got {warmup!r}")
    n_trainable = round(num_rows * trainable_fraction)
    if not 0 < n_trainable <= num_rows:
        raise ValueError(
            f"trainable_fraction: expected a fraction that selects 1..{num_rows} of {num_rows} "
            f"rows, got {trainable_fraction!r} ({n_trainable} rows)"
        )
    generator = torch.Generator().manual_seed(0)
    ids = tuple(torch.randperm(num_rows, generator=generator)[:n_trainable].sort()[0].tolist())
    cases = [
        StepCostCase(i, num_rows, dim, ids, tokens, optimizer, steps, warmup)
        for i in implementations
    ]
    measured = []
    results = run_cases(step_cost_case, cases, [c.label for c in cases], timeout_s)
    for case, result in zip(cases, results, strict=True):
        if result.error is not None:
            measured.append(
                DdpStepCost(case.approach, n_trainable, steps, result.error, refused=result.refused)
            )
            continue
        values: list[RankStepCost] = [
            r.value for r in result.ranks if r is not None and r.value is not None
        ]
        per_rank_bytes = {v.allreduce_bytes for v in values}
        first = values[0]
        timing = time_summary(first.step_s)
        measured.append(
            DdpStepCost(
                case.approach,
                n_trainable,
                steps,
                error=None
                if len(per_rank_bytes) == 1
                else f"ranks all-reduced different byte counts: {per_rank_bytes}",
                allreduce_bytes=first.allreduce_bytes,
                allreduce_buckets=first.allreduce_buckets,
                median_s=timing["median_s"],
                iqr_s=timing["iqr_s"],
                rounds=timing["rounds"],
                threads_per_rank=first.threads_per_rank,
                buffer_bytes=first.buffer_bytes,
                peak_bytes=max(v.peak_bytes or 0 for v in values),  # the fullest rank
                peak_method=first.peak_method,
                frozen_rows_identical=all(v.frozen_rows_identical for v in values),
            )
        )
    return measured
