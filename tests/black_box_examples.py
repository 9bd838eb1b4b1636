"""Implementations rowfreeze has never seen, reached only by reference (``MODULE:NAME``).

Nothing in ``bench`` or ``impls`` imports this module: the tests name its factories on the command
line (``tests.black_box_examples:new_rows_table``) and through ``ROWFREEZE_APPROACHES``, exactly as
a user names their own code.

- ``new_rows_table`` is correct: only the trainable rows are a parameter, and every forward writes
  them into a copy of the pretrained table. It implements ``padding_idx`` and refuses the other
  embedding options with ``NotImplementedError``, so those scenarios are recorded unsupported.
- ``new_rows_lookup`` is the same table read only through its forward, which calls
  ``F.embedding(..., padding_idx=...)`` itself and has no ``effective_weight()``: an output layer
  tied to it must still see the whole table, padding row included.
- ``zeroed_gradient`` is the popular zero-gradient answer, deliberately faulty: the whole table
  trains and a hook zeroes the frozen rows' gradient, which weight decay ignores.
- ``half_precision_frozen`` keeps the frozen rows in bfloat16 to halve their memory, and
  ``zeroed_first_row`` zeroes row 0 at construction (a padding row made zero by hand): both are
  faithful to their own first table and never to the weight they were given.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NewRowsLookup(nn.Module):
    def __init__(self, weight: Tensor, trainable: Tensor, padding_idx: int | None = None):
        super().__init__()
        self.register_buffer("pretrained", weight.detach().clone())
        self.register_buffer("trainable", trainable.clone())
        self.new_rows = nn.Parameter(weight.detach()[trainable].clone())
        self.padding_idx = padding_idx

    def table(self) -> Tensor:
        return self.pretrained.index_put((self.trainable,), self.new_rows)

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.table(), padding_idx=self.padding_idx)


class NewRowsTable(NewRowsLookup):
    def effective_weight(self) -> Tensor:
        return self.table()


def new_rows_table(weight: Tensor, trainable: Tensor, padding_idx=None, **options) -> NewRowsTable:
    if options:
        raise NotImplementedError(f"new_rows_table implements padding_idx only, not {options}")
    return NewRowsTable(weight, trainable, padding_idx)


def new_rows_lookup(weight: Tensor, trainable: Tensor, padding_idx=None, **options):
    if options:
        raise NotImplementedError(f"new_rows_lookup implements padding_idx only, not {options}")
    return NewRowsLookup(weight, trainable, padding_idx)


def half_precision_frozen(weight: Tensor, trainable: Tensor, padding_idx=None, **options):
    table = new_rows_lookup(weight, trainable, padding_idx, **options)
    table.pretrained = table.pretrained.to(torch.bfloat16).to(weight.dtype)
    return table


def zeroed_first_row(weight: Tensor, trainable: Tensor, padding_idx=None, **options):
    table = new_rows_lookup(weight, trainable, padding_idx, **options)
    table.pretrained[0] = 0
    return table


def zeroed_gradient(weight: Tensor, trainable: Tensor, **options) -> nn.Embedding:
    embedding = nn.Embedding.from_pretrained(weight.clone(), freeze=False, **options)
    keep = trainable.unsqueeze(1).to(weight.dtype)
    embedding.weight.register_hook(lambda grad: grad * keep)
    return embedding
