"""Measure one case: build it, time its three phases, read its memory, check its frozen rows.

:func:`measure_case` runs inside the fresh process that :mod:`bench.common.processes` starts for the
case; :func:`estimate_memory` runs in the parent before that process is started. Both build the case
through :func:`build_training`, so the estimate sees exactly what the measurement will allocate.

The phases are the training loop of docs/design.md, cut at three places: ``step`` (``zero_grad``,
forward, backward, ``optimizer.step``, and whatever the approach registered through ``attach``),
and inside each timed step ``forward`` (the lookup, with autograd recording as in training; with
compile mode ``fullgraph_loss``, lookup and loss, which are one graph) and
``forward_backward`` (forward, loss and backward; ``zero_grad`` not included). All three come from
the same timed steps: timing each phase in calls of its own cost three times the calls, and a
slow approach's 400,000-row step (1.2-1.7 s with AdamW) was most of ``bench run``'s time. On CUDA
each mark synchronises, so a phase's time includes the kernels it queued. The loss is the output
weighted by :func:`bench.perf.cases.loss_coefficients` and summed. Each call looks up the next of
the case's batches (switched untimed, in the setup), so no call finds the previous call's rows in
the cache. A case with ``loss`` ``given-gradient`` computes no loss: its backward starts from the
output, given the coefficients as its gradient (the loss's gradient, as the next layer of a model
would hand it in), so its step is the embedding's alone.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.common.frozen_rows import frozen_rows_identical
from bench.common.optimizers import optimizer_spec
from bench.common.peak_memory import PeakMeter
from bench.common.schema import STEP_PHASE
from bench.implementations import Implementation
from bench.perf.bound import bandwidth_copy_bytes, measure_bandwidth
from bench.perf.cases import (
    GIVEN_GRADIENT,
    PHASES,
    RETAINED,
    BenchmarkCase,
    loss_coefficients,
    make_weight,
    token_batches,
    trainable_ids,
    weight_chunks,
)
from bench.perf.memory import (
    MemoryEstimate,
    fit_persistent_bytes,
    persistent_bytes,
    transient_bytes,
)
from bench.perf.tables import TableFiles
from bench.perf.timing import Marks, RoundsPolicy, phase_entry, time_phase
from impls.allocator import retain_freed_memory
from impls.base import UnsupportedOption

TINY_TOKENS = 32
COMPILE_WARMUP_STEPS = 3


def weighted_loss(out: Tensor, coefficients: Tensor) -> Tensor:
    """The benchmark's loss: the looked-up rows weighted element by element, summed (every
    element of the output gets a gradient of its own, so no backward can shortcut it).

    One dot product rather than ``(out * coefficients).sum()``: the same value and the same
    gradient (``coefficients``), without the product's T×D temporary written and read again
    (0.36 against 0.52-0.62 ms for forward and backward at T = 4,096, D = 300 on 2 cores)."""
    return torch.vdot(out.reshape(-1), coefficients.reshape(-1))


@dataclass
class Training:
    """A built case: the module, its optimizer and the batches the timed calls cycle through."""

    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    batches: list[Tensor]
    coefficients: Tensor
    position: int = 0
    model: Callable[[Tensor], Tensor] | None = None  # what the forward calls: module or compiled
    compiled_loss: Callable[[Tensor], Tensor] | None = None
    """Forward and loss of the ids compiled as one graph (compile mode ``fullgraph_loss``)."""
    optimizer_step: Callable[[], object] | None = None  # optimizer.step, or its compiled form
    given_gradient: bool = False
    """Hand the output ``coefficients`` as its gradient instead of differentiating the loss
    (``loss`` ``given-gradient``): the same gradient, without the loss's forward and backward."""

    @property
    def ids(self) -> Tensor:
        return self.batches[self.position]

    def next_batch(self) -> None:
        self.position = (self.position + 1) % len(self.batches)

    def forward(self) -> Tensor:
        return (self.module if self.model is None else self.model)(self.ids)

    def step(self, mark: Callable[[], None] = lambda: None) -> None:
        """``zero_grad``, forward, backward, optimizer step; ``mark()`` after each of the first
        three, so one timed step also gives the forward and forward+backward times."""
        self.zero_grad()
        mark()
        gradient = None
        if self.compiled_loss is not None:
            root = self.compiled_loss(self.ids)
            mark()  # forward and loss are one graph: the forward phase includes the loss
        elif self.given_gradient:
            root, gradient = self.forward(), self.coefficients
            mark()
        else:
            out = self.forward()
            mark()
            root = weighted_loss(out, self.coefficients)
        if root.requires_grad:  # freeze_all has nothing to differentiate
            root.backward(gradient)
        mark()
        (self.optimizer.step if self.optimizer_step is None else self.optimizer_step)()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()


