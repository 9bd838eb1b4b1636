"""The least a phase must cost: bytes it cannot avoid moving, over the measured memory bandwidth.

An embedding step does almost no arithmetic, so memory traffic bounds it. The model counts only
traffic that any correct implementation must do, with s the element size, T the tokens, D the
width, n the trainable rows and u the distinct trainable rows the batch looks up:

- forward: read the T int64 ids (8·T), read the T looked-up rows (T·D·s), write the output (T·D·s);
- forward_backward: the forward, plus read the output's gradient (T·D·s) and write the gradient
  of the u trainable rows the batch touched (u·D·s);
- step: the forward_backward, plus the optimizer: read those u gradient rows (u·D·s) and read and
  write m rows of the parameter and of each of its k per-element state tensors (2·m·D·s·(1 + k)).
  m = n when the optimizer moves every trainable row every step (AdamW: its moments decay and its
  weight decay applies with or without a gradient), m = u when only rows with a gradient move
  (plain SGD, SparseAdam).

The timed phases also run the benchmark's loss (:func:`bench.perf.measure.weighted_loss`), whose
traffic no embedding can avoid and the bound above leaves out: its forward reads the output and
the loss's coefficients (2·T·D·s), its backward reads the coefficients and writes the output's
gradient (2·T·D·s). ``loss_bytes`` counts it per phase (the forward phase holds the loss's forward
only when forward and loss are compiled as one graph; no phase holds any of it when the case's
``loss`` is ``given-gradient``, which hands the output its gradient instead), and
``fraction_of_bound_with_loss`` is bound plus loss over the median: how close the whole timed
step is to what it must move, where ``fraction_of_bound`` says how close the embedding's share
alone would have to be.

Frozen rows cost nothing: they are never read except where a token looks them up. Caches are
ignored: a V×D table does not fit in them, and the timed calls cycle through several batches so
one call's rows are gone from the cache by the next (a small case can still beat the bound).

Bandwidth is measured on the same device in the process whose steps it bounds: a tensor copy of
``BANDWIDTH_BYTES`` (far beyond any cache) timed several times, bytes read plus bytes written over
the median time. A fresh case's process times it right after its steps, a one-process sweep at the
start of each of its rounds; a row that nothing measured (skipped, failed) is held to the copy
timed once when the run reached its device. On a shared 2-core VM the copy's bandwidth moved
between 29 and 52 GB/s from one process to the next: a bound from another process would move a
step's ratio to it by as much.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from bench.perf.cases import GIVEN_GRADIENT, PHASES, BenchmarkCase, unique_trainable_tokens
from bench.perf.memory import available_bytes

BANDWIDTH_BYTES = 256 << 20
BANDWIDTH_REPEATS = 9
ID_BYTES = 8


@dataclass(frozen=True)
class OptimizerTraffic:
    state_tensors: int
    """Per-element state tensors the optimizer reads and writes (k)."""
    moves_every_trainable_row: bool
    """Whether rows without a gradient change too (then m = n, else m = u)."""


OPTIMIZER_TRAFFIC = {
    "sgd": OptimizerTraffic(state_tensors=0, moves_every_trainable_row=False),
    "adamw": OptimizerTraffic(state_tensors=2, moves_every_trainable_row=True),
    # fused=True changes how many passes torch makes, not the bytes the update must move.
    "adamw_fused": OptimizerTraffic(state_tensors=2, moves_every_trainable_row=True),
    "sparse_adam": OptimizerTraffic(state_tensors=2, moves_every_trainable_row=False),
}


def optimizer_traffic(optimizer: str) -> OptimizerTraffic:
    try:
        return OPTIMIZER_TRAFFIC[optimizer]
    except KeyError:
        raise ValueError(
            f"optimizer: no bytes-moved model for {optimizer!r}; expected one of "
            f"{sorted(OPTIMIZER_TRAFFIC)}"
        ) from None


def bound_bytes(case: BenchmarkCase, phase: str, unique_trainable: int) -> int:
    """Least bytes ``phase`` of ``case`` must move (the model of the module docstring)."""
    row = case.D * case.torch_dtype.itemsize
    forward = ID_BYTES * case.T + 2 * case.T * row
    if phase == "forward":
        return forward
    forward_backward = forward + case.T * row + unique_trainable * row
    if phase == "forward_backward":
        return forward_backward
    if phase == "step":
        traffic = optimizer_traffic(case.optimizer)
        moved = case.n_trainable if traffic.moves_every_trainable_row else unique_trainable
        return (
            forward_backward
            + unique_trainable * row
            + 2 * moved * row * (1 + traffic.state_tensors)
        )
    raise ValueError(f"phase: expected 'forward', 'forward_backward' or 'step', got {phase!r}")


def loss_bytes(case: BenchmarkCase, phase: str) -> int:
    """Least bytes the benchmark's loss moves inside ``phase`` of ``case`` (module docstring)."""
    output = case.T * case.D * case.torch_dtype.itemsize
    if phase in PHASES and case.loss == GIVEN_GRADIENT:
        return 0  # no loss is computed: the output's gradient is handed in
    if phase == "forward":
        return 2 * output if case.compile == "fullgraph_loss" else 0
    if phase in ("forward_backward", "step"):
        return 4 * output
    raise ValueError(f"phase: expected 'forward', 'forward_backward' or 'step', got {phase!r}")


