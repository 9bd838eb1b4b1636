"""``fused``: ``split``'s storage, looked up by one custom autograd Function that moves the least.

Where from: built here as the fast path. ``split`` already keeps the frozen rows in a buffer and
the n trainable rows in an ``(n, D)`` parameter; its lookup spends most of a step in extra passes
(an ``F.embedding`` backward that sorts the trainable ids). Here the trainable tokens go through
one custom ``torch.autograd.Function``: forward gathers all T rows from the frozen buffer and
selects, token by token, the trainable row instead where there is one; backward masks the
incoming gradient to those tokens and ``index_add``s it into a fresh ``(n, D)`` gradient.
Cost per step: forward O(T·D) gathers + O(T) id mapping + O(T·D) select; backward O(T·D) plus
O(n·D) to zero the dense gradient; optimizer O(n·D). In eager mode on CPU, where selecting the h
tokens of trainable rows costs nothing extra (:class:`CompactOverwrite`), the select and the
backward are O(h·D) instead. Nothing V-sized is allocated, nothing sorts
the T ids, and every shape is fixed by the ids' shape: no host synchronisation, and the step
compiles with ``torch.compile(fullgraph=True)`` (``padding_idx``, ``max_norm`` and
``scale_grad_by_freq`` included).
Optimizer: any ``torch.optim`` optimizer; the setting decides the step time (``AdamW(fused=True)``
makes one pass over parameter, gradient and both moments, the default and ``foreach=True`` about
ten; measured times are in the benchmark results, not here).
Lazy updates (``sparse=True``): backward emits a row-sparse ``(n, D)`` gradient holding only the h
tokens of trainable rows. With ``torch.optim.SparseAdam`` only the rows seen in the batch change,
moments included: O(h·D) optimizer cost whatever n, but *not* the dense AdamW trajectory (unseen
rows neither decay nor keep moving on their momentum). It equals ``split`` with ``sparse=True`` and
SparseAdam. Its size h is known only from the data, so this one path selects by mask (a host
synchronisation on CUDA) — and torch.compile does not trace sparse gradients anyway.
On CUDA ``index_add`` sums repeated ids with atomics (in no fixed order).
torch.compile: the lookup is one opaque operator, :func:`impls.compact_op.compact_lookup`
(``torch.library.custom_op`` with a fake kernel and its autograd), so the compiled step runs the
compact eager kernel instead of tracing the fixed-shape Function over all T tokens.
torch.func: the Function is in the ``setup_context`` form, with a generated vmap rule and a
``jvp``, so ``vmap``, ``grad`` and ``jvp`` work. Dynamo refuses to trace a Function that defines
``jvp``, so under ``torch.compile`` the same Function without it serves what the operator does
not (``sparse=True``, a frozen buffer that requires a gradient).
Options: as ``split`` (same buffers, parameter and state-dict keys, so checkpoints move between
the two): ``max_norm`` renormalises looked-up trainable rows in place and frozen rows only in the
copy; ``padding_idx`` zeroes the gradient of tokens on a trainable padding row;
``scale_grad_by_freq`` divides each token's gradient by its id's count in the batch.
Breaks: ``sparse`` with ``scale_grad_by_freq`` is refused at construction when a row may train
(torch's sparse embedding backward raises for it, so ``split`` fails at its first backward
instead); with no trainable row nothing needs a gradient and it trains like a frozen nn.Embedding.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.autograd.forward_ad as forward_ad
from torch import Tensor

from .base import EmbeddingOptions, UnsupportedOption
from .compact_op import NO_PADDING, compact_lookup, trainable_gradient
from .split import Split
from .validation import values_are_free_to_read


class TrainableOverwrite(torch.autograd.Function):
    """``out[t] = trainable[local[t]] if local[t] >= 0 else frozen_rows[t]``, with the gradient
    of ``F.embedding`` on the trainable rows (``padding_idx``, ``scale_grad_by_freq``, ``sparse``).

    ``local`` is each token's row in ``trainable`` or -1; tokens of frozen rows read row 0 and are
    discarded, so every shape is fixed by T. This class has no ``jvp`` because Dynamo refuses to
    trace a Function that defines one; :class:`TrainableOverwriteWithJvp` adds it outside
    ``torch.compile``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        trainable: Tensor,
        frozen_rows: Tensor,
        local: Tensor,
        options: EmbeddingOptions,
        local_padding_idx: int | None,
    ) -> Tensor:
        trained = trainable.index_select(0, local.clamp(min=0))
        return torch.where((local >= 0).unsqueeze(-1), trained, frozen_rows)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        trainable, _, local, options, local_padding_idx = inputs
        ctx.save_for_backward(local)
        ctx.save_for_forward(local)
        ctx.num_trainable = trainable.shape[0]
        ctx.options, ctx.local_padding_idx = options, local_padding_idx

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor):
        (local,) = ctx.saved_tensors
        grad_trainable = grad_frozen = None
        if ctx.needs_input_grad[0]:
            o = ctx.options
            grad_trainable = trainable_gradient(
                grad_out,
                local,
                ctx.num_trainable,
                ctx.local_padding_idx,
                o.scale_grad_by_freq,
                o.sparse,
            )
        if ctx.needs_input_grad[1]:  # only if someone differentiates the frozen buffer itself
            hit = (local >= 0).unsqueeze(-1)
            grad_frozen = torch.where(hit, torch.zeros_like(grad_out), grad_out)
        return grad_trainable, grad_frozen, None, None, None


