"""``index_copy``: the full table rebuilt every forward as ``base.index_copy(0, ids, delta)``.

Where from: PEFT's trainable-tokens layer (``TrainableTokensLayer``), which keeps the base
embedding frozen and a ``trainable_tokens_delta`` parameter holding the new values of the chosen
rows, and looks up ``weight.index_copy(0, token_indices, delta)``.
Cost per step: forward O(V·D) to copy the table plus O(T·D) for the gather; backward a dense V×D
gradient of the rebuilt table, from which the (n, D) rows are selected; optimizer O(n·D).
Breaks: ``sparse=True`` (no sparse gradient through ``index_copy``); ``max_norm`` renormalises the
temporary copy, so trainable rows are not renormalised in place as nn.Embedding would do.
"""

from torch import Tensor, nn

from .base import DENSE_REBUILD_REFUSES_SPARSE, EmbeddingOptions, PartiallyFrozenEmbedding


class IndexCopy(PartiallyFrozenEmbedding):
    """A frozen full table plus a delta parameter for the trainable rows, merged each forward."""

    name = "index_copy"
    refused_options = {"sparse": DENSE_REBUILD_REFUSES_SPARSE}

    base_weight: Tensor

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, options)
        self.register_buffer("base_weight", weight)
        self.trainable_tokens_delta = nn.Parameter(weight[self.trainable_ids].clone())

    def table(self) -> Tensor:
        return self.base_weight.index_copy(0, self.trainable_ids, self.trainable_tokens_delta)

    def lookup(self, ids: Tensor) -> Tensor:
        return self.embed(ids, self.table(), self.options.padding_idx)

    def effective_weight(self) -> Tensor:
        return self.table()

    def row_storage(self) -> tuple[Tensor, Tensor | None]:
        return self.trainable_tokens_delta, None
