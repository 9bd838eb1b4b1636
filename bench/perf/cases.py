"""Benchmark cases and the profiles that list them, plus the deterministic inputs of a case.

A :class:`BenchmarkCase` is one point of the benchmark grid: an approach on a device with a table of
V rows of width D, a trainable fraction, T tokens a step, an optimizer and a dtype. A profile lists
the points of every sweep; the same point may belong to several sweeps (the headline is also a point
of the vocabulary sweep), and :func:`measurement_groups` makes sure it is measured once.

Inputs are rebuilt from the case alone, so a fresh process can make them without receiving a table,
and the frozen-rows check can regenerate the original rows chunk by chunk instead of keeping a
second V×D copy alive through the timed steps. Token ids are uniform over the vocabulary, so about
``trainable_fraction`` of the tokens hit a trainable row.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.common.schema import (
    COMPILED_SWEEP,
    GRADIENT_SWEEP,
    LONG_LIVED_SWEEP,
    PEFT_PEER,
    RETAINED_SWEEP,
)
from bench.perf.timing import RoundsPolicy

SWEEPS = (
    "headline", "compiled", "vocab", "fraction", "tokens", "llm", "ddp", "longlived", "retained",
    "gradient",
)  # fmt: skip
COMPILE_MODES = ("fullgraph", "fullgraph_loss")
"""How a case's step may be compiled (see :func:`bench.perf.measure.build_training`):
``fullgraph`` compiles the module with ``torch.compile(fullgraph=True)`` (forward and, through
AOTAutograd, backward), the loss stays eager; ``fullgraph_loss`` compiles forward and loss as one
graph, as a user who compiles the model that computes the loss does (and as the verification
matrix's ``compile_fullgraph`` scenario does), so the compiler may fuse the loss into what feeds it.
Either way the optimizer step is compiled unless it is already one fused kernel. With
``fullgraph_loss`` the ``forward`` phase ends after the loss: inside one graph they have no
boundary to time."""
PHASES = ("forward", "forward_backward", "step")
LONG_LIVED = "long-lived"
"""``process`` of a case timed in the one process that holds every approach's model
(:mod:`bench.perf.longlived`); null: a fresh process per case."""
SIDE_BY_SIDE = "side-by-side"
"""``process`` of a case timed in one process beside the other forms (eager, compiled each way;
with the loss, with the gradient given) of the same approaches
(:attr:`BenchmarkProfile.side_by_side`): another process than the long-lived one, so another
case."""
PROCESSES = (LONG_LIVED, SIDE_BY_SIDE)
RETAINED = "retained"
"""``malloc`` of a case timed in a process that called
:func:`impls.allocator.retain_freed_memory` first; null: ``malloc`` as the process started."""
MALLOC_MODES = (RETAINED,)
GIVEN_GRADIENT = "given-gradient"
"""``loss`` of a case whose step hands the lookup's output its gradient (the loss's
coefficients) with ``out.backward(coefficients)``, as the layer after an embedding hands it in a
model, instead of computing the benchmark's weighted loss and differentiating it; null: the
weighted loss (:func:`bench.perf.measure.weighted_loss`). The embedding's work is the same; what
is left out is the loss's own forward and backward, whose bytes the bound does not count."""
LOSS_MODES = (GIVEN_GRADIENT,)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

HEADLINE = {"V": 400_000, "D": 300, "T": 4_096, "trainable_fraction": 0.01, "optimizer": "adamw"}
"""GloVe 6B's table (400,000 words × 300), a 4,096-token batch, 1% new rows, AdamW."""

WEIGHT_CHUNK_ROWS = 1 << 16
"""Rows drawn per generator seed: the table can be regenerated a slice at a time."""
BATCHES = 16
"""Distinct batches the timed calls cycle through: together far beyond a 32 MiB L3 cache at the
headline case (16 × 4,096 rows × 1,200 bytes)."""


@dataclass(frozen=True)
class Point:
    """A case without its approach, device and profile (what a sweep varies)."""

    sweep: str
    V: int
    D: int
    T: int
    trainable_fraction: float
    optimizer: str
    sparse: bool = False
    dtype: str = "float32"
    cuda_only: bool = False
    compile: str | None = None
    approaches: tuple[str, ...] | None = None  # None: every approach of the run
    process: str | None = None
    malloc: str | None = None
    loss: str | None = None

    def case(self, approach: str, device: str, profile: str) -> BenchmarkCase:
        return BenchmarkCase(
            approach=approach,
            device=device,
            dtype=self.dtype,
            V=self.V,
            D=self.D,
            trainable_fraction=self.trainable_fraction,
            T=self.T,
            optimizer=self.optimizer,
            sparse=self.sparse,
            sweep=self.sweep,
            profile=profile,
            compile=self.compile,
            process=self.process,
            malloc=self.malloc,
            loss=self.loss,
        )


