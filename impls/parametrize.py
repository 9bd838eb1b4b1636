"""``parametrize``: ``torch.nn.utils.parametrize`` turns the table into ``where(mask, W, frozen)``.

Where from: the "use a parametrization" answer; the registered parametrization recomputes the
weight from the unconstrained ``original`` on every access.
Cost per step: forward O(V·D) for the ``where`` plus O(T·D); backward a dense V×D gradient of
``original`` whose frozen rows are zero; optimizer O(V·D) work and state over the whole table,
plus an extra V×D copy of the frozen values.
Holds under weight decay: decay does move the frozen rows of ``original``, but the table never
reads them, so the effective table stays frozen — at the price of optimizer state for all V rows.
Breaks: ``sparse=True`` (no sparse gradient through ``where``); ``max_norm`` renormalises the
recomputed table, not ``original``, so it is not persistent for trainable rows.
"""

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .base import DENSE_REBUILD_REFUSES_SPARSE, EmbeddingOptions, PartiallyFrozenEmbedding


class KeepFrozenRows(nn.Module):
    """Parametrization: trainable rows come from the parameter, frozen rows from a constant."""

    def __init__(self, frozen_values: Tensor, trainable_mask: Tensor):
        super().__init__()
        self.register_buffer("frozen_values", frozen_values)
        self.register_buffer("row_is_trainable", trainable_mask.unsqueeze(1))

    def forward(self, original: Tensor) -> Tensor:
        return torch.where(self.row_is_trainable, original, self.frozen_values)


class Parametrize(PartiallyFrozenEmbedding):
    """``weight`` is a parametrized tensor; ``parameters()`` yields its unconstrained original."""

    name = "parametrize"
    refused_options = {"sparse": DENSE_REBUILD_REFUSES_SPARSE}

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, options)
        self.weight = nn.Parameter(weight)
        parametrize.register_parametrization(
            self, "weight", KeepFrozenRows(weight.clone(), trainable_mask)
        )

    def lookup(self, ids: Tensor) -> Tensor:
        return self.embed(ids, self.weight, self.options.padding_idx)

    def effective_weight(self) -> Tensor:
        return self.weight

    def row_storage(self) -> tuple[Tensor, Tensor | None]:
        return self.parametrizations.weight.original, self.trainable_ids
