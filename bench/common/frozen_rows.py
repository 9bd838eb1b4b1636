"""The one judgement every subsystem makes: did a frozen row change?

"Unchanged" means bit-identical: the raw bits are compared, so a row that moved by one ulp, or
from 0.0 to -0.0, or to a NaN, counts as changed (``==`` would miss the last two). Verification
(P1), the benchmarks, the distributed runs and the workloads all call :func:`changed_frozen_rows`,
so "frozen rows identical" means the same thing in every result file.
"""

from __future__ import annotations

import torch
from torch import Tensor

_SAME_WIDTH_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bits(table: Tensor) -> Tensor:
    """The table's raw bits as integers of the same width."""
    return table.contiguous().view(_SAME_WIDTH_INT[table.element_size()])


def changed_frozen_rows(before: Tensor, after: Tensor, trainable: Tensor) -> Tensor:
    """Ids of the rows outside ``trainable`` whose values in ``after`` differ from ``before``.

    ``before`` and ``after`` are ``(rows, D)`` tables of the same dtype; ``trainable`` is the
    bool mask of their rows.
    """
    if before.shape != after.shape or before.dtype != after.dtype:
        raise ValueError(
            f"after: expected a table of shape {tuple(before.shape)} and dtype {before.dtype} "
            f"like before, got {tuple(after.shape)} {after.dtype}"
        )
    differs = (bits(after) != bits(before)).flatten(1).any(dim=1)
    return (differs & ~trainable.to(differs.device)).nonzero().squeeze(1)


def frozen_rows_identical(before: Tensor, after: Tensor, trainable: Tensor) -> bool:
    return changed_frozen_rows(before, after, trainable).numel() == 0
