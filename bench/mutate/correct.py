"""Correct implementations written independently of :mod:`impls`: the matrix's control group.

A verification suite is only as good as its false alarms are rare: each of these keeps exactly
the trainable rows as its parameter, in three different ways, using torch alone (no code from
``impls``), and must hold every cell it runs. Each is a factory
``NAME(weight, trainable, **options) -> nn.Module``, named to the matrix by reference
(``bench.mutate.correct:NAME``) exactly as a user's code is, and refuses with
``NotImplementedError`` the options it does not implement (those cells are unsupported, which is
not a violation).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _refuse(name: str, options: dict[str, Any], implemented: set[str]) -> None:
    """The suite passes only the options a scenario sets; those not implemented are refused."""
    if unknown := {k: v for k, v in options.items() if k not in implemented}:
        raise NotImplementedError(f"{name} implements {sorted(implemented)} only, not {unknown}")


class _TrainableRows(nn.Module):
    """What all three share by contract, not by code: the frozen rows as a buffer copied from
    the weight given, the trainable rows as an ``(n, D)`` parameter, and each id's local row."""

    def __init__(self, weight: Tensor, trainable: Tensor, padding_idx: int | None = None):
        super().__init__()
        mask = trainable.clone() if trainable.dtype == torch.bool else _mask_of(trainable, weight)
        ids = mask.nonzero().squeeze(1)
        self.register_buffer("pretrained", weight.detach().clone())
        self.register_buffer("rows_of_table", ids)
        local = torch.full((weight.shape[0],), -1, dtype=torch.long, device=weight.device)
        local[ids] = torch.arange(ids.numel(), device=weight.device)
        self.register_buffer("local", local)
        self.rows = nn.Parameter(weight.detach()[ids].clone())
        self.padding_idx = padding_idx


def _mask_of(ids: Tensor, weight: Tensor) -> Tensor:
    mask = torch.zeros(weight.shape[0], dtype=torch.bool, device=weight.device)
    mask[ids] = True
    return mask


class ScatteredTable(_TrainableRows):
    """The table is rebuilt every forward by ``index_put`` of the parameter into the frozen
    copy, then read by ``F.embedding`` with the caller's options."""

    def __init__(self, weight, trainable, padding_idx=None, scale_grad_by_freq=False):
        super().__init__(weight, trainable, padding_idx)
        self.scale_grad_by_freq = scale_grad_by_freq

    def effective_weight(self) -> Tensor:
        return self.pretrained.index_put((self.rows_of_table,), self.rows)

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(
            ids,
            self.effective_weight(),
            padding_idx=self.padding_idx,
            scale_grad_by_freq=self.scale_grad_by_freq,
        )


def scattered_table(weight: Tensor, trainable: Tensor, **options: Any) -> nn.Module:
    """The table rebuilt every forward by ``index_put`` of the trainable rows into the frozen
    copy, read by ``F.embedding`` (``padding_idx`` and ``scale_grad_by_freq`` implemented)."""
    _refuse("scattered_table", options, {"padding_idx", "scale_grad_by_freq"})
    return ScatteredTable(weight, trainable, **options)


class TwoLookups(_TrainableRows):
    """Two gathers per token, one from the frozen copy and one from the parameter, and a
    per-token ``where``; a padding token's trainable gather is detached, so its row gets no
    gradient (what ``padding_idx`` means)."""

    def effective_weight(self) -> Tensor:
        table = self.pretrained.clone()
        table[self.rows_of_table] = self.rows
        return table

    def forward(self, ids: Tensor) -> Tensor:
        if not self.rows.shape[0]:  # no row trains: nothing to gather from the parameter
            return self.pretrained[ids]
        local = self.local[ids]
        trained = self.rows[local.clamp(min=0)]
        if self.padding_idx is not None:
            padding = (ids == self.padding_idx).unsqueeze(-1)
            trained = torch.where(padding, trained.detach(), trained)
        return torch.where((local >= 0).unsqueeze(-1), trained, self.pretrained[ids])


def two_lookups(weight: Tensor, trainable: Tensor, **options: Any) -> nn.Module:
    """Two gathers per token and a per-token ``where``; a padding token's trainable gather is
    detached (``padding_idx`` implemented)."""
    _refuse("two_lookups", options, {"padding_idx"})
    return TwoLookups(weight, trainable, **options)


class _RowsOfTokens(torch.autograd.Function):
    """Forward: each token's row, from the parameter where it has one, else the frozen copy.
    Backward: the gradient of the tokens of trainable rows summed into their rows
    (``index_add``), the padding row's left out. ``setup_context`` form with a generated vmap
    rule, so ``torch.func`` can go through it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(rows: Tensor, frozen: Tensor, local: Tensor, keep: Tensor) -> Tensor:
        trained = rows.index_select(0, local.clamp(min=0))
        return torch.where((local >= 0).unsqueeze(-1), trained, frozen)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        rows, _, local, keep = inputs
        ctx.save_for_backward(local, keep)
        ctx.rows_shape = rows.shape

    @staticmethod
    def backward(ctx, grad: Tensor):
        local, keep = ctx.saved_tensors
        kept = ((local >= 0) & keep).unsqueeze(-1)
        tokens = torch.where(kept, grad, torch.zeros_like(grad))
        summed = grad.new_zeros(ctx.rows_shape).index_add(0, local.clamp(min=0), tokens)
        return summed, None, None, None


class SummedGradient(_TrainableRows):
    """A custom autograd Function over the flattened tokens: the hand-written backward done
    right (repeated ids accumulate, the padding row gets nothing)."""

    def effective_weight(self) -> Tensor:
        if not self.rows.shape[0]:
            return self.pretrained
        # The whole table for an output layer tied to it: padding_idx is about lookups only.
        every_row = torch.ones_like(self.local, dtype=torch.bool)
        return _RowsOfTokens.apply(self.rows, self.pretrained, self.local, every_row)

    def forward(self, ids: Tensor) -> Tensor:
        if not self.rows.shape[0]:  # no row trains: nothing to gather from the parameter
            return self.pretrained[ids]
        flat = ids.reshape(-1)
        keep = (
            torch.ones_like(flat, dtype=torch.bool)
            if self.padding_idx is None
            else (flat != self.padding_idx)
        )
        out = _RowsOfTokens.apply(
            self.rows, self.pretrained.index_select(0, flat), self.local[flat], keep
        )
        return out.view(*ids.shape, out.shape[-1])


def summed_gradient(weight: Tensor, trainable: Tensor, **options: Any) -> nn.Module:
    """A hand-written autograd Function whose backward ``index_add``s the tokens' gradient
    into the trainable rows, padding tokens left out (``padding_idx`` implemented)."""
    _refuse("summed_gradient", options, {"padding_idx"})
    return SummedGradient(weight, trainable, **options)


CORRECT = (scattered_table, two_lookups, summed_gradient)
"""The independently written correct implementations, in the order the report lists them."""
