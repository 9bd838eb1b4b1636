"""``grad_hook``: a tensor hook multiplies the table's gradient by the trainable mask in backward.

Where from: the ``weight.register_hook(lambda grad: grad * mask)`` answer. Unlike ``grad_zero`` it
also handles sparse gradients: their values are multiplied by the mask of the rows they index.
Cost per step: dense: a V×D gradient multiplied by the mask (O(V·D)), optimizer O(V·D);
sparse: O(T·D) for the hook, optimizer per its sparse rule.
Breaks: like every zero-gradient answer, weight decay and factored optimizers still move frozen
rows; a non-finite gradient becomes NaN on frozen rows (``inf * 0``); ``max_norm`` renormalises
frozen rows in place during forward. The hook belongs to the Parameter object and runs in
autograd's engine: ``torch.func.grad`` and a backward traced by ``torch.compile`` bypass it (see
``torch_tools_limits``).
"""

import torch
from torch import Tensor

from .base import EmbeddingOptions, WholeTableParameter


class GradHook(WholeTableParameter):
    """``weight.register_hook`` zeroes the frozen rows of the gradient by multiplication."""

    name = "grad_hook"
    torch_tools_limits = {
        "grad": "the mask is a hook on the Parameter object; torch.func.grad differentiates the "
        "tensors functional_call swaps in, which carry no hook, so frozen rows get their real "
        "gradient",
        "compile_fullgraph_backward": "a backward traced into the graph does not run the tensor "
        "hook, so frozen rows get their real gradient and train",
    }

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, options)
        self.weight.register_hook(self._mask_grad)

    def _mask_grad(self, grad: Tensor) -> Tensor:
        if grad.is_sparse:
            grad = grad.coalesce()
            keep = self.trainable_mask[grad.indices()[0]].to(grad.dtype).unsqueeze(1)
            return torch.sparse_coo_tensor(
                grad.indices(),
                grad.values() * keep,
                grad.shape,
                is_coalesced=True,
                check_invariants=False,
            )
        return grad * self.trainable_mask.to(grad.dtype).unsqueeze(1)
