"""The training scenarios of the verification matrix: one named, documented value per axis.

A scenario fixes everything about a check except the random case: optimizer, embedding options,
dtype, device and how the loop is written. Scenario names are the second key of the truth table
(``bench.verify.truth_table``) and of ``verification.json``; the optimizer scenarios are named after
their optimizer so that a rule about "weight decay" reads as a list of names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from bench.common.optimizers import OPTIMIZERS
from bench.common.schema import CORE_PROPERTIES, RUNS, SCENARIO_GROUPS
from bench.verify.strategies import cases, pretrained_first_example, worked_example
from bench.verify.trajectory import Loop, TrainingCase, on, with_options

LOOP_OPTIMIZER = "adam"  # no weight decay, elementwise: a loop feature's effect shows alone
HALF_PRECISION_OPTIMIZER = "adam_half_precision"


@dataclass(frozen=True)
class Scenario:
    name: str
    group: str  # one of SCENARIO_GROUPS
    description: str
    optimizer: str = LOOP_OPTIMIZER
    options: dict = field(default_factory=dict)
    padding: str | None = "any"  # see bench.verify.strategies.cases
    dtype: str = "float32"
    device: str = "cpu"
    loop: Loop = field(default_factory=Loop)
    properties: tuple[str, ...] = CORE_PROPERTIES
    max_examples: int | None = None  # a cap for scenarios whose examples are slow
    witness: Callable[[], TrainingCase] | None = None  # a fixed case run before drawn ones

    def __post_init__(self) -> None:
        if self.group not in SCENARIO_GROUPS:
            raise ValueError(
                f"group: expected one of {SCENARIO_GROUPS} for scenario {self.name!r}, "
                f"got {self.group!r}"
            )

    @property
    def weight_decay(self) -> float:
        """The weight decay the scenario's optimizer applies (its default included)."""
        return OPTIMIZERS[self.optimizer].weight_decay

    @property
    def sparse_gradients(self) -> bool:
        return bool(self.options.get("sparse", False))

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def params(self) -> dict:
        """Everything that defines the scenario, for the result record."""
        params = asdict(self)
        params["optimizer_kwargs"] = OPTIMIZERS[self.optimizer].kwargs
        params["optimizer_class"] = OPTIMIZERS[self.optimizer].class_name
        return params

    def prepare(self, case: TrainingCase) -> TrainingCase:
        """The drawn case with this scenario's options, dtype and device."""
        return on(with_options(case, **self.options), self.device, self.torch_dtype)

    def usable(self, case: TrainingCase) -> bool:
        """Whether a drawn case can be run at all (not whether it passes).

        torch.optim.Adafactor divides by the parameter's row count, so an empty (0, D) parameter
        — what split-style approaches hold when every row is frozen — raises ZeroDivisionError.
        """
        return not (
            OPTIMIZERS[self.optimizer].class_name == "Adafactor" and not case.trainable.any()
        )

    def witnesses(self) -> list[TrainingCase]:
        """Fixed cases every run of this scenario checks before drawn ones, so a violation that
        only some tables show is found whatever hypothesis draws: the worked example of the
        zero-gradient answer, the two-table snippet's own layout (drawn about 1 in 100 times)
        and the scenario's own witness."""
        own = [self.witness()] if self.witness else []
        return [worked_example(), pretrained_first_example(), *own]

    def cases(self):
        """The hypothesis strategy of cases for this scenario."""
        return cases(padding=self.padding)

    def available(self) -> str | None:
        """Why this scenario cannot run on this machine, or None."""
        if self.device == "cuda" and not torch.cuda.is_available():
            return "no CUDA device"
        return None


def max_norm_witness() -> TrainingCase:
    """A frozen row longer than max_norm=1 (renormalising it in place breaks P1) and a trainable
    row shorter than it (only training can change it, so an approach that does not train it
    breaks P2 even though forward rewrites longer rows)."""
    weight = torch.tensor([[3.0, 0.0], [0.3, 0.4]], dtype=torch.float64)
    ids = torch.tensor([0, 1])
    coefficients = torch.ones(2, 2, dtype=torch.float64)
    return TrainingCase(weight, torch.tensor([False, True]), (ids, ids), (coefficients,) * 2, {})


def _optimizer_scenarios() -> list[Scenario]:
    return [
        Scenario(
            name,
            "optimizer",
            f"{spec.description}; plain loop, float32",
            optimizer=name,
            options={"sparse": True} if spec.needs_sparse_grad else {},
        )
        for name, spec in OPTIMIZERS.items()
        if spec.own_scenario
    ]


