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
        out = renormed(self.frozen_weight.index_select(0, flat), o.max_norm, o.norm_type)
        if self.num_trainable:
            local = self.local_index.index_select(0, flat)
            if o.max_norm is not None:
                renorm_looked_up_rows_(
                    self.trainable_weight, local.clamp(min=0), local >= 0, o.max_norm, o.norm_type
                )
            out = self.overwrite_trainable_tokens(out, local)
        return out.view(*ids.shape, self.embedding_dim)

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
