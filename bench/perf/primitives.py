"""What bounds the fast path: torch's own kernels timed on the headline case's shapes, in pairs.

The bytes-moved bound (:mod:`bench.perf.bound`) assumes every byte moves at the copy bandwidth.
Two kernels the fast path cannot avoid do not, and how far they fall short is a property of the
machine and of torch's build, not of any approach, so ``bench run`` times them beside the cases
(``primitives.json``) and the report sets each beside what it is compared with:

- ``gather_rows`` (``index_select`` of the T looked-up rows from the V × D table, at ids drawn
  anew for every call) against ``copy_rows`` (a copy of T consecutive rows of the same table, a
  different block each call, so neither is served from the cache): the lookup reads its rows at
  random, so it waits on DRAM latency where a copy streams.
- ``sqrt_zeros`` (``torch.sqrt`` of an n × D tensor of zeros) against ``sqrt_positive`` (the same
  over positive values): the default AdamW takes the square root of its second moment every
  step, and for trainable rows no batch has looked up yet that moment is exactly zero. torch's
  CPU build computes the square root with MKL's vector math (``vmsSqrt``), whose zeros take a
  slower path than other values; the processor's own square-root instruction takes the same time
  for both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.common.environment import environment
from bench.common.processes import IsolatedFailure, run_isolated
from bench.common.schema import FAILED, OK, PRIMITIVES, SKIPPED, record
from bench.common.stats import time_summary
from bench.perf.cases import BenchmarkCase
from bench.perf.memory import over_budget

PRIMITIVE_REPEATS = 50
"""Timed calls per primitive (after as many untimed ones)."""
ID_BATCHES = 16
"""Distinct id batches the gather cycles through, so no call finds the last call's rows cached."""


@dataclass(frozen=True)
class Primitive:
    name: str
    compared_with: str | None
    what: str
    shape: Callable[[BenchmarkCase], tuple[int, int]]


PRIMITIVE_LIST = (
    Primitive(
        "gather_rows", "copy_rows", "index_select of T random rows of the V × D table",
        lambda case: (case.T, case.D),
    ),
    Primitive(
        "copy_rows", None, "copy of T contiguous rows of the V × D table",
        lambda case: (case.T, case.D),
    ),
    Primitive(
        "sqrt_zeros", "sqrt_positive", "torch.sqrt of n × D zeros (AdamW's unseen rows)",
        lambda case: (case.n_trainable, case.D),
    ),
    Primitive(
        "sqrt_positive", None, "torch.sqrt of n × D positive values",
        lambda case: (case.n_trainable, case.D),
    ),
)  # fmt: skip


def primitive_bytes(case: BenchmarkCase) -> int:
    """What :func:`measure_primitives` allocates for ``case``: the table and a few T×D or n×D
    tensors (the caller checks it against the memory available before starting the process)."""
    s = case.torch_dtype.itemsize
    return (case.V * case.D + case.T * case.D + 3 * case.n_trainable * case.D) * s


def _timed(
    call: Callable[[int], object], repeats: int, synchronize: Callable[[], object]
) -> dict[str, float | int]:
    """``median_s`` and ``iqr_s`` (:func:`bench.common.stats.time_summary`) of ``call(i)`` over
    ``repeats`` timed calls, after as many untimed ones; ``synchronize`` ends each call."""
    for i in range(repeats):
        call(i)
    synchronize()
    seconds = []
    for i in range(repeats):
        start = time.perf_counter()
        call(i)
        synchronize()
        seconds.append(time.perf_counter() - start)
    return time_summary(seconds)


def _block_starts(case: BenchmarkCase) -> range:
    """First rows of up to ``ID_BATCHES`` disjoint T-row blocks of the table, spread over it."""
    count = max(1, min(ID_BATCHES, case.V // case.T))
    return range(0, count * (case.V // count), case.V // count)


def measure_primitives(case: BenchmarkCase, repeats: int = PRIMITIVE_REPEATS) -> list[dict]:
    """One ``primitives.json`` record per primitive, timed on ``case``'s shapes and device (run it
    in a fresh process: the V × D table is drawn here)."""
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats: expected a positive int, got {repeats!r}")
    device, dtype = case.device, case.torch_dtype
    generator = torch.Generator().manual_seed(case.seed)
    table = torch.randn(case.V, case.D, generator=generator).to(device=device, dtype=dtype)
    ids = [
        torch.randint(0, case.V, (case.T,), generator=generator).to(device)
        for _ in range(ID_BATCHES)
    ]
    rows_out = torch.empty(case.T, case.D, device=device, dtype=dtype)
    blocks = [table[start : start + case.T] for start in _block_starts(case)]
    zeros = torch.zeros(case.n_trainable, case.D, device=device, dtype=dtype)
    positive = torch.rand(case.n_trainable, case.D, generator=generator).add_(0.5)
    positive = positive.to(device=device, dtype=dtype)
    sqrt_out = torch.empty_like(zeros)
    synchronize = torch.cuda.synchronize if device.startswith("cuda") else lambda: None
    calls = {
        "gather_rows": lambda i: torch.index_select(table, 0, ids[i % ID_BATCHES], out=rows_out),
        "copy_rows": lambda i: _copy_into(rows_out, blocks[i % len(blocks)]),
        "sqrt_zeros": lambda i: torch.sqrt(zeros, out=sqrt_out),
        "sqrt_positive": lambda i: torch.sqrt(positive, out=sqrt_out),
    }
    env = environment()
    records = []
    for primitive in PRIMITIVE_LIST:
        timed = _timed(calls[primitive.name], repeats, synchronize)
        rows, width = primitive.shape(case)
        records.append(
            primitive_record(
                case,
                primitive,
                status=OK,
                median_s=timed["median_s"],
                iqr_s=timed["iqr_s"],
                bytes_moved=2 * rows * width * dtype.itemsize,
                env=env,
            )
        )
    return records


def primitive_record(case: BenchmarkCase, primitive: Primitive, **values: object) -> dict:
    """A ``primitives.json`` record of ``primitive`` on ``case``'s shapes."""
    rows, width = primitive.shape(case)
    return record(
        PRIMITIVES,
        device=case.device,
        dtype=case.dtype,
        primitive=primitive.name,
        compared_with=primitive.compared_with,
        what=primitive.what,
        rows=rows,
        width=width,
        **values,
    )


def unmeasured_primitives(case: BenchmarkCase, status: str, reason: str) -> list[dict]:
    """Every primitive of ``case`` recorded as ``status`` (skipped, failed) with ``reason``."""
    env = environment()
    return [
        primitive_record(case, p, status=status, reason=reason, env=env) for p in PRIMITIVE_LIST
    ]


def primitive_rows(case: BenchmarkCase, memory_budget: int | None, timeout_s: float) -> list[dict]:
    """The primitives of ``case`` measured in a fresh process; skipped with the estimate as
    reason when they would not fit, failed with the child's error when it fails."""
    too_big = over_budget(primitive_bytes(case), memory_budget, case.device)
    if too_big is not None:
        return unmeasured_primitives(case, SKIPPED, too_big)
    try:
        return run_isolated(measure_primitives, case, timeout_s=timeout_s)
    except IsolatedFailure as failure:
        return unmeasured_primitives(case, FAILED, str(failure))


def _copy_into(out: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """``block`` copied into the first rows of ``out`` (a table shorter than T gives fewer)."""
    return out[: block.shape[0]].copy_(block)
