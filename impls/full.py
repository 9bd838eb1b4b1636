"""``full``: the whole table trains (control).

Where from: ``nn.Embedding.from_pretrained(weight, freeze=False)``, the default a user starts from.
Cost per step: forward O(T·D); backward a dense V×D gradient (O(V·D) to zero and to accumulate)
or a sparse T×D one with ``sparse=True``; optimizer O(V·D) state and work.
Breaks: by construction every row trains, so frozen rows drift (P1 violated). It is the control
that shows the property checks can fail.
"""

from .base import WholeTableParameter


class Full(WholeTableParameter):
    """Every row is a parameter; ``trainable_mask`` is recorded but not enforced."""

    name = "full"
    enforces_trainable_mask = False
