"""``split``: frozen rows in a buffer, trainable rows in their own (n, D) parameter.

Where from: the two-table answer to "freeze only some embedding rows" (a frozen
``nn.Embedding`` for pretrained ids and a trainable one for new ids, chosen per token), corrected
and generalised. The popular snippet tests ``ids > num_pretrained`` where ``>=`` is needed (the
boundary id indexes past the pretrained table and raises IndexError), subtracts the offset from the
caller's id tensor in place, calls ``.copy()`` on a tensor, omits ``super().__init__()`` and
assumes pretrained ids come first. Here any set of rows may train: a ``local_index`` buffer maps
each global id to its row in the trainable parameter (-1 for frozen), and nothing is written to
the ids.
Cost per step: forward one O(T·D) gather from the frozen buffer, one gather of the trainable
tokens and an O(T·D) scatter of them into the output; backward and optimizer O(n·D) (dense) or
O(T·D) (``sparse=True``). Nothing is O(V) except the buffers themselves.
Options: ``max_norm`` renormalises trainable rows in place (as nn.Embedding does) but frozen rows
only in the looked-up copy, so frozen rows never change; ``scale_grad_by_freq`` counts only the
trainable tokens, which equals the global count because every occurrence of a trainable id is one.
Breaks: nothing known in single-process training.
"""

import torch
from torch import Tensor, nn

from .base import EmbeddingOptions, PartiallyFrozenEmbedding, renormed


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
        local = self.local_index[flat]
        hit = local >= 0
        o = self.options
        out = renormed(self.frozen_weight[flat], o.max_norm, o.norm_type)
        trained = self.embed(local[hit], self.trainable_weight, padding_idx=self.local_padding_idx)
        out = out.index_put((hit,), trained)
        return out.view(*ids.shape, self.embedding_dim)

    def effective_weight(self) -> Tensor:
        return self.frozen_weight.index_put((self.trainable_ids,), self.trainable_weight)