def bound_fields(
    bytes_moved: int | None,
    bandwidth: float | None,
    median_s: float | None,
    loss_moved: int | None = None,
) -> dict:
    """``bound_s`` and ``fraction_of_bound`` (1.0 = at the hardware limit) for a result row, and
    with ``loss_moved`` the same fraction for the bound plus the loss's bytes."""
    return {
        "bound_bytes": bytes_moved,
        "bandwidth_bytes_per_s": bandwidth,
        "bound_s": _seconds(bytes_moved, bandwidth),
        "fraction_of_bound": _fraction(_seconds(bytes_moved, bandwidth), median_s),
        "loss_bytes": loss_moved,
        "fraction_of_bound_with_loss": _fraction(
            _seconds(None if loss_moved is None else bytes_moved + loss_moved, bandwidth), median_s
        ),
    }


def _seconds(bytes_moved: int | None, bandwidth: float | None) -> float | None:
    return bytes_moved / bandwidth if bytes_moved is not None and bandwidth else None


def _fraction(bound_s: float | None, median_s: float | None) -> float | None:
    return bound_s / median_s if bound_s is not None and median_s else None


def case_bound(
    case: BenchmarkCase, phase: str, bandwidth: float | None, median_s: float | None = None
) -> dict:
    """The bound fields of ``case``'s ``phase`` row (known even when the time is not)."""
    return bound_fields(
        bound_bytes(case, phase, unique_trainable_tokens(case)),
        bandwidth,
        median_s,
        loss_bytes(case, phase),
    )


def bandwidth_copy_bytes(device: str) -> int:
    """The size of the copy that measures ``device``'s bandwidth: ``BANDWIDTH_BYTES``, or an
    eighth of the memory available if that is less (source and target must both fit)."""
    return min(BANDWIDTH_BYTES, available_bytes(device) // 8)


class BandwidthCopy:
    """A large ``copy_`` on a device, timed call by call: bytes read plus written over the
    median time of the calls so far. Timed once per round, it gives a process that times steps
    in rounds the bandwidth of those same rounds."""

    def __init__(self, nbytes: int, device: str):
        self.source = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
        self.target = torch.empty_like(self.source)
        self.synchronize = torch.cuda.synchronize if self.source.is_cuda else (lambda: None)
        self.target.copy_(self.source)  # untimed: the first copy faults the target's pages in
        self.synchronize()
        self.durations: list[float] = []

    def time(self) -> None:
        start = time.perf_counter()
        self.target.copy_(self.source)
        self.synchronize()
        self.durations.append(time.perf_counter() - start)

    def bandwidth(self) -> float:
        if not self.durations:
            raise ValueError("durations: expected at least one timed copy, got none")
        return 2 * self.source.nbytes / statistics.median(self.durations)


def measure_bandwidth(device: str, nbytes: int = BANDWIDTH_BYTES) -> float:
    """Bytes per second a large ``copy_`` moves on ``device`` (read + write, median of repeats)."""
    copy = BandwidthCopy(nbytes, device)
    for _ in range(BANDWIDTH_REPEATS):
        copy.time()
    return copy.bandwidth()