@dataclass(frozen=True)
class BenchmarkCase:
    approach: str
    device: str
    dtype: str
    V: int
    D: int
    trainable_fraction: float
    T: int
    optimizer: str
    sparse: bool
    sweep: str
    profile: str
    compile: str | None = None
    process: str | None = None
    malloc: str | None = None
    loss: str | None = None
    seed: int = 0

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype: expected one of {sorted(DTYPES)}, got {self.dtype!r}")
        for name in ("V", "D", "T"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise ValueError(
                f"compile: expected None or one of {COMPILE_MODES}, got {self.compile!r}"
            )
        if self.process is not None and self.process not in PROCESSES:
            raise ValueError(f"process: expected None or one of {PROCESSES}, got {self.process!r}")
        if self.malloc is not None and self.malloc not in MALLOC_MODES:
            raise ValueError(f"malloc: expected None or one of {MALLOC_MODES}, got {self.malloc!r}")
        if self.loss is not None and self.loss not in LOSS_MODES:
            raise ValueError(f"loss: expected None or one of {LOSS_MODES}, got {self.loss!r}")
        if self.loss is not None and self.compile == "fullgraph_loss":
            raise ValueError(
                f"loss: {self.loss!r} has no loss for compile mode 'fullgraph_loss' to compile "
                "with the forward; expected loss None, or compile None or 'fullgraph'"
            )
        if not 0 < self.trainable_fraction <= 1:
            raise ValueError(
                "trainable_fraction: expected a fraction in (0, 1], got "
                f"{self.trainable_fraction!r}"
            )

    @property
    def n_trainable(self) -> int:
        return max(1, round(self.trainable_fraction * self.V))

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def description(self) -> dict:
        """The case's fields as a result row carries them."""
        return {**dataclasses.asdict(self), "n_trainable": self.n_trainable}

    def measurement_key(self) -> tuple:
        """Everything that changes what is measured (the sweep label does not)."""
        return dataclasses.astuple(dataclasses.replace(self, sweep=""))

    def label(self) -> str:
        kind = "sparse" if self.sparse else "dense"
        return (
            f"{self.approach}-{self.device}-{self.dtype}-V{self.V}-D{self.D}-"
            f"f{self.trainable_fraction:g}-T{self.T}-{self.optimizer}-{kind}"
            + (f"-compiled-{self.compile}" if self.compile else "")
            + (f"-{self.process}" if self.process else "")
            + (f"-malloc-{self.malloc}" if self.malloc else "")
            + (f"-loss-{self.loss}" if self.loss else "")
        )


@dataclass(frozen=True)
class BenchmarkProfile:
    name: str
    points: tuple[Point, ...]
    rounds: RoundsPolicy
    case_timeout_s: float
    ddp: Point | None = None
    ddp_steps: int = 5
    long_lived: Point | None = None
    long_lived_rounds: int = 5
    side_by_side: tuple[tuple[Point, ...], ...] = ()
    """Groups of points of one sweep timed together, each group in one process per device, in
    interleaved rounds as the long-lived sweep times its approaches: a compiled step beside the
    eager step it is compared with, a step given its output's gradient beside the step that
    computes the loss. Fresh processes of the same case differ by up to a third on
    2 cores, more than the compiled-against-eager difference, so the ratio comes from one
    process."""
    side_by_side_rounds: int = 20

    def only(self, sweeps: Sequence[str]) -> BenchmarkProfile:
        """This profile restricted to the named sweeps (``ddp`` and ``longlived`` or not)."""
        known = {p.sweep for p in self.points}
        known |= {p.sweep for p in (self.ddp, self.long_lived) if p is not None}
        known |= {p.sweep for group in self.side_by_side for p in group}
        unknown = sorted(set(sweeps) - known)
        if unknown:
            raise ValueError(
                f"sweeps: {unknown[0]!r} is not a sweep of profile {self.name!r}; "
                f"expected some of {sorted(known)}"
            )
        return dataclasses.replace(
            self,
            points=tuple(p for p in self.points if p.sweep in sweeps),
            ddp=self.ddp if "ddp" in sweeps else None,
            long_lived=self.long_lived if "longlived" in sweeps else None,
            side_by_side=tuple(
                group for group in self.side_by_side if group and group[0].sweep in sweeps
            ),
        )


def _compiled_points(optimizers: Sequence[str]) -> tuple[Point, ...]:
    """The headline step of the exact per-token approaches, compiled each way, beside their
    eager rows."""
    return tuple(
        Point("compiled", **{**HEADLINE, "optimizer": o}, compile=mode, approaches=EXACT)
        for mode in COMPILE_MODES
        for o in optimizers
    )


def _compiled_side_by_side(optimizers: Sequence[str]) -> tuple[tuple[Point, ...], ...]:
    """Per optimizer, one process: the exact per-token approaches eager and compiled each way."""
    return tuple(
        tuple(
            Point(
                COMPILED_SWEEP,
                **{**HEADLINE, "optimizer": o},
                compile=mode,
                approaches=EXACT,
                process=SIDE_BY_SIDE,
            )
            for mode in (None, *COMPILE_MODES)
        )
        for o in optimizers
    )


EXACT = ("split", "fused")
"""The approaches whose step is O(T·D): the ones worth compiling."""

RETAINED_APPROACHES = ("fused", "step_in_backward", "split", "freeze_all")
"""The retained sweep's approaches: the fastest exact ones and the lookup alone."""


def _retained_points(optimizers: Sequence[str]) -> tuple[Point, ...]:
    """The fastest approaches' headline step, eager, each in a fresh process that keeps freed
    memory, beside the headline's fresh processes whose ``malloc`` runs as it started."""
    return tuple(
        Point(
            RETAINED_SWEEP,
            **{**HEADLINE, "optimizer": o},
            approaches=RETAINED_APPROACHES,
            malloc=RETAINED,
        )
        for o in optimizers
    )


GRADIENT_APPROACHES = ("fused", "step_in_backward", "freeze_all")
"""The gradient sweep's approaches: the fastest exact ones and the lookup alone."""


def _gradient_side_by_side(optimizers: Sequence[str]) -> tuple[tuple[Point, ...], ...]:
    """Per optimizer, one process that keeps freed memory: the fastest approaches' eager headline
    step with the benchmark's loss and with the output's gradient given, in the same rounds."""
    return tuple(
        tuple(
            Point(
                GRADIENT_SWEEP,
                **{**HEADLINE, "optimizer": o},
                approaches=GRADIENT_APPROACHES,
                process=SIDE_BY_SIDE,
                malloc=RETAINED,
                loss=loss,
            )
            for loss in (None, *LOSS_MODES)
        )
        for o in optimizers
    )


QUICK_LONG_LIVED = (
    "fused",
    "step_in_backward",
    "split",
    "concat",
    "index_copy",
    PEFT_PEER,
    "grad_zero",
)
"""The quick profile's long-lived sweep: the per-token approaches that keep frozen rows exactly,
PEFT and the common answer (``grad_zero``); the full profile holds every approach."""


def _long_lived_point(approaches: tuple[str, ...] | None) -> Point:
    """The headline step, default AdamW, of ``approaches`` in one long-lived process."""
    return Point(LONG_LIVED_SWEEP, **HEADLINE, approaches=approaches, process=LONG_LIVED)


def _sweep(sweep: str, base: dict, **varied: Sequence) -> tuple[Point, ...]:
    ((name, values),) = varied.items()
    return tuple(Point(sweep=sweep, **{**base, name: value}) for value in values)


def _headline_points(optimizers: Sequence[str]) -> tuple[Point, ...]:
    dense = tuple(Point("headline", **{**HEADLINE, "optimizer": o}) for o in optimizers)
    sparse = Point("headline", **{**HEADLINE, "optimizer": "sparse_adam"}, sparse=True)
    bf16 = Point("headline", **HEADLINE, dtype="bfloat16", cuda_only=True)
    return (*dense, sparse, bf16)


QUICK_SWEEP_V = 50_000
"""The quick profile sweeps the fraction and tokens at an eighth of the headline vocabulary, a
point its vocabulary sweep shares, so it costs one measurement."""

LLM_POINTS = tuple(
    Point("llm", V=v, D=d, T=4_096, trainable_fraction=0.01, optimizer="adamw", dtype=dtype)
    for v in (128_000, 256_000)
    for d in (2_048, 4_096)
    for dtype in ("float32", "bfloat16")
)

PROFILES: dict[str, BenchmarkProfile] = {
    "quick": BenchmarkProfile(
        name="quick",
        points=(
            *_headline_points(["adamw", "adamw_fused", "sgd"]),
            *_compiled_points(["adamw", "adamw_fused"]),
            *_retained_points(["adamw", "adamw_fused"]),
            *_sweep("vocab", HEADLINE, V=(10_000, QUICK_SWEEP_V, 100_000, 400_000)),
            *_sweep(
                "fraction",
                {**HEADLINE, "V": QUICK_SWEEP_V},
                trainable_fraction=(0.001, 0.01, 0.1, 0.5),
            ),
            *_sweep("tokens", {**HEADLINE, "V": QUICK_SWEEP_V}, T=(512, 4_096, 16_384)),
            *(dataclasses.replace(p, cuda_only=True) for p in LLM_POINTS if p.V == 128_000),
        ),
        rounds=RoundsPolicy(
            phase_budget_s=0.3, min_rounds=3, max_rounds=60, warmup_rounds=1, warmup_s=0.25
        ),
        case_timeout_s=240,
        ddp=Point("ddp", **{**HEADLINE, "V": 20_000}),
        long_lived=_long_lived_point(QUICK_LONG_LIVED),
        side_by_side=(
            *_compiled_side_by_side(["adamw", "adamw_fused"]),
            *_gradient_side_by_side(["adamw", "adamw_fused"]),
        ),
    ),
    "full": BenchmarkProfile(
        name="full",
        points=(
            *_headline_points(["adamw", "adamw_fused", "sgd"]),
            *_compiled_points(["adamw", "adamw_fused", "sgd"]),
            *_retained_points(["adamw", "adamw_fused", "sgd"]),
            *_sweep("vocab", HEADLINE, V=(10_000, 20_000, 50_000, 100_000, 200_000, 400_000)),
            *_sweep(
                "fraction", HEADLINE, trainable_fraction=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 0.5)
            ),
            *_sweep("tokens", HEADLINE, T=(256, 1_024, 4_096, 16_384, 65_536)),
            *LLM_POINTS,
        ),
        rounds=RoundsPolicy(
            phase_budget_s=5.0, min_rounds=5, max_rounds=200, warmup_rounds=2, warmup_s=1.0
        ),
        case_timeout_s=1_800,
        ddp=Point("ddp", **HEADLINE),
        ddp_steps=10,
        long_lived=_long_lived_point(None),
        long_lived_rounds=10,
        side_by_side=(
            *_compiled_side_by_side(["adamw", "adamw_fused", "sgd"]),
            *_gradient_side_by_side(["adamw", "adamw_fused", "sgd"]),
        ),
        side_by_side_rounds=40,
    ),
    "smoke": BenchmarkProfile(
        name="smoke",
        points=(
            Point("headline", V=2_000, D=16, T=64, trainable_fraction=0.01, optimizer="adamw"),
            Point("headline", V=2_000, D=16, T=64, trainable_fraction=0.01, optimizer="sgd"),
            *_sweep(
                "vocab",
                {"D": 16, "T": 64, "trainable_fraction": 0.01, "optimizer": "adamw"},
                V=(1_000, 2_000),
            ),
        ),
        rounds=RoundsPolicy(phase_budget_s=0.01, min_rounds=3, max_rounds=3, warmup_rounds=1),
        case_timeout_s=120,
    ),
}
"""``quick`` (default, minutes on 2 cores), ``full`` (long), ``smoke`` (tests only)."""


