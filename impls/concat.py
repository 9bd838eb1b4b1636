"""``concat``: frozen and trainable rows concatenated into a full table every forward.

Where from: the common "torch.cat the frozen and the trainable weights" answer. Rows are stored
frozen-first, so ids are permuted through a ``position`` buffer to match the concatenated order.
Cost per step: forward O(V·D) for the concatenation plus O(T·D) for the gather; backward a dense
V×D gradient of the concatenated table, sliced to the (n, D) parameter; optimizer O(n·D).
Breaks: ``sparse=True`` (a sparse gradient cannot flow back through ``torch.cat``); ``max_norm``
renormalises the temporary concatenated table, so trainable rows are not renormalised in place as
nn.Embedding would do and their trajectory differs from the ideal whenever a row exceeds the norm.
"""

import torch
from torch import Tensor, nn

from .base import DENSE_REBUILD_REFUSES_SPARSE, EmbeddingOptions, PartiallyFrozenEmbedding


class Concat(PartiallyFrozenEmbedding):
    """``torch.cat([frozen_rows, trainable_rows])`` every forward, ids permuted to match."""

    name = "concat"
    refused_options = {"sparse": DENSE_REBUILD_REFUSES_SPARSE}

    position: Tensor
    frozen_rows: Tensor

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, options)
        self.register_buffer("frozen_rows", weight[self.frozen_ids].clone())
        self.trainable_rows = nn.Parameter(weight[self.trainable_ids].clone())
        order = torch.cat([self.frozen_ids, self.trainable_ids])
        position = torch.empty_like(order)
        position[order] = torch.arange(order.numel(), device=order.device)
        self.register_buffer("position", position)

    def table(self) -> Tensor:
        return torch.cat([self.frozen_rows, self.trainable_rows])

    def lookup(self, ids: Tensor) -> Tensor:
        pad = self.options.padding_idx
        return self.embed(
            self.position[ids], self.table(), None if pad is None else int(self.position[pad])
        )

    def effective_weight(self) -> Tensor:
        return self.table()[self.position]

    def row_storage(self) -> tuple[Tensor, Tensor | None]:
        return self.trainable_rows, None
