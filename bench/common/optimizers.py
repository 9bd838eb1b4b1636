"""Named optimizer configurations: every scenario refers to one by name.

A name fixes the class and the keyword arguments, so a result row, a counterexample and a test
all mean the same optimizer. Defaults are torch's own unless the name says otherwise — the point
is to check what users get when they do not tune anything (AdamW's default weight decay of 0.01
included).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    class_name: str
    kwargs: dict = field(default_factory=dict)
    needs_sparse_grad: bool = False
    description: str = ""
    own_scenario: bool = True
    """Whether the matrix has an optimizer scenario of this name (float32, plain loop); False
    for a configuration made for another scenario, such as the half-precision dtypes."""

    def build(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return getattr(torch.optim, self.class_name)(list(params), **self.kwargs)

    @property
    def weight_decay(self) -> float:
        """The decay this configuration applies: its own ``weight_decay`` or the class default.

        Read from torch's signature rather than copied, because AdamW's default of 0.01 is
        exactly the detail that decides whether zeroing gradients keeps frozen rows frozen.
        """
        if "weight_decay" in self.kwargs:
            return float(self.kwargs["weight_decay"])
        cls = getattr(torch.optim, self.class_name)
        default = inspect.signature(cls).parameters.get("weight_decay")
        return float(default.default) if default and default.default is not None else 0.0

    def source(self, params: str = "emb.parameters()") -> str:
        """The Python expression that builds this optimizer (for pasteable counterexamples)."""
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"torch.optim.{self.class_name}({params}{args})"


def _spec(
    name: str, class_name: str, description: str, own_scenario: bool = True, **kwargs
) -> OptimizerSpec:
    sparse = class_name == "SparseAdam"
    return OptimizerSpec(name, class_name, kwargs, sparse, description, own_scenario)


OPTIMIZERS: dict[str, OptimizerSpec] = {
    s.name: s
    for s in (
        _spec("sgd", "SGD", "plain SGD, torch defaults (lr 1e-3)"),
        _spec("sgd_momentum", "SGD", "SGD with momentum 0.9", momentum=0.9),
        _spec(
            "sgd_momentum_nesterov",
            "SGD",
            "SGD with Nesterov momentum 0.9",
            momentum=0.9,
            nesterov=True,
        ),
        _spec("sgd_weight_decay", "SGD", "SGD with L2 weight decay 0.01", weight_decay=0.01),
        _spec("adam", "Adam", "Adam, torch defaults (no weight decay)"),
        _spec("adam_weight_decay", "Adam", "Adam with L2 weight decay 0.01", weight_decay=0.01),
        _spec("adam_amsgrad", "Adam", "Adam with amsgrad", amsgrad=True),
        _spec("adamw", "AdamW", "AdamW, torch defaults (decoupled weight decay 0.01)"),
        _spec("adamw_foreach", "AdamW", "AdamW, foreach implementation", foreach=True),
        _spec("adamw_fused", "AdamW", "AdamW, fused implementation", fused=True),
        _spec("adam_fused", "Adam", "Adam, fused implementation", fused=True),
        _spec(
            "sgd_fused", "SGD", "SGD with momentum, fused implementation", momentum=0.9, fused=True
        ),
        _spec("adagrad", "Adagrad", "Adagrad, torch defaults"),
        _spec("adadelta", "Adadelta", "Adadelta, torch defaults"),
        _spec("adamax", "Adamax", "Adamax, torch defaults"),
        _spec("nadam", "NAdam", "NAdam, torch defaults"),
        _spec("radam", "RAdam", "RAdam, torch defaults"),
        _spec("rmsprop", "RMSprop", "RMSprop, torch defaults"),
        _spec("rprop", "Rprop", "Rprop, torch defaults"),
        _spec("asgd", "ASGD", "ASGD, torch defaults"),
        _spec("adafactor", "Adafactor", "Adafactor, torch defaults (factored second moment)"),
        _spec("sparse_adam", "SparseAdam", "SparseAdam (needs sparse=True gradients)"),
        _spec(
            "adam_half_precision",
            "Adam",
            "Adam with lr 0.05 and eps 1e-4: a step larger than half a bfloat16 ulp for weights "
            "below 16 in magnitude (the default lr = 1e-3 rounds away from 0.5 up), and an eps "
            "float16 can represent (the default 1e-8 underflows to 0)",
            own_scenario=False,
            lr=0.05,
            eps=1e-4,
        ),
    )
}


def optimizer_spec(name: str) -> OptimizerSpec:
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise ValueError(
            f"optimizer: unknown name {name!r}; expected one of {sorted(OPTIMIZERS)}"
        ) from None