@dataclass(frozen=True)
class CaseMeasurement:
    """What one fresh process measured for a case, handed back to ``bench run``'s parent."""

    benchmarks: dict[str, dict]
    """Phase -> pytest-benchmark entry (its ``stats`` hold every timed round)."""
    peak_bytes: int | None
    peak_method: str
    persistent_bytes: int
    """After the last step: gradients and optimizer state exist."""
    frozen_rows_identical: bool
    threads: int
    load_before: float | None = None
    """Cores busy just before the process started (set by the parent)."""
    attempts: int = 1
    """Fresh processes the parent started until one was quiet (set by the parent)."""
    bandwidth_bytes_per_s: float | None = None
    """This process's bandwidth, timed after its steps; None where it was not (the run's
    stands)."""

    def row_fields(self, estimated_bytes: int) -> dict[str, object]:
        """The result-row fields every phase of the case shares."""
        return {
            "persistent_bytes": self.persistent_bytes,
            "peak_bytes": self.peak_bytes,
            "peak_method": self.peak_method,
            "frozen_rows_identical": self.frozen_rows_identical,
            "estimated_bytes": estimated_bytes,
            "threads": self.threads,
            "load_before": self.load_before,
            "attempts": self.attempts,
        }


PHASE_MARKS = {"forward": (0, 1), "forward_backward": (0, 2)}
"""The phases timed inside each step, as the marks (:meth:`Training.step`) they lie between."""


def build_training(
    approach: Implementation, case: BenchmarkCase, tables: TableFiles | None = None
) -> Training:
    """Build ``case`` for ``approach``; the pretrained table is released once it is copied in.

    ``tables``: where the run keeps its drawn tables (None: draw this one here)."""
    weight = make_weight(case) if tables is None else tables.read(case)
    module = approach.from_pretrained(
        weight, trainable_ids(case).to(case.device), sparse=case.sparse
    )
    del weight
    optimizer = optimizer_spec(case.optimizer).build(module.parameters())
    module.attach(optimizer)
    batches = [ids.to(case.device) for ids in token_batches(case)]
    training = Training(
        module,
        optimizer,
        batches,
        loss_coefficients(case).to(case.device),
        given_gradient=case.loss == GIVEN_GRADIENT,
    )
    if case.compile is not None:
        # fullgraph=True: a graph break (a host read, a data-dependent shape) fails the case
        # instead of silently running eager pieces. The optimizer step is compiled on its own,
        # as torch's optimizer-compilation recipe does, unless it is already one fused kernel
        # (see compiled_optimizer_step).
        training.optimizer_step = compiled_optimizer_step(optimizer)
    if case.compile == "fullgraph":
        training.model = torch.compile(module, fullgraph=True)
    elif case.compile == "fullgraph_loss":
        coefficients = training.coefficients
        training.compiled_loss = torch.compile(
            lambda ids: weighted_loss(module(ids), coefficients), fullgraph=True
        )
    return training


def compiled_optimizer_step(optimizer: torch.optim.Optimizer) -> Callable[[], object]:
    """``torch.compile(optimizer.step)``, or ``optimizer.step`` itself for a fused optimizer.

    Why not compile a fused one: torch wraps its fused kernels (``_fused_adam``, ``_fused_sgd``,
    ...) in ``torch.compiler.disable``, so the compiled step cannot trace them and only adds
    frames around three graph breaks (measured: 0.04 ms a step on a 2-core CPU, a third of the
    eager step at a tiny case) to a step that is already one pass. An experienced user compiles
    the model and leaves such a step as it is."""
    if any(group.get("fused") for group in optimizer.param_groups):
        return optimizer.step
    return torch.compile(optimizer.step)


def tiny_case(
    case: BenchmarkCase, num_rows: int, n_trainable: int, device: str = "cpu"
) -> BenchmarkCase:
    """``case`` shrunk to ``num_rows`` rows, ``n_trainable`` of them trainable, and a few tokens."""
    return dataclasses.replace(
        case,
        V=num_rows,
        trainable_fraction=n_trainable / num_rows,
        T=TINY_TOKENS,
        device=device,
        compile=None,  # what a case keeps does not depend on compilation; compiling costs seconds
    )


def estimate_memory(approach: Implementation, case: BenchmarkCase) -> MemoryEstimate:
    """What ``case`` will need, from tiny builds of it (see :mod:`bench.perf.memory`); allocates
    nothing of the case's size. Raises ``UnsupportedOption`` if the approach refuses the case,
    or if this machine cannot give the case its ``malloc`` (every caller skips it with the reason).
    """
    unavailable = malloc_unavailable(case)
    if unavailable is not None:
        raise UnsupportedOption(unavailable)

    def tiny_persistent_bytes(num_rows: int, n_trainable: int) -> int:
        training = build_training(approach, tiny_case(case, num_rows, n_trainable))
        training.step()
        return persistent_bytes(training.module, training.optimizer)

    return MemoryEstimate(
        fit_persistent_bytes(tiny_persistent_bytes, case.V, case.n_trainable),
        transient_bytes(case.V, case.D, case.T, case.torch_dtype.itemsize),
    )