def profile_cases(
    profile: BenchmarkProfile, approaches: Sequence[str], devices: Sequence[str]
) -> list[BenchmarkCase]:
    """Every case of ``profile``: each point × approach × device (CUDA-only points on CUDA)."""
    return [
        point.case(approach, device, profile.name)
        for device in devices
        for point in profile.points
        if device.startswith("cuda") or not (point.cuda_only or point.dtype != "float32")
        for approach in approaches
        if point.approaches is None or approach in point.approaches
    ]


def long_lived_cases(
    profile: BenchmarkProfile, approaches: Sequence[str], devices: Sequence[str]
) -> list[list[BenchmarkCase]]:
    """The long-lived sweep's cases, one list per device (one process each)."""
    if profile.long_lived is None:
        return []
    return _one_process_cases(profile, (profile.long_lived,), approaches, devices)


def side_by_side_cases(
    profile: BenchmarkProfile, approaches: Sequence[str], devices: Sequence[str]
) -> list[list[BenchmarkCase]]:
    """The cases of each :attr:`BenchmarkProfile.side_by_side` group, one list per group and
    device (one process each)."""
    return [
        cases
        for group in profile.side_by_side
        for cases in _one_process_cases(profile, group, approaches, devices)
    ]


def _one_process_cases(
    profile: BenchmarkProfile,
    points: tuple[Point, ...],
    approaches: Sequence[str],
    devices: Sequence[str],
) -> list[list[BenchmarkCase]]:
    return [
        cases
        for device in devices
        if (
            cases := profile_cases(
                dataclasses.replace(profile, points=points), approaches, [device]
            )
        )
    ]