DISTRIBUTED = ("ddp", "fsdp2")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        *_optimizer_scenarios(),
        Scenario("padding_on_frozen", "option", "padding_idx on a frozen row", padding="frozen"),
        Scenario(
            "padding_on_trainable",
            "option",
            "padding_idx on a trainable row (it must get no gradient, as in nn.Embedding)",
            padding="trainable",
        ),
        Scenario(
            "max_norm",
            "option",
            "max_norm=1.0: nn.Embedding renormalises looked-up rows in place during forward",
            options={"max_norm": 1.0},
            witness=max_norm_witness,
        ),
        Scenario(
            "scale_grad_by_freq",
            "option",
            "scale_grad_by_freq=True: gradients divided by each id's count in the batch",
            options={"scale_grad_by_freq": True},
        ),
        Scenario(
            "sparse_sgd",
            "option",
            "sparse=True with SGD",
            optimizer="sgd",
            options={"sparse": True},
        ),
        Scenario(
            "sparse_adagrad",
            "option",
            "sparse=True with Adagrad",
            optimizer="adagrad",
            options={"sparse": True},
        ),
        Scenario("float64", "dtype", "table and training in float64", dtype="float64"),
        Scenario(
            "bfloat16",
            "dtype",
            "table and training in bfloat16, Adam(lr=0.05, eps=1e-4): each step moves a weight "
            "by more than bfloat16's resolution, in the ideal run too",
            optimizer=HALF_PRECISION_OPTIMIZER,
            dtype="bfloat16",
        ),
        Scenario(
            "float16",
            "dtype",
            "table and training in float16, Adam(lr=0.05, eps=1e-4): eps is representable "
            "in float16 and each step is above its resolution, so the ideal run trains",
            optimizer=HALF_PRECISION_OPTIMIZER,
            dtype="float16",
        ),
        Scenario(
            "float16_adam_eps",
            "dtype",
            "table and training in float16 with Adam's defaults: eps = 1e-8 underflows to 0, so "
            "a row without a gradient yet becomes 0/0 = NaN, in the ideal run too (compared "
            "NaN-aware); P2 is not judged, as a step of lr = 1e-3 rounds away on weights of 4 "
            "and more",
            dtype="float16",
            properties=(RUNS, "P1", "P3", "P4", "P5", "P6"),
        ),
        Scenario(
            "clip_grad_norm",
            "loop",
            "clip_grad_norm_(parameters(), 0.1) after backward, with SGD (Adam would undo a "
            "constant rescaling)",
            optimizer="sgd",
            loop=Loop(clip_grad_norm=0.1),
        ),
        Scenario(
            "grad_accumulation",
            "loop",
            "each step accumulates the gradients of 2 micro-batches",
            loop=Loop(micro_batches=2),
        ),
        Scenario(
            "autocast_bf16",
            "loop",
            "forward and loss under torch.autocast('cpu', dtype=torch.bfloat16)",
            loop=Loop(autocast="bfloat16", tied_output=True),
        ),
        Scenario(
            "compile",
            "loop",
            "the module is torch.compile'd (aot_eager backend: traced forward and backward)",
            loop=Loop(compile="aot_eager"),
            properties=(RUNS, "P1", "P2", "P3", "P4", "P5"),
            max_examples=3,
        ),
        Scenario(
            "compile_fullgraph",
            "loop",
            "the module is torch.compile'd with fullgraph=True (aot_eager backend): a graph "
            "break, a host read or a data-dependent shape is an error",
            loop=Loop(compile="aot_eager", fullgraph=True),
            properties=(RUNS, "P1", "P2", "P3", "P4", "P5"),
            max_examples=3,
        ),
        Scenario(
            "torch_func",
            "loop",
            "gradients by torch.func.grad over functional_call, forward vmap'd over the batch "
            "dimension, written to .grad before optimizer.step()",
            loop=Loop(func=True),
            properties=(RUNS, "P1", "P2", "P3", "P4", "P5"),
        ),
        Scenario(
            "tied_output",
            "loop",
            "an output layer tied to the table: logits = out @ effective_weight().T",
            loop=Loop(tied_output=True),
        ),
        Scenario(
            "checkpoint",
            "loop",
            "save model and optimizer state mid-run, load into fresh objects, continue (AdamW)",
            optimizer="adamw",
            properties=(RUNS, "P6"),
        ),
        Scenario(
            "ddp",
            "distributed",
            "DistributedDataParallel, gloo, 2 ranks on loopback, different data per rank",
            properties=(RUNS, "P1", "P7"),
        ),
        Scenario(
            "fsdp2",
            "distributed",
            "FSDP2 fully_shard, gloo, 2 ranks on loopback, different data per rank",
            properties=(RUNS, "P1", "P7"),
        ),
        Scenario(
            "cuda_adamw",
            "device",
            "AdamW defaults on CUDA, float32",
            optimizer="adamw",
            device="cuda",
        ),
        Scenario(
            "cuda_autocast_fp16",
            "device",
            "CUDA autocast float16 with GradScaler",
            device="cuda",
            loop=Loop(autocast="float16", grad_scaler=True),
        ),
    )
}
