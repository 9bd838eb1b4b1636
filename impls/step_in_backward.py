"""``step_in_backward``: ``fused``, with the trainable rows' optimizer update run inside backward.

Where from: FBGEMM's and TorchRec's table-batched embeddings apply the optimizer to a whole table
during backward; PyTorch's "optimizer step in backward" recipe does it for any parameter with
``Tensor.register_post_accumulate_grad_hook``. No tool does it for a subset of rows. Here the
subset is ``fused``'s ``(n, D)`` trainable parameter: ``attach(optimizer)`` registers a hook that,
as soon as backward has finished that parameter's gradient, steps the parameter with the
optimizer's own class, hyperparameters and state (``optimizer.state``, so checkpoints and LR
schedulers see one optimizer), then drops the gradient; the loop's ``optimizer.step()`` skips the
parameter because its ``.grad`` is None. Opt-in: without ``attach`` it is ``fused``.

Kernel: where the optimizer left the choice of kernel to torch (``fused`` and ``foreach`` unset)
and torch has a fused kernel for its exact class on this device (Adam, AdamW, SGD; Adagrad on
CPU), the rows are stepped by that fused kernel, one pass over parameter, gradient and state,
on float32 and float64 rows (a reordering of the same arithmetic, far inside the matrix's
tolerance of the optimizer it replaces; lower precisions keep torch's default kernel, whose
rounding differs more). On CPU torch's default for AdamW is the per-tensor kernel, whose
``sqrt`` over the moments of rows no batch has reached is slow (see the README); this is most of
what this approach saves per step. An optimizer that chose its kernel keeps it.
Cost per step: as ``fused``; the update moves from ``optimizer.step()`` into backward, and the
``(n, D)`` gradient is freed there instead of living until ``zero_grad``.
Breaks (the known limits of any update in backward, recorded in the truth table):
gradient accumulation steps once per backward instead of once per ``optimizer.step()``;
``clip_grad_norm_`` and a ``GradScaler`` act after the rows have already been stepped with the
raw gradient; under DDP or FSDP the rows would step on the local gradient before it is
all-reduced, so ``attach`` refuses a process group of more than one rank.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from .base import UnsupportedOption
from .fused import Fused

FUSED_KERNEL_DEVICES: dict[type[torch.optim.Optimizer], frozenset[str]] = {
    torch.optim.Adam: frozenset({"cpu", "cuda"}),
    torch.optim.AdamW: frozenset({"cpu", "cuda"}),
    torch.optim.SGD: frozenset({"cpu", "cuda"}),
    torch.optim.Adagrad: frozenset({"cpu"}),
}
"""Optimizer classes (exact types: a subclass may change ``step``) and the devices on which
torch 2.13 has a fused kernel for them."""
FUSED_KERNEL_DTYPES = frozenset({torch.float32, torch.float64})
KERNEL_KEYS = ("fused", "foreach")


class StepInBackward(Fused):
    """:class:`impls.fused.Fused` whose trainable rows are stepped during backward once
    ``attach``ed to the optimizer."""

    name = "step_in_backward"

    _hook: RemovableHandle | None = None

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        parameter = self.trainable_weight
        if not parameter.requires_grad or _group_of(optimizer, parameter) is None:
            return  # nothing of this table is trained by that optimizer
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            raise UnsupportedOption(
                f"approach {self.name!r} steps the trainable rows during backward, on this rank's "
                "own gradient, before DDP or FSDP has all-reduced it; use 'fused' with a process "
                f"group of {torch.distributed.get_world_size()} ranks"
            )
        update = RowsStep(optimizer, parameter, sparse=self.options.sparse)
        self._hook = parameter.register_post_accumulate_grad_hook(update)


class RowsStep:
    """The hook: step one parameter with ``optimizer``'s settings and state, then drop its
    gradient. Reads the parameter's group at every call, so an LR scheduler's change or a
    ``load_state_dict`` in between is what the next step uses."""

    def __init__(self, optimizer: torch.optim.Optimizer, parameter: nn.Parameter, sparse: bool):
        self.optimizer = optimizer
        group = _group_of(optimizer, parameter)
        kind = type(optimizer)
        accepted = inspect.signature(kind).parameters
        arguments = {k: v for k, v in group.items() if k != "params" and k in accepted}
        self.kernel = {}
        if (
            not sparse
            and parameter.device.type in FUSED_KERNEL_DEVICES.get(kind, ())
            and parameter.dtype in FUSED_KERNEL_DTYPES
            and group.get("fused") is None
            and not group.get("foreach")
            and not group.get("differentiable")
        ):
            self.kernel = {"fused": True, "foreach": False}
        self.rows_optimizer = kind([parameter], **{**arguments, **self.kernel})

    def __call__(self, parameter: Tensor) -> None:
        group = _group_of(self.optimizer, parameter)
        if group is None:  # the optimizer no longer holds it: leave the gradient to the loop
            return
        own = self.rows_optimizer.param_groups[0]
        own.update({k: v for k, v in group.items() if k != "params"})
        own.update(self.kernel)
        self.rows_optimizer.state = self.optimizer.state
        self.rows_optimizer.step()
        parameter.grad = None


def _group_of(optimizer: torch.optim.Optimizer, parameter: Tensor) -> dict[str, Any] | None:
    return next(
        (g for g in optimizer.param_groups if any(p is parameter for p in g["params"])), None
    )
