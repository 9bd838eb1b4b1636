"""Reference implementations of every known way to train only some rows of an embedding table.

``APPROACHES`` maps each approach's short name to its class; every class meets the contract of
:class:`impls.base.PartiallyFrozenEmbedding` (``from_pretrained``, ``parameters``, ``attach``,
``merged_weight``, ``trainable_mask``). :func:`train_only_rows` installs any of them in a language
model (see :mod:`impls.language_model`; checkpoints of the trained rows: :mod:`impls.trained_rows`).
"""

from .base import EmbeddingOptions, PartiallyFrozenEmbedding, UnsupportedOption
from .concat import Concat
from .detach_mask import DetachMask
from .freeze_all import FreezeAll
from .full import Full
from .fused import Fused
from .grad_hook import GradHook
from .grad_zero import GradZero
from .index_copy import IndexCopy
from .language_model import (
    InstalledTables,
    PartiallyFrozenOutput,
    installed_tables,
    merge_trained_rows,
    train_only_rows,
)
from .parametrize import Parametrize
from .restore import Restore
from .split import Split
from .step_in_backward import StepInBackward
from .trained_rows import load_trained_rows, trained_rows_state_dict

APPROACHES: dict[str, type[PartiallyFrozenEmbedding]] = {
    cls.name: cls
    for cls in (
        Full,
        FreezeAll,
        Split,
        Concat,
        IndexCopy,
        Parametrize,
        GradZero,
        GradHook,
        DetachMask,
        Restore,
        Fused,
        StepInBackward,
    )
}

__all__ = [
    "APPROACHES",
    "EmbeddingOptions",
    "InstalledTables",
    "PartiallyFrozenEmbedding",
    "PartiallyFrozenOutput",
    "UnsupportedOption",
    "installed_tables",
    "load_trained_rows",
    "merge_trained_rows",
    "train_only_rows",
    "trained_rows_state_dict",
]
