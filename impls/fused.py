"""``fused``: ``split``'s storage, looked up by one custom autograd Function that moves the least.

Where from: built here as the fast path. ``split`` already keeps the frozen rows in a buffer and
the n trainable rows in an ``(n, D)`` parameter; its lookup spends most of a step in extra passes
(a boolean ``index_put`` over T×D, an ``F.embedding`` backward that sorts the trainable ids). This
lookup is one custom ``torch.autograd.Function``: forward gathers all T rows from the frozen
buffer, then overwrites only the h tokens that hit trainable rows; backward selects those h rows
of the incoming gradient and ``index_add``s them into a fresh ``(n, D)`` gradient.
Cost per step: forward O(T·D) gather + O(T) id mapping + O(h·D) overwrite; backward O(h·D) plus
O(n·D) to zero the dense gradient; optimizer O(n·D). Nothing V-sized is allocated, nothing sorts
the T ids. One host sync per step (``nonzero`` sizes the h hit tokens).
Optimizer: any ``torch.optim`` optimizer; the setting decides the step time. At V=400,000,
D=300, T=4,096, n=4,000, AdamW, on a shared 2-core CPU: ``AdamW(fused=True)`` 0.6-0.8 ms a step
(one pass over parameter, gradient and both moments; the 19 MB of them stay in cache), torch's
default AdamW 2.5-3 ms and ``foreach=True`` 2.2-2.6 ms (about ten passes each, and each pass a
parallel region that stalls when other processes hold the cores); PEFT's trainable tokens takes
about 450 ms and the zero-gradient answer about 1 s.
Lazy updates (``sparse=True``): backward emits a row-sparse ``(n, D)`` gradient holding only the h
hit tokens. With ``torch.optim.SparseAdam`` only the rows seen in the batch change, moments
included: O(h·D) optimizer cost (0.35-0.45 ms a step above, whatever n), but *not* the dense
AdamW trajectory (unseen rows neither decay nor keep moving on their momentum). It equals
``split`` with ``sparse=True`` and SparseAdam.
On CUDA ``nonzero`` makes the step wait for the device once, and ``index_add`` sums repeated ids
with atomics (in no fixed order).
Options: as ``split`` (same buffers, parameter and state-dict keys, so checkpoints move between
the two): ``max_norm`` renormalises hit trainable rows in place and frozen rows only in the copy;
``padding_idx`` zeroes the gradient of tokens on a trainable padding row; ``scale_grad_by_freq``
divides each token's gradient by its id's count in the batch.
Breaks: ``sparse`` with ``scale_grad_by_freq`` is refused at construction (torch's sparse
embedding backward raises for it, so ``split`` fails at its first backward instead).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import EmbeddingOptions, UnsupportedOption, renorm_looked_up_rows_, renormed
from .split import Split


class FusedLookup(torch.autograd.Function):
    """``out[t] = trainable[hit_rows[k]] if t == hit_positions[k] else frozen[ids[t]]``."""

    @staticmethod
    def forward(
        ctx,
        trainable_weight: Tensor,
        frozen_weight: Tensor,
        flat_ids: Tensor,
        hit_positions: Tensor,
        hit_rows: Tensor,
        options: EmbeddingOptions,
        local_padding_idx: int | None,
    ) -> Tensor:
        out = renormed(frozen_weight.index_select(0, flat_ids), options.max_norm, options.norm_type)
        out.index_copy_(0, hit_positions, trainable_weight.index_select(0, hit_rows))
        ctx.save_for_backward(hit_positions, hit_rows)
        ctx.num_trainable = trainable_weight.shape[0]
        ctx.options, ctx.local_padding_idx = options, local_padding_idx
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        hit_positions, hit_rows = ctx.saved_tensors
        options, pad = ctx.options, ctx.local_padding_idx
        grad_rows = grad_out.index_select(0, hit_positions)
        shape = (ctx.num_trainable, grad_out.shape[1])
        if options.sparse:
            if pad is not None:
                kept = hit_rows != pad
                hit_rows, grad_rows = hit_rows[kept], grad_rows[kept]
            grad = torch.sparse_coo_tensor(
                hit_rows.unsqueeze(0), grad_rows, shape, check_invariants=False
            )
            return grad, None, None, None, None, None, None
        if pad is not None:
            grad_rows.masked_fill_((hit_rows == pad).unsqueeze(1), 0)
        if options.scale_grad_by_freq:
            counts = grad_rows.new_zeros(shape[0]).index_add_(
                0, hit_rows, grad_rows.new_ones(hit_rows.shape)
            )
            grad_rows.div_(counts.index_select(0, hit_rows).unsqueeze(1))
        grad = grad_rows.new_zeros(shape).index_add_(0, hit_rows, grad_rows)
        return grad, None, None, None, None, None, None


class Fused(Split):
    """``split``'s buffers and parameter, looked up by :class:`FusedLookup`."""

    name = "fused"

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        if options.sparse and options.scale_grad_by_freq:
            raise UnsupportedOption(
                f"approach {self.name!r} does not support sparse=True together with "
                "scale_grad_by_freq=True: torch has no sparse embedding gradient scaled by "
                "frequency"
            )
        super().__init__(weight, trainable_mask, options)

    def lookup(self, ids: Tensor) -> Tensor:
        flat = ids.reshape(-1)
        local = self.local_index.index_select(0, flat)
        hit_positions = (local >= 0).nonzero().squeeze(1)
        hit_rows = local.index_select(0, hit_positions)
        o = self.options
        if o.max_norm is not None:
            renorm_looked_up_rows_(
                self.trainable_weight, local.clamp(min=0), local >= 0, o.max_norm, o.norm_type
            )
        out = FusedLookup.apply(
            self.trainable_weight,
            self.frozen_weight,
            flat,
            hit_positions,
            hit_rows,
            o,
            self.local_padding_idx,
        )
        return out.view(*ids.shape, self.embedding_dim)
