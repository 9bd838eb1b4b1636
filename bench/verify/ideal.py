"""The ideal every approach is compared with (property P3).

Only the trainable rows are parameters, an ``(n, D)`` tensor; the frozen rows are a constant. The
lookup is ``F.embedding`` on the table assembled from both, with the user's options, so any
optimizer, loop or option sees exactly the parameters a user means when they say "train only the
new rows". It is deliberately plain and slow: correctness is its only job.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impls.base import EmbeddingOptions


class IdealEmbedding(nn.Module):
    """Trainable rows as the only parameter; records which rows ever received a gradient."""

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__()
        self.options = options
        self.register_buffer("constant", weight.detach().clone())
        self.register_buffer("trainable_mask", trainable_mask.clone())
        self.register_buffer("trainable_ids", trainable_mask.nonzero().squeeze(1))
        self.rows = nn.Parameter(weight.detach()[self.trainable_ids].clone())
        local = torch.full_like(trainable_mask, -1, dtype=torch.long)
        local[self.trainable_ids] = torch.arange(self.trainable_ids.numel(), device=local.device)
        self.register_buffer("local_index", local)
        self.register_buffer("received_gradient", torch.zeros_like(trainable_mask))
        self._looked_up: Tensor | None = None
        self.rows.register_post_accumulate_grad_hook(self._after_backward)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Nothing to connect; present so the training loop treats it like an approach."""

    def effective_weight(self) -> Tensor:
        return self.constant.index_put((self.trainable_ids,), self.rows)

    def merged_weight(self) -> Tensor:
        return self.effective_weight().detach()

    def forward(self, ids: Tensor) -> Tensor:
        o = self.options
        self._looked_up = self._used_local_rows(ids, with_padding=False)
        if o.max_norm is not None:
            # nn.Embedding renormalises every looked-up row in place, the padding row included.
            used = self._used_local_rows(ids, with_padding=True)
            with torch.no_grad():
                torch.embedding_renorm_(self.rows, used, o.max_norm, o.norm_type)
        return F.embedding(
            ids,
            self.effective_weight(),
            padding_idx=o.padding_idx,
            max_norm=o.max_norm,
            norm_type=o.norm_type,
            scale_grad_by_freq=o.scale_grad_by_freq,
        )

    def _used_local_rows(self, ids: Tensor, with_padding: bool) -> Tensor:
        """Local rows looked up by ``ids``; the padding row (which never gets a gradient) only
        ``with_padding``."""
        ids = ids.reshape(-1)
        if not with_padding and self.options.padding_idx is not None:
            ids = ids[ids != self.options.padding_idx]
        local = self.local_index[ids]
        return local[local >= 0].unique()

    def _after_backward(self, rows: nn.Parameter) -> None:
        grad = rows.grad
        moved = grad.ne(0).any(dim=1)
        self.received_gradient[self.trainable_ids[moved]] = True
        if self.options.sparse:
            # nn.Embedding(sparse=True) emits a gradient for exactly the rows looked up (padding
            # excluded); SparseAdam and sparse Adagrad/SGD update only those rows.
            used = self._looked_up
            rows.grad = torch.sparse_coo_tensor(
                used.unsqueeze(0), grad[used], grad.shape, check_invariants=True
            )
