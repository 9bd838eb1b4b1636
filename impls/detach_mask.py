"""``detach_mask``: the lookup reads ``where(trainable, W, W.detach())``.

Where from: the "detach the frozen part" answer; autograd never creates a gradient path to the
frozen rows, so no hook is needed.
Cost per step: forward O(V·D) for the ``where`` plus O(T·D); backward a dense V×D gradient whose
frozen rows are zero; optimizer O(V·D) work and state.
Breaks: the frozen rows are still parameters with a zero gradient, so weight decay and factored
optimizers move them exactly as with ``grad_zero``. ``sparse=True`` is refused (no sparse gradient
through ``where``); ``max_norm`` renormalises the temporary table, not the parameter.
"""

import torch
from torch import Tensor

from .base import DENSE_REBUILD_REFUSES_SPARSE, WholeTableParameter


class DetachMask(WholeTableParameter):
    """Frozen rows enter the lookup through ``detach()``."""

    name = "detach_mask"
    refused_options = {"sparse": DENSE_REBUILD_REFUSES_SPARSE}

    def effective_weight(self) -> Tensor:
        return torch.where(self.trainable_mask.unsqueeze(1), self.weight, self.weight.detach())
