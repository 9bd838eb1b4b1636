"""Train only some rows of a language model's token embeddings (new tokens), with any approach.

A language model has an input embedding and, usually, an output layer whose ``(V, D)`` weight
gives the logits. Models that follow the usual conventions expose them as
``get_input_embeddings()`` / ``set_input_embeddings(module)`` and ``get_output_embeddings()`` /
``set_output_embeddings(module)`` (every transformers ``PreTrainedModel`` does); nothing else of
the model is assumed, and transformers is not imported here. The output layer is *tied* when it
holds the very same weight tensor as the input embedding.

:func:`train_only_rows` replaces the input embedding with an approach of
:data:`impls.APPROACHES` built from it, and the output layer with a
:class:`PartiallyFrozenOutput`: tied, it reads the installed input table, so the logits see the
same frozen and trainable rows (for ``split`` and ``fused`` one ``(V, D)`` matmul, nothing
assembled per step, see :meth:`impls.split.Split.project`); untied, the output layer becomes a
table of its own, built by the same approach with the same trainable rows, so the new tokens'
output rows train too and all its other rows stay as they were. Every other parameter of the
model is frozen (``requires_grad=False``): only the rows train.

Install *after* ``resize_token_embeddings``: resizing reads the plain ``nn.Embedding``. Once
installed there is no ``weight`` to re-tie, so transformers' ``tie_weights()`` raises instead of
putting a plain layer back (it cannot silently undo the install).

Afterwards, :func:`merge_trained_rows` turns the model back into plain ``nn.Embedding`` /
``nn.Linear`` layers (tied again if it was) that save and load as an ordinary model; checkpoints
of the trained rows alone are :mod:`impls.trained_rows`'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import PartiallyFrozenEmbedding

INPUT = "input_embeddings"
OUTPUT = "output_embeddings"


class PartiallyFrozenOutput(nn.Module):
    """An output layer, ``hidden @ table.T + bias``, whose table is a partially frozen one.

    Tied, ``table`` is the installed input embedding, held outside the module tree (as PEFT's
    tied trainable-tokens layer holds its adapter) so that ``parameters()`` and ``state_dict()``
    list it once, under the input embedding. Untied, ``table`` is this layer's own submodule.
    ``bias``, if the layer had one, stays as it was (a buffer).
    """

    def __init__(self, table: PartiallyFrozenEmbedding, bias: Tensor | None, tied: bool):
        super().__init__()
        self.tied = tied
        if tied:
            self._tied_table = [table]
        else:
            self.rows = table
        self.register_buffer("bias", bias)
        self.in_features = table.embedding_dim
        self.out_features = table.num_embeddings

    @property
    def table(self) -> PartiallyFrozenEmbedding:
        return self._tied_table[0] if self.tied else self.rows

    def forward(self, hidden: Tensor) -> Tensor:
        return self.table.project(hidden, self.bias)

    def __setattr__(self, name: str, value: object) -> None:
        if name == "weight":
            raise AttributeError(
                "PartiallyFrozenOutput has no weight to tie or replace: it reads the table "
                "installed by impls.train_only_rows (tied to the input embedding already, if it "
                "was). Call impls.merge_trained_rows(model) first to get a plain nn.Linear back."
            )
        super().__setattr__(name, value)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, tied={self.tied}"


@dataclass(frozen=True)
class InstalledTables:
    """What :func:`train_only_rows` put into a model: the input table and the output layer."""

    input: PartiallyFrozenEmbedding
    output: PartiallyFrozenOutput | None

    @property
    def tied(self) -> bool:
        return self.output is not None and self.output.tied

    def tables(self) -> dict[str, PartiallyFrozenEmbedding]:
        """Each table that trains on its own, by its state-dict prefix (one when tied)."""
        tables = {INPUT: self.input}
        if self.output is not None and not self.output.tied:
            tables[OUTPUT] = self.output.table
        return tables

    def parameters(self) -> Iterator[nn.Parameter]:
        """The parameters that train: what to give the optimizer."""
        for table in self.tables().values():
            yield from (p for p in table.parameters() if p.requires_grad)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """``attach`` every table to the optimizer (only some approaches need it)."""
        for table in self.tables().values():
            table.attach(optimizer)


def train_only_rows(
    model: nn.Module,
    trainable: Tensor | Sequence[int],
    approach: str | type[PartiallyFrozenEmbedding] = "fused",
    **options: object,
) -> InstalledTables:
    """Make only the rows ``trainable`` of ``model``'s embedding (and untied output layer) train.

    ``trainable``: a bool mask over the V rows or the row ids (a tensor or a list of ints, e.g.
    the ids of tokens just added). ``approach``: a name of :data:`impls.APPROACHES` or an approach
    class. ``options``: ``from_pretrained`` options for the input table; unset ones are copied
    from the model's ``nn.Embedding`` (``padding_idx``, ``max_norm``, ...). The model is changed
    in place: every other parameter is frozen, the layers are replaced. Returns the installed
    tables; give ``.parameters()`` to the optimizer and call ``.attach(optimizer)``.
    """
    cls = _approach_class(approach)
    embedding = _plain_input_embedding(model)
    output = _plain_output_layer(model, embedding)
    tied = output is not None and output.weight is embedding.weight
    if not isinstance(trainable, Tensor) and isinstance(trainable, Sequence):
        trainable = torch.as_tensor(trainable, dtype=torch.long)
    if isinstance(trainable, Tensor):
        trainable = trainable.to(embedding.weight.device)
    input_table = cls.from_pretrained(
        embedding.weight.detach(), trainable, **{**_embedding_options(embedding), **options}
    )
    layer = None
    if output is not None:
        table = (
            input_table
            if tied
            else cls.from_pretrained(output.weight.detach(), input_table.trainable_mask)
        )
        bias = None if output.bias is None else output.bias.detach().clone()
        layer = PartiallyFrozenOutput(table, bias, tied)
    model.requires_grad_(False)  # before installing: the new tables train as their approach says
    _install(model, input_table, layer)
    return InstalledTables(input_table, layer)


def installed_tables(model: nn.Module) -> InstalledTables:
    """The tables :func:`train_only_rows` installed in ``model``; an error if there are none."""
    require_conventions(model, "get_input_embeddings")
    table = model.get_input_embeddings()
    if not isinstance(table, PartiallyFrozenEmbedding):
        raise ValueError(
            f"model: expected a model prepared by impls.train_only_rows (input embeddings a "
            f"PartiallyFrozenEmbedding), got input embeddings of type {type(table).__name__}"
        )
    output = _output_embeddings(model)
    if output is not None and not isinstance(output, PartiallyFrozenOutput):
        raise ValueError(
            f"model: the input embeddings are installed but the output layer is a "
            f"{type(output).__name__}, expected the PartiallyFrozenOutput train_only_rows put there"
        )
    return InstalledTables(table, output)


def merge_trained_rows(model: nn.Module) -> nn.Module:
    """Replace the installed tables by plain ``nn.Embedding`` / ``nn.Linear`` layers holding the
    effective tables (the output layer tied to the embedding again if it was); returns ``model``.

    The merged layers are frozen like the rest of the model; the model saves, loads and serves
    as an ordinary one.
    """
    installed = installed_tables(model)
    table = installed.input
    o = table.options
    embedding = nn.Embedding.from_pretrained(
        table.merged_weight(),
        freeze=True,
        padding_idx=o.padding_idx,
        max_norm=o.max_norm,
        norm_type=o.norm_type,
        scale_grad_by_freq=o.scale_grad_by_freq,
        sparse=o.sparse,
    )
    linear = None
    if installed.output is not None:
        output = installed.output
        linear = nn.Linear(
            output.in_features, output.out_features, bias=output.bias is not None, device="meta"
        )
        linear.weight = (
            embedding.weight
            if output.tied
            else nn.Parameter(output.table.merged_weight(), requires_grad=False)
        )
        if output.bias is not None:
            linear.bias = nn.Parameter(output.bias.detach().clone(), requires_grad=False)
    _install(model, embedding, linear)
    return model


def _approach_class(approach: object) -> type[PartiallyFrozenEmbedding]:
    from . import APPROACHES

    if isinstance(approach, type) and issubclass(approach, PartiallyFrozenEmbedding):
        return approach
    if isinstance(approach, str) and approach in APPROACHES:
        return APPROACHES[approach]
    raise ValueError(
        f"approach: expected a name in {sorted(APPROACHES)} or a PartiallyFrozenEmbedding "
        f"subclass, got {approach!r}"
    )


def require_conventions(model: object, *methods: str):
    """``model``'s first method of ``methods``, after checking it has every one of them."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    missing = [m for m in methods if not callable(getattr(model, m, None))]
    if missing:
        raise TypeError(
            f"model: expected a model with the embedding conventions {list(methods)} (as every "
            f"transformers PreTrainedModel has), got {type(model).__name__} without {missing}"
        )
    return getattr(model, methods[0])


