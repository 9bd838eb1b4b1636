"""Memory of a case: persistent bytes counted exactly, an estimate made before allocating, and
the measured peak.

Persistent bytes are the storages behind the module's parameters, their gradients, its buffers
and every tensor in the optimizer state, each storage counted once (a buffer that is a view of
another, such as a mask's ``unsqueeze``, costs nothing extra). A sparse gradient counts its
indices and values.

The estimate must not allocate the case, so it builds the approach three times on tiny tables
of the case's width, runs one training step, counts persistent bytes, and solves
``bytes = a·V + b·n + c`` (every tensor an approach keeps has V, n, V − n or a constant number of
rows). That part is exact for dense gradients. On top it allows for what a step creates and frees:
three table-sized temporaries (a rebuilt table and its dense gradient, or the optimizer's
intermediate results on a whole-table parameter; 2.1 tables were measured at the headline case
with AdamW, so three leave headroom) and five T×D tensors (looked-up rows, output, loss weights,
output gradient, a sparse gradient's values). It errs high on purpose: a skipped case costs a
row, a case that exhausts memory costs the run.

Peak memory is measured by :mod:`bench.common.peak_memory`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from bench.common.text import format_bytes

PROC_MEMINFO = Path("/proc/meminfo")
TRANSIENT_TABLES = 3
TRANSIENT_ACTIVATIONS = 5
FIT_POINTS = ((64, 4), (128, 4), (64, 8))
"""(V, n) of the tiny builds: enough to solve for a·V + b·n + c."""


def _storages(tensor: Tensor) -> Iterator[tuple[tuple, int]]:
    """(identity, bytes) of each storage behind ``tensor``."""
    if tensor.is_sparse:
        yield from _storages(tensor._indices())
        yield from _storages(tensor._values())
        return
    storage = tensor.untyped_storage()
    yield (tensor.device, storage.data_ptr(), storage.nbytes()), storage.nbytes()


def _state_tensors(optimizer: torch.optim.Optimizer) -> Iterator[Tensor]:
    for state in optimizer.state.values():
        yield from (value for value in state.values() if isinstance(value, Tensor))


def persistent_bytes(module: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes of parameters, gradients, buffers and optimizer state, each storage once."""
    tensors = [
        *module.parameters(),
        *(p.grad for p in module.parameters() if p.grad is not None),
        *module.buffers(),
        *_state_tensors(optimizer),
    ]
    unique = dict(pair for tensor in tensors for pair in _storages(tensor))
    return sum(unique.values())


@dataclass(frozen=True)
class MemoryEstimate:
    persistent_bytes: int
    transient_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.persistent_bytes + self.transient_bytes


BuildAndStep = Callable[[int, int], int]
"""``(V, n) -> persistent bytes`` after one step on a tiny table of the case's width."""


def fit_persistent_bytes(measure: BuildAndStep, num_rows: int, n_trainable: int) -> int:
    """Persistent bytes at (``num_rows``, ``n_trainable``) from the tiny builds of FIT_POINTS."""
    (v0, n0), (v1, _), (_, n1) = FIT_POINTS
    base, more_rows, more_trainable = (measure(v, n) for v, n in FIT_POINTS)
    per_row = (more_rows - base) / (v1 - v0)
    per_trainable = (more_trainable - base) / (n1 - n0)
    constant = base - per_row * v0 - per_trainable * n0
    return round(per_row * num_rows + per_trainable * n_trainable + constant)


def transient_bytes(num_rows: int, dim: int, tokens: int, element_size: int) -> int:
    """The allowance for what a step allocates and frees (see the module docstring)."""
    table = num_rows * dim * element_size
    activations = tokens * dim * element_size
    return TRANSIENT_TABLES * table + TRANSIENT_ACTIVATIONS * activations + tokens * 8


def available_bytes(device: str) -> int:
    """Memory a new case may use now: MemAvailable on CPU, the card's total on CUDA."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    if PROC_MEMINFO.exists():
        for line in PROC_MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def over_budget(needed: int, budget: int | None, device: str, per: str = "") -> str | None:
    """Why ``needed`` bytes do not fit, or None: against ``budget`` if given, else against the
    memory available on ``device`` now (other processes come and go during a long run)."""
    limit = budget if budget is not None else available_bytes(device)
    if needed <= limit:
        return None
    kind = "budget" if budget is not None else "available"
    return f"estimated {format_bytes(needed)}{per} > {format_bytes(limit)} {kind}"