def frozen_rows_kept(
    module: torch.nn.Module, case: BenchmarkCase, tables: TableFiles | None = None
) -> bool:
    """Whether every frozen row of ``merged_weight()`` equals the pretrained row, bit for bit.

    The pretrained rows are read (from ``tables``) or regenerated from the case's seed slice by
    slice, so no second copy of the table is kept through the timed phases.
    """
    merged = module.merged_weight()
    frozen = ~module.trainable_mask
    for first, chunk in weight_chunks(case) if tables is None else tables.chunks(case):
        rows = slice(first, first + chunk.shape[0])
        if not frozen_rows_identical(chunk, merged[rows], ~frozen[rows]):
            return False
    return True


def malloc_unavailable(case: BenchmarkCase) -> str | None:
    """Why ``case``'s ``malloc`` cannot be set up on this machine (a reason to skip it), or None."""
    if case.malloc == RETAINED and platform.libc_ver()[0] != "glibc":
        return (
            f"malloc {RETAINED!r}: impls.allocator.retain_freed_memory sets glibc's thresholds; "
            f"this process runs {platform.libc_ver()[0] or 'another C library'}"
        )
    return None


def set_up_malloc(cases: Sequence[BenchmarkCase]) -> None:
    """Give this process the ``malloc`` of ``cases`` (one process, one ``malloc``), before any
    model is built."""
    modes = {case.malloc for case in cases}
    if len(modes) > 1:
        raise ValueError(
            f"cases: expected one malloc for one process, got {sorted(map(str, modes))}"
        )
    if RETAINED in modes and not retain_freed_memory():
        raise RuntimeError(malloc_unavailable(cases[0]) or "retain_freed_memory was refused")


def measure_case(
    approach: Implementation,
    case: BenchmarkCase,
    policy: RoundsPolicy,
    threads: int | None = None,
    tables: TableFiles | None = None,
) -> CaseMeasurement:
    """Everything measured for ``case`` in this process (call it in a fresh one).

    ``threads``: intra-op threads to use (None: torch's default); ``tables``: the run's drawn
    tables (None: draw the case's here).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    set_up_malloc([case])
    # A first step starts thread pools and allocator arenas; a tiny one here makes them part of
    # the baseline instead of the case's peak.
    build_training(approach, tiny_case(case, 64, 4, case.device)).step()
    meter = PeakMeter(case.device)
    meter.start()
    training = build_training(approach, case, tables)
    meter.reset()
    synchronize = torch.cuda.synchronize if case.device.startswith("cuda") else None
    group = case.label().removeprefix(f"{case.approach}-")
    marks = Marks(synchronize)
    entries = {
        phase: {
            "name": f"{phase}[{case.label()}]",
            "group": f"{phase} {group}",
            "extra_info": {**case.description(), "phase": phase},
        }
        for phase in PHASES
    }
    if case.compile is not None:
        # The first steps compile (forward, backward and optimizer graphs, and a recompile
        # once the optimizer has state); untimed here, or the probe that sets the rounds would
        # time the compiler and leave the case the minimum of rounds.
        for _ in range(COMPILE_WARMUP_STEPS):
            training.next_batch()
            training.step()
    step = time_phase(
        functools.partial(training.step, marks.mark),
        **entries[STEP_PHASE],
        policy=policy,
        setup=training.next_batch,
        synchronize=synchronize,
        marks=marks,
    )
    rounds = step["stats"]["rounds"]
    benchmarks = {
        phase: step
        if phase == STEP_PHASE
        else phase_entry(step, marks.spans(*PHASE_MARKS[phase], calls=rounds), **entries[phase])
        for phase in PHASES
    }
    peak = meter.peak_bytes()  # before the bandwidth copy, which is not the case's memory
    kept = persistent_bytes(training.module, training.optimizer)
    identical = frozen_rows_kept(training.module, case, tables)
    del training  # released: the copy below needs the memory, not the model
    return CaseMeasurement(
        benchmarks=benchmarks,
        peak_bytes=peak,
        peak_method=meter.method,
        persistent_bytes=kept,
        frozen_rows_identical=identical,
        threads=torch.get_num_threads(),
        bandwidth_bytes_per_s=bandwidth_after(case.device),
    )


def bandwidth_after(device: str) -> float | None:
    """The bandwidth of ``device`` in this process, right after its timed steps (the model
    released first), or None where its copy does not fit: a fresh process's steps are held to
    the bandwidth of that process, which on a shared 2-core VM moved between 29 and 52 GB/s from
    one process to the next."""
    try:
        return measure_bandwidth(device, bandwidth_copy_bytes(device))
    except (RuntimeError, MemoryError):  # out of memory: the run's bandwidth stands
        return None
