"""Faulty variants of the reference approaches: the bugs people write when they freeze rows.

Each class is a reference approach of :mod:`impls` with one realistic bug, the kind found in
answers, issues and hand-written training code; its docstring's first line says what the bug
is. They are named to the matrix by reference (``bench.mutate.faulty:NAME``), like any user's
implementation, so they are judged as black boxes and expected to hold every property: a
variant the matrix shows violated somewhere is *killed*, one that holds everywhere *survives*
and shows a blind spot of the suite (unless its ``survives_where`` says which scenario it needs
that this machine cannot run).

``kind`` groups them as the issue that asked for them does: masks, rows dropped, aliasing,
options accepted and ignored, hand-written backward, precision, caches, mode and batch size,
device and checkpoints.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from impls.base import EmbeddingOptions, renormed
from impls.detach_mask import DetachMask
from impls.grad_hook import GradHook
from impls.restore import Restore
from impls.split import Split


class Faulty:
    """Mixin naming a variant's kind of bug; ``survives_where`` names the scenario group the
    bug needs when that group cannot run everywhere (a CUDA-only path)."""

    kind: ClassVar[str]
    survives_where: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.__name__  # refusals name the variant, not the approach it is made from


# Masks and rows -------------------------------------------------------------------------------


class ShiftedMask(Faulty, Split):
    """The mask is shifted by one row: each trainable row's predecessor trains instead (the
    two-table snippet's ``>`` for ``>=``, generalised to any mask)."""

    kind = "mask"

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask.roll(-1), options)


class InvertedMask(Faulty, GradHook):
    """The gradient hook keeps the frozen rows' gradient and zeroes the trainable ones'
    (``mask`` where ``~mask`` was meant: a "frozen" mask passed as a "trainable" one)."""

    kind = "mask"

    def _mask_grad(self, grad: Tensor) -> Tensor:
        return grad * (~self.trainable_mask).to(grad.dtype).unsqueeze(1)


class LastRowDropped(Faulty, Split):
    """The last trainable row is left out (``trainable_ids[:-1]``, a slice meant to drop a
    sentinel), so it never trains."""

    kind = "rows dropped"

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        kept = trainable_mask.clone()
        ids = trainable_mask.nonzero().squeeze(1)
        if ids.numel():
            kept[ids[-1]] = False
        super().__init__(weight, kept, options)


class TrainableRowsZeroed(Faulty, Split):
    """The trainable rows start from zeros, not from the rows given (new rows "initialised
    later", then never)."""

    kind = "rows dropped"

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, options)
        with torch.no_grad():
            self.trainable_weight.zero_()


# The caller's tensors --------------------------------------------------------------------------


class AliasedWeight(Faulty, GradHook):
    """The table is the caller's ``weight`` itself (``nn.Parameter(weight)`` without a copy),
    so every step writes the trained rows into the caller's tensor."""

    kind = "caller's tensors aliased"

    @classmethod
    def from_pretrained(cls, weight: Tensor, trainable: Tensor, **options: Any):
        module = super().from_pretrained(weight, trainable, **options)
        module.weight = nn.Parameter(weight.detach())
        module.weight.register_hook(module._mask_grad)
        return module


class RewrittenIds(Faulty, Split):
    """The lookup maps the ids of trainable rows to their local rows in the caller's id tensor,
    in place (the seed's ``batch -= num_embeddings``), to save an allocation."""

    kind = "caller's tensors aliased"

    def lookup(self, ids: Tensor) -> Tensor:
        out = super().lookup(ids)
        local = self.local_index[ids]
        ids.copy_(torch.where(local >= 0, local, ids))
        return out


class PaddingRowTakenFromCallersMask(Faulty, Split):
    """The padding row is removed from the caller's mask in place (``trainable[pad] = False``:
    it never trains anyway), so the caller's mask changes."""

    kind = "caller's tensors aliased"

    @classmethod
    def from_pretrained(cls, weight: Tensor, trainable: Tensor, **options: Any):
        if options.get("padding_idx") is not None and trainable.dtype == torch.bool:
            trainable[options["padding_idx"]] = False
        return super().from_pretrained(weight, trainable, **options)


# Options accepted and ignored -----------------------------------------------------------------


class PaddingIgnored(Faulty, Split):
    """``padding_idx`` is accepted and dropped: a trainable padding row gets a gradient and
    trains."""

    kind = "option accepted and ignored"

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, options)
        self.local_padding_idx = None


class MaxNormIgnored(Faulty, Split):
    """``max_norm`` is accepted and never applied: looked-up rows keep their length."""

    kind = "option accepted and ignored"

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, replace(options, max_norm=None))