def measurement_groups(cases: Sequence[BenchmarkCase]) -> list[list[BenchmarkCase]]:
    """Cases grouped by what is measured, in first-seen order: one measurement serves a group."""
    groups: dict[tuple, list[BenchmarkCase]] = {}
    for case in cases:
        groups.setdefault(case.measurement_key(), []).append(case)
    return list(groups.values())


TRAINABLE_STREAM, LOSS_STREAM, BATCH_STREAM, WEIGHT_STREAM = 1, 2, 1_000, 1_000_000
"""Generator seeds per input (plus the batch or chunk index), so no two inputs share draws."""


def _generator(
    case: BenchmarkCase, stream: int, device: torch.device | str = "cpu"
) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(case.seed * 1_000_003 + stream)


def _fill_rows(rows: Tensor, case: BenchmarkCase, first: int) -> Tensor:
    generator = _generator(case, WEIGHT_STREAM + first // WEIGHT_CHUNK_ROWS, case.device)
    return rows.uniform_(-0.5, 0.5, generator=generator)


def weight_chunks(case: BenchmarkCase) -> Iterator[tuple[int, Tensor]]:
    """``(first_row, rows)`` slices of the case's pretrained table, uniform in [-0.5, 0.5)."""
    for first in range(0, case.V, WEIGHT_CHUNK_ROWS):
        rows = min(WEIGHT_CHUNK_ROWS, case.V - first)
        chunk = torch.empty(rows, case.D, device=case.device, dtype=case.torch_dtype)
        yield first, _fill_rows(chunk, case, first)


def make_weight(case: BenchmarkCase) -> Tensor:
    """The case's pretrained ``(V, D)`` table, each slice drawn in place (no temporary copy)."""
    weight = torch.empty(case.V, case.D, device=case.device, dtype=case.torch_dtype)
    for first in range(0, case.V, WEIGHT_CHUNK_ROWS):
        _fill_rows(weight[first : first + WEIGHT_CHUNK_ROWS], case, first)
    return weight


def trainable_ids(case: BenchmarkCase) -> Tensor:
    """``n_trainable`` distinct random rows (on CPU; move them to the case's device to use)."""
    return torch.randperm(case.V, generator=_generator(case, TRAINABLE_STREAM))[: case.n_trainable]


def token_batches(case: BenchmarkCase) -> list[Tensor]:
    """``BATCHES`` batches of ``T`` token ids, uniform over the vocabulary (on CPU).

    Consecutive timed calls look up different batches, as training does: one batch repeated
    would keep its rows in the CPU's cache and time a lookup no training step sees.
    """
    return [
        torch.randint(0, case.V, (case.T,), generator=_generator(case, BATCH_STREAM + batch))
        for batch in range(BATCHES)
    ]


def loss_coefficients(case: BenchmarkCase) -> Tensor:
    """Positive ``(T, D)`` weights of the loss ``(output * coefficients).sum()`` (on CPU).

    Why this loss: its backward hands every approach the same dense output gradient, as a real
    model would, for the least a loss can move (read the output and the weights, write the
    output's gradient from the weights: :func:`bench.perf.bound.loss_bytes`; ``square().mean()``
    makes more passes); positive weights give every looked-up row a non-zero gradient.
    """
    generator = _generator(case, LOSS_STREAM)
    return torch.rand(case.T, case.D, generator=generator).add_(0.5).to(case.torch_dtype)


@functools.cache
def unique_trainable_tokens(case: BenchmarkCase) -> int:
    """Distinct trainable rows a batch looks up (rows a sparse update must touch), the mean over
    the case's batches, rounded."""
    is_trainable = torch.zeros(case.V, dtype=torch.bool)
    is_trainable[trainable_ids(case)] = True
    counts = [int(is_trainable[ids.unique()].sum()) for ids in token_batches(case)]
    return round(sum(counts) / len(counts))
