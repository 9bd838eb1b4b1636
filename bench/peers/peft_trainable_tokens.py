"""PEFT's trainable-tokens layer, as PEFT builds it.

Where from: ``peft.tuners.trainable_tokens.layer.TrainableTokensLayer`` (peft >= 0.15; checked
with 0.21), used itself, not re-implemented. It wraps a frozen ``nn.Embedding`` made from the
pretrained table, exactly as PEFT's ``TrainableTokensModel`` builds it (construct the layer, then
``update_layer``), and keeps the chosen rows in a ``trainable_tokens_delta`` parameter that
forward writes into a copy of the table with ``index_copy``.
What was kept: everything; the class around it only adapts the constructor to the rowfreeze
contract, and ``merged_weight`` is PEFT's own merge (``get_merged_weights``).
What it breaks, as found: PEFT turns ``token_indices`` into an index with
``torch.tensor(token_indices)``; for an empty list that is a *float* tensor and ``index_copy``
refuses it, so a layer with no trainable token fails on every forward. It is left that way.

PEFT is imported when the peer is built, not when this module is: it is an extra of the bench
environment only, and its import takes seconds.
"""

from __future__ import annotations

from torch import Tensor, nn

from impls.base import EmbeddingOptions, PartiallyFrozenEmbedding

ADAPTER = "default"


class PeftTrainableTokens(PartiallyFrozenEmbedding):
    """``TrainableTokensLayer`` over ``nn.Embedding.from_pretrained(weight, freeze=True)``."""

    name = "peft_trainable_tokens"
    refused_options = {
        "sparse": "PEFT's layer looks up a table rebuilt by index_copy every forward; backward "
        "through it fails on a sparse gradient (RuntimeError: expand is unsupported for Sparse "
        "tensors)"
    }

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        from peft.tuners.trainable_tokens.config import TrainableTokensConfig
        from peft.tuners.trainable_tokens.layer import TrainableTokensLayer

        super().__init__(weight, trainable_mask, options)
        base = nn.Embedding.from_pretrained(
            weight,
            freeze=True,
            padding_idx=options.padding_idx,
            max_norm=options.max_norm,
            norm_type=options.norm_type,
            scale_grad_by_freq=options.scale_grad_by_freq,
        )
        config = TrainableTokensConfig(token_indices=self.trainable_ids.tolist())
        self.layer = TrainableTokensLayer(base, ADAPTER, config=config)
        self.layer.update_layer(ADAPTER, config=config)

    def lookup(self, ids: Tensor) -> Tensor:
        return self.layer(ids)

    def effective_weight(self) -> Tensor:
        # PEFT's own merge, what its lm_head layer multiplies by when the head is tied.
        return self.layer.get_merged_weights([ADAPTER])

    def merged_weight(self) -> Tensor:
        return self.effective_weight().detach()