class ScaleGradByFreqIgnored(Faulty, Split):
    """``scale_grad_by_freq`` is accepted and never applied: a row looked up k times gets k
    times the gradient."""

    kind = "option accepted and ignored"

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, replace(options, scale_grad_by_freq=False))


class SparseIgnored(Faulty, Split):
    """``sparse=True`` is accepted and the gradient is dense anyway, which a sparse optimizer
    refuses and a dense one applies to every row."""

    kind = "option accepted and ignored"

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, replace(options, sparse=False))


class MaxNormRenormsFrozenTable(Faulty, Split):
    """``max_norm`` is passed to ``F.embedding`` on the frozen buffer, which renormalises the
    looked-up frozen rows in place (nn.Embedding's documented side effect)."""

    kind = "option accepted and ignored"

    def lookup(self, ids: Tensor) -> Tensor:
        o = self.options
        if o.max_norm is not None:
            F.embedding(ids, self.frozen_weight, max_norm=o.max_norm, norm_type=o.norm_type)
        return super().lookup(ids)


# Hand-written backward ------------------------------------------------------------------------


class _LastWriteWins(torch.autograd.Function):
    """Trainable rows looked up by ``local``; backward assigns instead of accumulating."""

    @staticmethod
    def forward(ctx, trainable: Tensor, local: Tensor) -> Tensor:
        ctx.save_for_backward(local)
        ctx.num_trainable = trainable.shape[0]
        return trainable.index_select(0, local.clamp(min=0))

    @staticmethod
    def backward(ctx, grad: Tensor):
        (local,) = ctx.saved_tensors
        kept = local >= 0
        grad_trainable = grad.new_zeros(ctx.num_trainable, grad.shape[-1])
        grad_trainable[local[kept]] = grad[kept]  # a repeated id keeps one token's gradient
        return grad_trainable, None


class RepeatedIdsLost(Faulty, Split):
    """A hand-written backward writes each token's gradient into its row by assignment
    (``grad[rows] = g``) instead of ``index_add``: a row looked up twice gets one token's
    gradient."""

    kind = "hand-written backward"

    def overwrite_trainable_tokens(self, frozen_rows: Tensor, local: Tensor) -> Tensor:
        o = self.options
        if o.padding_idx is not None or o.scale_grad_by_freq or o.sparse:
            return super().overwrite_trainable_tokens(frozen_rows, local)
        trained = _LastWriteWins.apply(self.trainable_weight, local)
        return torch.where((local >= 0).unsqueeze(-1), trained, frozen_rows)


class DetachedOnlyInTheLookup(Faulty, DetachMask):
    """Frozen rows are read through ``detach()`` in the lookup only; the table an output layer
    tied to the embedding multiplies by is the raw parameter, so frozen rows get a gradient
    there and train."""

    kind = "hand-written backward"

    def lookup(self, ids: Tensor) -> Tensor:
        return self.embed(ids, super().effective_weight(), self.options.padding_idx)

    def effective_weight(self) -> Tensor:
        return self.weight


class RestoredBeforeTheStep(Faulty, Restore):
    """The frozen rows are copied back before ``optimizer.step()`` (a pre-hook where a
    post-hook was meant), so every step moves them and they stay moved."""

    kind = "hook or step order"

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.register_step_pre_hook(lambda *_: self.restore_frozen_rows())


class HookRemovedAfterFirstStep(Faulty, GradHook):
    """The gradient hook removes itself after its first call (a one-shot hook, as for a
    warm-up), so from the second step on frozen rows get their real gradient."""

    kind = "hook or step order"

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, options)
        self.calls = 0

    def _mask_grad(self, grad: Tensor) -> Tensor:
        self.calls += 1
        return super()._mask_grad(grad) if self.calls == 1 else grad


# Precision ------------------------------------------------------------------------------------


class FrozenTableInBfloat16(Faulty, Split):
    """The frozen table is stored in bfloat16 to halve its memory, and read back as the
    weight's dtype: every frozen row is rounded."""

    kind = "precision lost in the frozen table"

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight.to(torch.bfloat16).to(weight.dtype), trainable_mask, options)
        with torch.no_grad():
            self.trainable_weight.copy_(weight[self.trainable_ids])


class FrozenTableInFloat32(Faulty, Split):
    """The frozen table is converted with ``.float()`` (what most code does to a loaded table),
    so a float64 table loses its low bits and is read back rounded."""

    kind = "precision lost in the frozen table"

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight.float().to(weight.dtype), trainable_mask, options)
        with torch.no_grad():
            self.trainable_weight.copy_(weight[self.trainable_ids])


# Caches ---------------------------------------------------------------------------------------