class TrainableOverwriteWithJvp(TrainableOverwrite):
    """:class:`TrainableOverwrite` with forward-mode AD (``torch.func.jvp``, ``forward_ad``)."""

    @staticmethod
    def jvp(ctx: Any, trainable_tangent, frozen_tangent, *_):
        # As for F.embedding, the forward-mode derivative is the lookup itself, applied to the
        # tangents: padding and frequency scaling shape only the backward.
        (local,) = ctx.saved_tensors
        trained, frozen = None, frozen_tangent
        if trainable_tangent is not None:
            trained = trainable_tangent.index_select(0, local.clamp(min=0))
        # jvp is called only when some input has a tangent, so at most one of them is None.
        trained = torch.zeros_like(frozen) if trained is None else trained
        frozen = torch.zeros_like(trained) if frozen is None else frozen
        return torch.where((local >= 0).unsqueeze(-1), trained, frozen)


class CompactOverwrite(torch.autograd.Function):
    """:class:`TrainableOverwrite` on only the tokens that hit a trainable row, for eager CPU.

    Selecting those h tokens (``nonzero``) costs a host synchronisation on CUDA and a shape the
    data decides, which is why the fixed-shape Function exists; on a plain CPU tensor in eager
    mode it is free, and working on h rows instead of T makes the lookup about twice as fast
    (h is 1% of T at the headline case). Same results, same gradient.
    """

    @staticmethod
    def forward(ctx, trainable, frozen_rows, local, options, local_padding_idx):
        positions = (local >= 0).nonzero().squeeze(1)
        rows = local.index_select(0, positions)
        ctx.save_for_backward(positions, rows)
        ctx.num_trainable, ctx.options = trainable.shape[0], options
        ctx.local_padding_idx = local_padding_idx
        # frozen_rows is the lookup's own fresh gather: overwrite it in place, no T×D copy.
        ctx.mark_dirty(frozen_rows)
        return frozen_rows.index_copy_(0, positions, trainable.index_select(0, rows))

    @staticmethod
    def backward(ctx, grad_out):
        positions, rows = ctx.saved_tensors
        grad_trainable = grad_frozen = None
        if ctx.needs_input_grad[0]:
            grad_trainable = trainable_gradient(
                grad_out.index_select(0, positions),
                rows,
                ctx.num_trainable,
                ctx.local_padding_idx,
                ctx.options.scale_grad_by_freq,
            )
        if ctx.needs_input_grad[1]:
            grad_frozen = grad_out.index_fill(0, positions, 0)
        return grad_trainable, grad_frozen, None, None, None


class Fused(Split):
    """``split``'s buffers and parameter, looked up by :class:`TrainableOverwrite`."""

    name = "fused"

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        if options.sparse and options.scale_grad_by_freq and trainable_mask.any():
            raise UnsupportedOption(
                f"approach {self.name!r} does not support sparse=True together with "
                "scale_grad_by_freq=True when any row is trainable: torch has no sparse embedding "
                "gradient scaled by frequency"
            )
        super().__init__(weight, trainable_mask, options)

    def looked_up_rows(self, flat: Tensor, local: Tensor) -> Tensor:
        """Under ``torch.compile``, one opaque :func:`impls.compact_op.compact_lookup` (the eager
        kernel, not the fixed-shape Function traced); elsewhere as ``split``."""
        o = self.options
        if torch.compiler.is_compiling() and not o.sparse and not self.frozen_weight.requires_grad:
            pad = NO_PADDING if self.local_padding_idx is None else self.local_padding_idx
            return compact_lookup(
                self.frozen_weight,
                flat,
                local,
                self.trainable_weight,
                o.max_norm,
                o.norm_type,
                pad,
                o.scale_grad_by_freq,
            )
        return super().looked_up_rows(flat, local)

    def overwrite_trainable_tokens(self, frozen_rows: Tensor, local: Tensor) -> Tensor:
        weight = self.trainable_weight  # a Parameter, or functional_call's tensor in its place
        if (
            not self.options.sparse
            and values_are_free_to_read(local)
            and values_are_free_to_read(frozen_rows)
            and not torch._C._functorch.is_functorch_wrapped_tensor(weight)
            and not any(
                forward_ad.unpack_dual(x).tangent is not None for x in (weight, frozen_rows)
            )
        ):
            function = CompactOverwrite
        elif torch.compiler.is_compiling():
            function = TrainableOverwrite
        else:
            function = TrainableOverwriteWithJvp
        return function.apply(
            self.trainable_weight, frozen_rows, local, self.options, self.local_padding_idx
        )
