"""``grad_zero``: the whole table trains, and the frozen rows of its gradient are zeroed.

Where from: the most upvoted answer to "freeze only some embedding rows": after
``loss.backward()``, ``embedding.weight.grad[frozen_ids] = 0``. Here the zeroing runs in a
post-accumulate-grad hook, right after backward has written the gradient, so the caller's loop is
unchanged.
Cost per step: backward a dense V×D gradient, then an O(V·D) masked write; optimizer O(V·D) work
and state (about 1 s a step at V=400,000, D=300 with AdamW on 2 cores).
Breaks: a zero gradient is not "no update". Weight decay (AdamW's default 0.01, or
``weight_decay`` on SGD/Adam) and momentum-free decoupled terms still move frozen rows; factored
optimizers such as Adafactor mix row statistics. ``sparse=True`` is refused: a sparse gradient
cannot be index-assigned (``TypeError: Cannot assign to a sparse tensor``). ``max_norm``
renormalises frozen rows in place during forward. The hook runs only when autograd's engine
accumulates into ``.grad``: ``torch.func.grad`` and a backward traced by ``torch.compile`` bypass it
(see ``torch_tools_limits``).
"""

from torch import Tensor, nn

from .base import EmbeddingOptions, WholeTableParameter


class GradZero(WholeTableParameter):
    """``weight.grad[frozen_ids] = 0`` after every backward."""

    name = "grad_zero"
    refused_options = {
        "sparse": "its gradient rows are zeroed by index assignment, which torch does not "
        "allow on a sparse gradient (TypeError: Cannot assign to a sparse tensor)"
    }
    torch_tools_limits = {
        "grad": "the frozen rows' gradient is zeroed by a post-accumulate-grad hook, which runs "
        "only when autograd's engine accumulates into .grad; torch.func.grad returns it unzeroed",
        "compile_fullgraph_backward": "a backward traced into the graph accumulates .grad itself "
        "without running the post-accumulate-grad hook, so frozen rows get their real gradient "
        "and train",
    }

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, options)
        self.weight.register_post_accumulate_grad_hook(self._zero_frozen_grad)

    def _zero_frozen_grad(self, weight: nn.Parameter) -> None:
        weight.grad[self.frozen_ids] = 0
