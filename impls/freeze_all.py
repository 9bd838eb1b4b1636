"""``freeze_all``: the whole table is frozen (control).

Where from: ``nn.Embedding.from_pretrained(weight, freeze=True)``, the usual first answer, which
cannot train the new rows at all.
Cost per step: forward O(T·D); no gradient, no optimizer state.
Breaks: new rows never change (P2 violated). It is the control for the "new rows change" check.
The weight is kept as a ``requires_grad=False`` parameter, as ``nn.Embedding`` does, so that
``parameters()`` is not empty and an optimizer can be built from it.
"""

from torch import Tensor

from .base import EmbeddingOptions, WholeTableParameter


class FreezeAll(WholeTableParameter):
    """Every row is frozen; the optimizer sees a parameter that never gets a gradient."""

    name = "freeze_all"

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, options)
        self.weight.requires_grad_(False)
