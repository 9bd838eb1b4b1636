"""The contract every approach meets (docs/design.md), and the pieces they share.

An approach subclasses :class:`PartiallyFrozenEmbedding`, names itself in ``name``, builds its
parameters and buffers in ``__init__`` from an already-validated weight and mask, and implements
``lookup`` and ``effective_weight``. Everything a user calls goes through the base class, so
argument checking, option refusal and the "inputs are never mutated" guarantee live in one place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .huge_pages import huge_page_copy
from .validation import (
    as_trainable_mask,
    check_ids,
    check_max_norm,
    check_padding_idx,
    check_weight,
)


@dataclass(frozen=True)
class EmbeddingOptions:
    """The ``torch.nn.Embedding`` options an approach must honour or refuse."""

    padding_idx: int | None = None
    max_norm: float | None = None
    norm_type: float = 2.0
    scale_grad_by_freq: bool = False
    sparse: bool = False

    def active(self) -> dict[str, object]:
        """Options that differ from ``nn.Embedding``'s defaults (what an approach may refuse)."""
        return {k: v for k, v in asdict(self).items() if v != getattr(EmbeddingOptions, k)}


class UnsupportedOption(ValueError):
    """Raised when an approach cannot honour an embedding option; names both."""


TORCH_TOOLS = ("compile_fullgraph", "compile_fullgraph_backward", "vmap", "grad", "jvp")
"""The PyTorch tools a lookup is expected to work under (the keys of ``torch_tools_limits``).

- ``compile_fullgraph``: ``torch.compile(fullgraph=True)`` of forward and loss; AOTAutograd
  compiles the backward from the same graph. Every shape is fixed by the ids' shape (no host
  synchronisation) and training reaches what eager training reaches.
- ``compile_fullgraph_backward``: the same with ``loss.backward()`` traced into the graph
  (``torch._dynamo.config.trace_autograd_ops = True``, experimental in torch 2.13).
- ``vmap``, ``grad``, ``jvp``: ``torch.func``'s transforms, the last two of
  ``torch.func.functional_call``; each agrees with eager autograd and with ``F.embedding`` on the
  effective table.
"""