class StaleMergedWeight(Faulty, Split):
    """``merged_weight()`` is memoised on its first call (it is O(V·D)), so the table read after
    training is the table before it."""

    kind = "cache"

    def merged_weight(self) -> Tensor:
        if not hasattr(self, "_merged"):
            self._merged = super().merged_weight()
        return self._merged


class OutputCachedById(Faulty, Split):
    """The lookup caches its output per id tensor (keyed by ``data_ptr()``, so a batch reused
    every step is looked up once), and a later step reads the rows as they were."""

    kind = "cache"

    def lookup(self, ids: Tensor) -> Tensor:
        cache = self.__dict__.setdefault("_outputs", {})
        key = (ids.data_ptr(), tuple(ids.shape))
        if key not in cache:
            cache[key] = super().lookup(ids)
            return cache[key]
        # Same rows as before, still differentiable through the current parameter.
        return cache[key].detach() + 0 * super().lookup(ids)


_FROZEN_TABLES: dict[tuple, Tensor] = {}


class FrozenTableSharedByShape(Faulty, Split):
    """Frozen tables are shared between instances of the same shape (a module-level cache "so
    a reload costs nothing"), so a second table of that shape reads the first one's rows."""

    kind = "cache"

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        key = (tuple(weight.shape), weight.dtype, weight.device)
        shared = _FROZEN_TABLES.setdefault(key, weight.clone())
        super().__init__(shared.clone(), trainable_mask, options)
        with torch.no_grad():
            self.trainable_weight.copy_(weight[self.trainable_ids])


# Mode, batch size and device ------------------------------------------------------------------


class EvalReadsPretrainedTable(Faulty, Split):
    """In ``eval()`` mode the lookup reads the frozen buffer only (an "inference path" that
    forgets the trained rows live in the parameter)."""

    kind = "mode-dependent path"

    def lookup(self, ids: Tensor) -> Tensor:
        if not self.training:
            o = self.options
            rows = self.frozen_weight.index_select(0, ids.reshape(-1))
            return renormed(rows, o.max_norm, o.norm_type).view(*ids.shape, self.embedding_dim)
        return super().lookup(ids)


LARGE_BATCH = 32
"""Tokens from which :class:`LargeBatchFastPath` takes its fast path."""


class LargeBatchFastPath(Faulty, Split):
    """From 32 tokens on, a "fast path" gathers from the merged table read detached (no sort,
    no backward), so large batches train nothing."""

    kind = "batch-size-dependent path"

    def lookup(self, ids: Tensor) -> Tensor:
        if ids.numel() >= LARGE_BATCH:
            return self.embed(ids, self.effective_weight().detach(), self.options.padding_idx)
        return super().lookup(ids)


class CudaAssignsRepeatedIds(Faulty, Split):
    """On CUDA only, the gradient is assigned per token rather than accumulated (a kernel
    written for speed), so repeated ids lose gradient there; on CPU it is ``split``."""

    kind = "device-dependent path"
    survives_where = "device"

    def overwrite_trainable_tokens(self, frozen_rows: Tensor, local: Tensor) -> Tensor:
        if frozen_rows.device.type != "cuda":
            return super().overwrite_trainable_tokens(frozen_rows, local)
        trained = _LastWriteWins.apply(self.trainable_weight, local)
        return torch.where((local >= 0).unsqueeze(-1), trained, frozen_rows)


# Checkpoints ----------------------------------------------------------------------------------


class TrainableRowsNotSaved(Faulty, Split):
    """The trainable rows are left out of ``state_dict()`` (saved "separately", then not), so
    a model loaded from a checkpoint starts again from the rows given."""

    kind = "checkpoint"

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination.pop(prefix + "trainable_weight", None)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "trainable_weight", self.trainable_weight.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


FAULTY: tuple[type[Faulty], ...] = (
    ShiftedMask,
    InvertedMask,
    LastRowDropped,
    TrainableRowsZeroed,
    AliasedWeight,
    RewrittenIds,
    PaddingRowTakenFromCallersMask,
    PaddingIgnored,
    MaxNormIgnored,
    ScaleGradByFreqIgnored,
    SparseIgnored,
    MaxNormRenormsFrozenTable,
    RepeatedIdsLost,
    DetachedOnlyInTheLookup,
    RestoredBeforeTheStep,
    HookRemovedAfterFirstStep,
    FrozenTableInBfloat16,
    FrozenTableInFloat32,
    StaleMergedWeight,
    OutputCachedById,
    FrozenTableSharedByShape,
    EvalReadsPretrainedTable,
    LargeBatchFastPath,
    CudaAssignsRepeatedIds,
    TrainableRowsNotSaved,
)
"""Every faulty variant, in the order the report lists them."""
