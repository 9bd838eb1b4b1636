"""``fused``'s compact lookup as one opaque operator, so ``torch.compile`` runs the eager kernel.

Why an operator: the compact lookup selects the h tokens of trainable rows with ``nonzero``, a
shape only the data knows. Traced, that is a data-dependent shape (and on CUDA a host
synchronisation), so the compiled step used to fall back to the fixed-shape Function, which works
on all T tokens and made the compiled step slower than eager. Registered with
``torch.library.custom_op``, the lookup is one node whose output shape (T, D) is fixed by the ids:
Dynamo and AOTAutograd see a fake kernel for shapes and an autograd formula, inductor calls the
eager kernel. ``torch.library.opcheck`` checks the registration (``tests/test_fused.py``).

``torch.func`` cannot go through a custom operator (pytorch issues 168393, 170834, 179652), so
``vmap``, ``grad`` and ``jvp`` keep using :class:`impls.fused.TrainableOverwriteWithJvp`; this
operator serves ``torch.compile`` only.

On CPU the kernels work on the h tokens of trainable rows; on other devices they keep every shape
fixed (``torch.where`` over all T tokens), which needs no host synchronisation and can be captured
in a CUDA graph.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import renormed

NO_PADDING = -1
"""``padding_idx`` of the operators when no trainable row is the padding row (schemas take no
``int?`` default here, and -1 is never a row of the trainable parameter)."""


@torch.library.custom_op("rowfreeze::compact_lookup", mutates_args=())
def compact_lookup(
    frozen_weight: Tensor,
    ids: Tensor,
    local: Tensor,
    trainable: Tensor,
    max_norm: float | None,
    norm_type: float,
    padding_idx: int,
    scale_grad_by_freq: bool,
) -> Tensor:
    """``out[t] = trainable[local[t]] if local[t] >= 0 else renormed(frozen_weight[ids[t]])``.

    ``ids`` and ``local`` are flat (T,); ``padding_idx`` and ``scale_grad_by_freq`` shape only the
    backward and are carried here so the autograd formula can read them from the inputs.
    """
    out = renormed(frozen_weight.index_select(0, ids), max_norm, norm_type)
    if local.device.type != "cpu":
        hit = (local >= 0).unsqueeze(-1)
        return torch.where(hit, trainable.index_select(0, local.clamp(min=0)), out)
    positions = (local >= 0).nonzero().squeeze(1)
    # out is this kernel's own fresh gather: overwrite the h rows in place, no T×D copy.
    return out.index_copy_(
        0, positions, trainable.index_select(0, local.index_select(0, positions))
    )


@compact_lookup.register_fake
def _(frozen_weight, ids, local, trainable, max_norm, norm_type, padding_idx, scale_grad_by_freq):
    return frozen_weight.new_empty((ids.shape[0], frozen_weight.shape[1]))


@torch.library.custom_op("rowfreeze::compact_lookup_backward", mutates_args=())
def compact_lookup_backward(
    grad_out: Tensor, local: Tensor, num_trainable: int, padding_idx: int, scale_grad_by_freq: bool
) -> Tensor:
    """The ``(n, D)`` gradient ``F.embedding`` gives the trainable rows for these tokens."""
    padding = None if padding_idx == NO_PADDING else padding_idx
    if local.device.type != "cpu":
        return trainable_gradient(grad_out, local, num_trainable, padding, scale_grad_by_freq)
    positions = (local >= 0).nonzero().squeeze(1)
    return trainable_gradient(
        grad_out.index_select(0, positions),
        local.index_select(0, positions),
        num_trainable,
        padding,
        scale_grad_by_freq,
    )


@compact_lookup_backward.register_fake
def _(grad_out, local, num_trainable, padding_idx, scale_grad_by_freq):
    return grad_out.new_empty((num_trainable, grad_out.shape[-1]))


def trainable_gradient(
    grad_out: Tensor,
    local: Tensor,
    num_trainable: int,
    local_padding_idx: int | None,
    scale_grad_by_freq: bool,
    sparse: bool = False,
) -> Tensor:
    """The ``(n, D)`` gradient ``F.embedding`` would give the trainable rows for these tokens
    (``local``: each token's trainable row or -1).

    The tokens' gradient is added into the fresh zeros in place rather than into a copy of them:
    one ``(n, D)`` buffer and pass fewer (0.24 against 0.41 ms at n = 4,000, D = 300 on 2 cores).
    The generated vmap rule of :mod:`impls.fused`'s Functions batches the in-place add too: the
    ``torch.func`` tests (``vmap`` of ``grad`` over ids and over parameters, ``is_grads_batched``)
    give the gradients taken one at a time.
    """
    rows = local.clamp(min=0)
    kept = local >= 0
    if local_padding_idx is not None:
        kept = kept & (local != local_padding_idx)
    shape = (num_trainable, grad_out.shape[-1])
    if sparse:
        # Only rows the batch looks up may appear, or SparseAdam would move the others, so the
        # sparse gradient's size comes from the data: the one selection by mask in fused.
        return torch.sparse_coo_tensor(
            rows[kept].unsqueeze(0), grad_out[kept], shape, check_invariants=False
        )
    grad_rows = torch.where(kept.unsqueeze(-1), grad_out, torch.zeros_like(grad_out))
    if scale_grad_by_freq:
        counts = grad_out.new_zeros(num_trainable).index_add(0, rows, kept.to(grad_out.dtype))
        grad_rows = grad_rows / counts.index_select(0, rows).clamp(min=1).unsqueeze(-1)
    return grad_out.new_zeros(shape).index_add_(0, rows, grad_rows)


def _setup_context(ctx, inputs, output) -> None:
    frozen_weight, _, local, trainable, _, _, padding_idx, scale_grad_by_freq = inputs
    if frozen_weight.requires_grad:
        raise RuntimeError(
            "rowfreeze::compact_lookup: frozen_weight requires a gradient; it is the frozen "
            "buffer and this operator differentiates only the trainable rows"
        )
    ctx.save_for_backward(local)
    ctx.num_trainable = trainable.shape[0]
    ctx.padding_idx, ctx.scale_grad_by_freq = padding_idx, scale_grad_by_freq


def _backward(ctx, grad_out):
    (local,) = ctx.saved_tensors
    grad_trainable = None
    if ctx.needs_input_grad[3]:
        grad_trainable = compact_lookup_backward(
            grad_out, local, ctx.num_trainable, ctx.padding_idx, ctx.scale_grad_by_freq
        )
    return None, None, None, grad_trainable, None, None, None, None


compact_lookup.register_autograd(_backward, setup_context=_setup_context)
