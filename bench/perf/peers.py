"""PEFT's trainable-tokens layer, measured beside the reference approaches.

``peft_trainable_tokens`` is ``peft.tuners.trainable_tokens.layer.TrainableTokensLayer`` itself,
wrapped around a frozen ``nn.Embedding`` made from the same pretrained table, exactly as PEFT's
``TrainableTokensModel`` builds it (construct the layer, then ``update_layer``). The thin class
around it only adapts the constructor and ``merged_weight`` to the rowfreeze contract, so the
benchmark harness drives it like any approach and the frozen-rows check reads PEFT's own merge
(``get_merged_weights``), not a re-implementation.

PEFT is imported when the peer is built, not when this module is: it is an extra of the bench
environment only, and its import takes seconds.
"""

from __future__ import annotations

from torch import Tensor, nn

import impls
from bench.common.schema import PEFT_PEER
from impls.base import EmbeddingOptions, PartiallyFrozenEmbedding

ADAPTER = "default"


class PeftTrainableTokens(PartiallyFrozenEmbedding):
    """``TrainableTokensLayer`` over ``nn.Embedding.from_pretrained(weight, freeze=True)``."""

    name = PEFT_PEER
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

    def merged_weight(self) -> Tensor:
        return self.layer.get_merged_weights([ADAPTER]).detach()


PEERS: dict[str, type[PartiallyFrozenEmbedding]] = {PeftTrainableTokens.name: PeftTrainableTokens}


def benchmarked_approaches() -> dict[str, type[PartiallyFrozenEmbedding]]:
    """Every approach registered in ``impls.APPROACHES`` now, then the peers."""
    return {**impls.APPROACHES, **PEERS}
