"""``restore``: the whole table trains, and frozen rows are copied back after every optimizer step.

Where from: the fix adopted by textual-inversion training in diffusers after AdamW's weight decay
was found drifting the "frozen" token embeddings: keep a copy of the original rows and write them
back after ``optimizer.step()``. Here ``attach`` registers that write as an optimizer step
post-hook, so the loop is unchanged.
Cost per step: backward a dense V×D gradient (or sparse T×D); optimizer O(V·D) work and state;
the write-back O((V-n)·D); memory for a (V-n, D) snapshot.
Breaks: without ``attach`` nothing is restored. Frozen rows do move between ``step`` and the write
back, so anything reading the table inside the step sees them move. Gradient clipping by total
norm and factored optimizers see the frozen rows' gradients, so trainable rows leave the ideal
trajectory there.
"""

import torch
from torch import Tensor

from .base import EmbeddingOptions, WholeTableParameter


class Restore(WholeTableParameter):
    """Frozen rows are restored from a snapshot by an optimizer step post-hook."""

    name = "restore"

    frozen_snapshot: Tensor

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, options)
        self.register_buffer("frozen_snapshot", weight[self.frozen_ids].clone())

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.register_step_post_hook(lambda *_: self.restore_frozen_rows())

    @torch.no_grad()
    def restore_frozen_rows(self) -> None:
        self.weight.index_copy_(0, self.frozen_ids, self.frozen_snapshot)