class PartiallyFrozenEmbedding(nn.Module):
    """An embedding table whose rows outside ``trainable_mask`` never change.

    Subclasses set ``name`` (the registry key), ``refused_options`` (option -> why it cannot be
    honoured; ``from_pretrained`` refuses those options before anything is allocated) and
    ``torch_tools_limits`` (a tool of :data:`TORCH_TOOLS` -> why the approach's technique cannot
    work under it; every tool not listed works and gives what eager autograd gives).
    """

    name: ClassVar[str]
    refused_options: ClassVar[dict[str, str]] = {}
    torch_tools_limits: ClassVar[dict[str, str]] = {}

    trainable_mask: Tensor
    trainable_ids: Tensor
    frozen_ids: Tensor

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__()
        self.options = options
        self.num_embeddings, self.embedding_dim = weight.shape
        # Read once here, so that no lookup has to ask the device how many rows train.
        self.num_trainable = int(trainable_mask.sum())
        self.register_buffer("trainable_mask", trainable_mask)
        self.register_buffer("trainable_ids", trainable_mask.nonzero().squeeze(1))
        self.register_buffer("frozen_ids", (~trainable_mask).nonzero().squeeze(1))

    @classmethod
    def from_pretrained(
        cls,
        weight: Tensor,
        trainable: Tensor,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
    ) -> PartiallyFrozenEmbedding:
        """Build the approach from a pretrained ``(V, D)`` table and the rows that may train.

        ``trainable`` is a bool mask of length V or a 1-D tensor of distinct row ids. The caller's
        tensors are copied, never aliased, so training cannot write through to them; a large
        table's copy is put on transparent huge pages where the system offers them
        (:mod:`impls.huge_pages`: the lookup's random rows miss the TLB less).
        """
        weight = check_weight(weight)
        num_rows = weight.shape[0]
        mask = as_trainable_mask(trainable, num_rows, weight.device)
        options = EmbeddingOptions(
            padding_idx=check_padding_idx(padding_idx, num_rows),
            max_norm=check_max_norm(max_norm),
            norm_type=float(norm_type),
            scale_grad_by_freq=bool(scale_grad_by_freq),
            sparse=bool(sparse),
        )
        for option in options.active():
            if option in cls.refused_options:
                raise UnsupportedOption(
                    f"approach {cls.name!r} does not support {option}="
                    f"{getattr(options, option)!r}: {cls.refused_options[option]}"
                )
        return cls(huge_page_copy(weight), mask, options)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Connect to the optimizer that steps ``parameters()``; most approaches need nothing."""

    def forward(self, ids: Tensor) -> Tensor:
        check_ids(ids, self.num_embeddings, self.trainable_mask.device)
        return self.lookup(ids)

    def lookup(self, ids: Tensor) -> Tensor:
        raise NotImplementedError

    def effective_weight(self) -> Tensor:
        """The ``(V, D)`` table the lookup reads, as a differentiable tensor.

        This is what an output layer tied to the embedding (language-model style) multiplies by;
        for approaches that store the table in pieces it is assembled, at O(V·D) cost.
        """
        raise NotImplementedError

    def merged_weight(self) -> Tensor:
        """The effective ``(V, D)`` table, detached and safe to keep."""
        return self.effective_weight().detach().clone()

    def project(self, hidden: Tensor, bias: Tensor | None = None) -> Tensor:
        """``hidden @ table.T + bias``: the logits of an output layer that reads this table.

        This is what an output layer tied to the embedding computes (or an untied output layer
        installed as a table of its own). ``bias`` is a constant. The default multiplies by
        ``effective_weight()``; approaches that store the table in pieces override it so that no
        ``(V, D)`` table is assembled per step.
        """
        return F.linear(hidden, self.effective_weight(), bias)

    def row_storage(self) -> tuple[Tensor, Tensor | None]:
        """The parameter that holds the trainable rows, and which of its rows they are.

        ``(parameter, None)``: the parameter holds exactly the trainable rows, in
        ``trainable_ids`` order; ``(parameter, ids)``: they are its rows ``ids``. Saving and
        loading only the trained rows goes through this, so it never reads the frozen rows.
        """
        raise NotImplementedError(
            f"approach {self.name!r} does not say where its trainable rows are stored "
            "(row_storage), so its trained rows cannot be saved or loaded on their own"
        )

    def trained_rows(self) -> Tensor:
        """The ``(n, D)`` current values of the trainable rows, in ``trainable_ids`` order."""
        storage, rows = self.row_storage()
        values = storage if rows is None else storage.index_select(0, rows)
        return values.detach().clone()

    @torch.no_grad()
    def load_trained_rows(self, values: Tensor) -> None:
        """Overwrite the trainable rows in place with ``values`` (``(n, D)``, ``trainable_ids``
        order); the frozen rows are not touched, parameters keep their identity (an optimizer
        built before still steps them)."""
        expected = (self.trainable_ids.numel(), self.embedding_dim)
        if not isinstance(values, Tensor) or tuple(values.shape) != expected:
            got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(
                f"values: expected a tensor of shape {expected} (one row of width "
                f"{self.embedding_dim} per trainable id), got {got}"
            )
        storage, rows = self.row_storage()
        values = values.to(device=storage.device, dtype=storage.dtype)
        if rows is None:
            storage.copy_(values)
        else:
            storage.index_copy_(0, rows, values)

    def embed(self, ids: Tensor, table: Tensor, padding_idx: int | None) -> Tensor:
        """``F.embedding`` with this module's options on ``table``.

        ``padding_idx`` is explicit because it is a row of ``table``, which for some approaches is
        not the global table (a permuted or trainable-only one).
        """
        o = self.options
        return F.embedding(
            ids,
            table,
            padding_idx=padding_idx,
            max_norm=o.max_norm,
            norm_type=o.norm_type,
            scale_grad_by_freq=o.scale_grad_by_freq,
            sparse=o.sparse,
        )

    def extra_repr(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.active().items())
        trainable = self.num_trainable
        return f"{self.num_embeddings}, {self.embedding_dim}, trainable={trainable}" + (
            f", {options}" if options else ""
        )


class WholeTableParameter(PartiallyFrozenEmbedding):
    """Shared shape of the approaches that keep the entire ``(V, D)`` table as one parameter.

    ``enforces_trainable_mask`` is False only for the control that trains every row anyway.
    """

    enforces_trainable_mask: ClassVar[bool] = True

    def __init__(self, weight: Tensor, trainable_mask: Tensor, options: EmbeddingOptions):
        super().__init__(weight, trainable_mask, options)
        self.weight = nn.Parameter(weight)
        # torch's sparse embedding backward refuses scale_grad_by_freq. When no row may train the
        # gradient is not needed, so the table is read detached, as a frozen nn.Embedding reads
        # it, and the rest of the model trains instead of backward failing.
        self.reads_table_detached = (
            self.enforces_trainable_mask
            and self.num_trainable == 0
            and options.sparse
            and options.scale_grad_by_freq
        )

    def lookup(self, ids: Tensor) -> Tensor:
        table = self.effective_weight()
        if self.reads_table_detached:
            table = table.detach()
        return self.embed(ids, table, self.options.padding_idx)

    def effective_weight(self) -> Tensor:
        return self.weight

    def row_storage(self) -> tuple[Tensor, Tensor | None]:
        return self.weight, self.trainable_ids


def renorm_scale(rows: Tensor, max_norm: float, norm_type: float) -> Tensor:
    """The factor ``F.embedding``'s ``max_norm`` multiplies each row by, shape ``(..., 1)``:
    ``max_norm / (norm + 1e-7)`` where ``norm > max_norm``, else 1 (which leaves a row's bits
    unchanged)."""
    norms = rows.norm(p=norm_type, dim=-1, keepdim=True)
    return torch.where(norms > max_norm, max_norm / (norms + 1e-7), torch.ones_like(norms))


def renormed(rows: Tensor, max_norm: float | None, norm_type: float) -> Tensor:
    """Out-of-place version of ``F.embedding``'s ``max_norm`` rescaling of looked-up rows.

    ``F.embedding`` rescales the *table* in place, which would write into frozen rows; applying the
    same scale to the gathered copy gives the same output while leaving the frozen table untouched.
    """
    if max_norm is None:
        return rows
    return rows * renorm_scale(rows, max_norm, norm_type)


@torch.no_grad()
def renorm_looked_up_rows_(
    table: Tensor, rows: Tensor, looked_up: Tensor, max_norm: float, norm_type: float
) -> None:
    """``torch.embedding_renorm_(table, rows[looked_up], ...)`` without selecting by the mask.

    Selecting the looked-up rows would give a tensor whose size depends on the data (a host
    synchronisation on CUDA, a data-dependent shape under ``torch.compile``). Instead every token
    computes its row's factor (1 where ``looked_up`` is False), each row takes the smallest factor
    of its tokens (all of a row's looked-up tokens agree), and the table is multiplied by it:
    O(n·D).
    """
    token_scale = renorm_scale(table.index_select(0, rows), max_norm, norm_type).squeeze(-1)
    token_scale = torch.where(looked_up, token_scale, torch.ones_like(token_scale))
    row_scale = token_scale.new_ones(table.shape[0]).scatter_reduce(
        0, rows, token_scale, reduce="amin"
    )
    table.mul_(row_scale.unsqueeze(-1))


DENSE_REBUILD_REFUSES_SPARSE = (
    "the lookup reads a table rebuilt every forward, and a sparse gradient cannot flow back "
    "through that rebuild (torch has no sparse kernel for it)"
)