def _plain_input_embedding(model: nn.Module) -> nn.Embedding:
    embedding = require_conventions(model, "get_input_embeddings", "set_input_embeddings")()
    if isinstance(embedding, PartiallyFrozenEmbedding):
        raise ValueError(
            f"model: its input embeddings are already a {type(embedding).__name__} "
            f"(approach {embedding.name!r}) installed by impls.train_only_rows; call "
            "impls.merge_trained_rows(model) first"
        )
    if not isinstance(embedding, nn.Embedding):
        raise TypeError(
            f"model.get_input_embeddings(): expected an nn.Embedding, got "
            f"{type(embedding).__name__}"
        )
    return embedding


def _output_embeddings(model: nn.Module) -> nn.Module | None:
    getter = getattr(model, "get_output_embeddings", None)
    return getter() if callable(getter) else None


def _plain_output_layer(model: nn.Module, embedding: nn.Embedding) -> nn.Linear | None:
    """The output layer to install over, or None when the model has none (an encoder)."""
    output = _output_embeddings(model)
    if output is None:
        return None
    if not isinstance(output, nn.Linear):
        raise TypeError(
            f"model.get_output_embeddings(): expected an nn.Linear or None, got "
            f"{type(output).__name__}"
        )
    require_conventions(model, "set_output_embeddings")
    if output.weight.shape != embedding.weight.shape:
        raise ValueError(
            f"model.get_output_embeddings(): expected a weight of shape "
            f"{tuple(embedding.weight.shape)} like the input embeddings (one row per token), got "
            f"{tuple(output.weight.shape)}; resize both to the tokenizer's length first"
        )
    return output


def _embedding_options(embedding: nn.Embedding) -> dict[str, object]:
    return {
        "padding_idx": embedding.padding_idx,
        "max_norm": embedding.max_norm,
        "norm_type": embedding.norm_type,
        "scale_grad_by_freq": embedding.scale_grad_by_freq,
        "sparse": embedding.sparse,
    }


def _install(model: nn.Module, embedding: nn.Module, output: nn.Module | None) -> None:
    model.set_input_embeddings(embedding)
    if output is not None:
        model.set_output_embeddings(output)
    if model.get_input_embeddings() is not embedding or (
        output is not None and _output_embeddings(model) is not output
    ):
        raise TypeError(
            f"model: {type(model).__name__}.set_input_embeddings / set_output_embeddings did not "
            "put the given layer where get_input_embeddings / get_output_embeddings read it"
        )


def plain_weights(model: nn.Module) -> dict[str, Tensor]:
    """The weight of each plain table of ``model``, by state-dict prefix (one when tied)."""
    embedding = _plain_input_embedding(model)
    output = _plain_output_layer(model, embedding)
    weights = {INPUT: embedding.weight}
    if output is not None and output.weight is not embedding.weight:
        weights[OUTPUT] = output.weight
    return weights
