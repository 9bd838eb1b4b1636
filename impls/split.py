"""``split``: frozen rows in a buffer, trainable rows in their own (n, D) parameter.

Where from: the two-table answer to "freeze only some embedding rows" (a frozen
``nn.Embedding`` for pretrained ids and a trainable one for new ids, chosen per token), corrected
and generalised. The popular snippet tests ``ids > num_pretrained`` where ``>=`` is needed (the
boundary id indexes past the pretrained table and raises IndexError), subtracts the offset from the
caller's id tensor in place, calls ``.copy()`` on a tensor, omits ``super().__init__()`` and
assumes pretrained ids come first. Here any set of rows may train: a ``local_index`` buffer maps
each global id to its row in the trainable parameter (-1 for frozen), and nothing is written to
the ids.
Cost per step: forward one O(T·D) gather from the frozen buffer, one from the trainable parameter
(tokens of frozen rows read row 0 and are discarded) and an O(T·D) select between them; backward
and optimizer O(n·D) (dense) or O(T·D) (``sparse=True``). Nothing is O(V) except the buffers.
Every shape is fixed by the ids' shape, so the step needs no host synchronisation and compiles
with ``torch.compile(fullgraph=True)`` — except with ``scale_grad_by_freq`` or ``sparse``: torch
derives those gradients from exactly the ids ``F.embedding`` is given, so the trainable tokens are
selected by a boolean mask, whose size only the data knows (a host synchronisation on CUDA, no
``vmap``, and with ``sparse`` no ``torch.compile``; ``fused`` has none of these limits except
the last).
Options: ``max_norm`` renormalises looked-up trainable rows in place (as nn.Embedding does, here
by an O(n·D) fixed-shape rescale) but frozen rows only in the looked-up copy, so frozen rows never
change; ``scale_grad_by_freq`` counts only the trainable tokens, which equals the global count
because every occurrence of a trainable id is one. With no trainable row, the lookup is the frozen
gather alone and needs no gradient, so ``sparse`` with ``scale_grad_by_freq`` trains the rest of a
model as a frozen nn.Embedding does.
Output layer (``project``, for a language model's tied or untied output layer): the logits are
one ``(V, D)`` matmul with ``frozen_weight``, whose trainable rows are first refreshed from the
parameter (an O(n·D) copy; the lookup never reads those rows, it overwrites them), so nothing
V-sized is assembled and the logits are bit for bit those of a plain ``nn.Linear`` holding
``merged_weight()``. Backward: O(T·V·D) for the hidden states (as any output layer) and
O(T·n·D) for the trainable rows, from their n columns of the logits' gradient only.
Breaks: nothing known in single-process training.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import EmbeddingOptions, PartiallyFrozenEmbedding, renorm_looked_up_rows_, renormed


class Split(PartiallyFrozenEmbedding):
    """Per-token selection between a frozen buffer and a small trainable parameter."""

    name = "split"

    local_index: Tensor
    frozen_weight: Tensor

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, options)
        self.register_buffer("frozen_weight", weight)
        self.trainable_weight = nn.Parameter(weight[self.trainable_ids].clone())
        local_index = torch.full_like(trainable_mask, -1, dtype=torch.long)
        local_index[self.trainable_ids] = torch.arange(
            self.trainable_ids.numel(), device=weight.device
        )
        self.register_buffer("local_index", local_index)
        pad = options.padding_idx
        self.local_padding_idx = (
            int(local_index[pad]) if pad is not None and bool(trainable_mask[pad]) else None
        )

    def lookup(self, ids: Tensor) -> Tensor:
        flat = ids.reshape(-1)
        o = self.options
        if self.num_trainable:
            local = self.local_index.index_select(0, flat)
            if o.max_norm is not None:
                renorm_looked_up_rows_(
                    self.trainable_weight, local.clamp(min=0), local >= 0, o.max_norm, o.norm_type
                )
            out = self.looked_up_rows(flat, local)
        else:
            out = self.frozen_rows(flat)
        return out.view(*ids.shape, self.embedding_dim)

    def frozen_rows(self, flat: Tensor) -> Tensor:
        """The frozen buffer's rows for the flat ids, rescaled as ``max_norm`` asks."""
        o = self.options
        return renormed(self.frozen_weight.index_select(0, flat), o.max_norm, o.norm_type)

    def looked_up_rows(self, flat: Tensor, local: Tensor) -> Tensor:
        """The (T, D) rows of the flat ids, each token whose ``local`` row is not -1 read from
        the parameter (``max_norm`` has already renormalised the trainable rows looked up)."""
        return self.overwrite_trainable_tokens(self.frozen_rows(flat), local)

    def overwrite_trainable_tokens(self, frozen_rows: Tensor, local: Tensor) -> Tensor:
        """``frozen_rows`` with each token whose ``local`` row is not -1 read from the parameter."""
        hit = local >= 0
        o = self.options
        if o.scale_grad_by_freq or o.sparse:
            trained = F.embedding(
                local[hit],
                self.trainable_weight,
                padding_idx=self.local_padding_idx,
                scale_grad_by_freq=o.scale_grad_by_freq,
                sparse=o.sparse,
            )
            return frozen_rows.index_put((hit,), trained)
        trained = F.embedding(
            local.clamp(min=0), self.trainable_weight, padding_idx=self.local_padding_idx
        )
        return torch.where(hit.unsqueeze(-1), trained, frozen_rows)

    def effective_weight(self) -> Tensor:
        return self.frozen_weight.index_put((self.trainable_ids,), self.trainable_weight)

    def row_storage(self) -> tuple[Tensor, Tensor | None]:
        return self.trainable_weight, None

    def project(self, hidden: Tensor, bias: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            self.frozen_weight.index_copy_(0, self.trainable_ids, self.trainable_weight)
        return SplitProjection.apply(
            hidden, self.trainable_weight, self.frozen_weight, self.trainable_ids, bias
        )


class SplitProjection(torch.autograd.Function):
    """``F.linear(hidden, table, bias)`` where ``table``'s rows ``ids`` are ``trainable_weight``.

    The caller has copied ``trainable_weight`` into those rows, so the forward is the plain
    layer's matmul. Backward gives ``hidden`` the plain layer's gradient and ``trainable_weight``
    the gradient of its own columns only; ``table`` and ``bias`` are constants. The table is kept
    by reference rather than saved: the next ``project`` rewrites its trainable rows in place
    (with the same values until the optimizer steps), which a saved tensor would refuse.
    """

    @staticmethod
    def forward(
        ctx,
        hidden: Tensor,
        trainable_weight: Tensor,
        table: Tensor,
        ids: Tensor,
        bias: Tensor | None,
    ) -> Tensor:
        ctx.save_for_backward(hidden, ids)
        ctx.table = table
        ctx.trainable_dtype = trainable_weight.dtype
        return F.linear(hidden, table, bias)

    @staticmethod
    def backward(ctx, grad: Tensor):
        hidden, ids = ctx.saved_tensors
        grad_hidden = grad_trainable = None
        if ctx.needs_input_grad[0]:
            grad_hidden = grad.matmul(ctx.table.to(grad.dtype))
        if ctx.needs_input_grad[1]:
            columns = grad.index_select(-1, ids).reshape(-1, ids.numel())
            flat_hidden = hidden.reshape(-1, hidden.shape[-1]).to(columns.dtype)
            grad_trainable = columns.t().matmul(flat_hidden).to(ctx.trainable_dtype)
        return grad_hidden, grad_trainable, None, None, None
