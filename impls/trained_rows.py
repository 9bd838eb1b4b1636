"""Checkpoints of the trained rows alone: save what trained, load it into a model, checked.

A model prepared by :func:`impls.train_only_rows` trains n rows of a V-row table; a checkpoint of
the whole model stores V. :func:`trained_rows_state_dict` holds only the trained rows and their
ids (per table), and :func:`load_trained_rows` writes them back, into an installed model (to go
on training) or into a plain one of the same vocabulary (that is serving). Keys, ids and widths
are checked before anything is written, and a mismatch names what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from .base import PartiallyFrozenEmbedding
from .language_model import OUTPUT, installed_tables, plain_weights, require_conventions

SHOWN_IDS = 8
"""How many ids an error message lists before it abbreviates."""


def trained_rows_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Only what trained: per table, ``<table>.ids`` (int64, (n,)) and ``<table>.rows`` ((n, D)).

    Tables: ``input_embeddings``, and ``output_embeddings`` when the output layer is untied.
    The tensors are copies, ready for ``torch.save`` or ``safetensors.torch.save_file``.
    """
    state = {}
    for prefix, table in installed_tables(model).tables().items():
        state[f"{prefix}.ids"] = table.trainable_ids.detach().clone()
        state[f"{prefix}.rows"] = table.trained_rows()
    return state


def load_trained_rows(model: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Write the rows of :func:`trained_rows_state_dict` into ``model``, in place.

    ``model`` is either prepared by :func:`train_only_rows` with the same trainable ids (to go on
    training), or a plain model of the same vocabulary (to serve: the rows are written into its
    ``nn.Embedding`` and untied ``nn.Linear``; nothing else changes). Keys, ids and widths must
    match the model; a mismatch raises naming what was expected, before anything is written.
    """
    embedding = require_conventions(model, "get_input_embeddings")()
    if isinstance(embedding, PartiallyFrozenEmbedding):
        tables = installed_tables(model).tables()
        shapes = {prefix: (t.num_embeddings, t.embedding_dim) for prefix, t in tables.items()}
        entries = _checked_state_dict(state_dict, shapes)
        for prefix, (ids, _) in entries.items():
            expected = tables[prefix].trainable_ids
            if not torch.equal(ids.to(expected.device), expected):
                raise ValueError(
                    f"state_dict[{prefix + '.ids'!r}]: expected the installed table's trainable "
                    f"ids {_show(expected)}, got {_show(ids)}"
                )
        for prefix, (_, rows) in entries.items():
            tables[prefix].load_trained_rows(rows)
        return
    weights = plain_weights(model)
    entries = _checked_state_dict(state_dict, {p: tuple(w.shape) for p, w in weights.items()})
    with torch.no_grad():
        for prefix, (ids, rows) in entries.items():
            weight = weights[prefix]
            weight.index_copy_(0, ids.to(weight.device), rows.to(weight.device, weight.dtype))


def _checked_state_dict(
    state_dict: Mapping[str, Tensor], shapes: Mapping[str, tuple[int, int]]
) -> dict[str, tuple[Tensor, Tensor]]:
    """``{prefix: (ids, rows)}`` from ``state_dict``, checked against tables of ``shapes``."""
    expected_keys = sorted(f"{prefix}.{part}" for prefix in shapes for part in ("ids", "rows"))
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict: expected a mapping with the keys {expected_keys}, got "
            f"{type(state_dict).__name__}"
        )
    if sorted(state_dict) != expected_keys:
        layout = "untied" if OUTPUT in shapes else "tied or absent"
        raise ValueError(
            f"state_dict: expected the keys {expected_keys} (the model's output layer is "
            f"{layout}), got {sorted(state_dict)}"
        )
    return {prefix: _checked_entry(state_dict, prefix, *shape) for prefix, shape in shapes.items()}


def _checked_entry(
    state_dict: Mapping[str, Tensor], prefix: str, num_rows: int, width: int
) -> tuple[Tensor, Tensor]:
    """``(ids, rows)`` of table ``prefix``, checked against a ``(num_rows, width)`` table."""
    ids, rows = state_dict[f"{prefix}.ids"], state_dict[f"{prefix}.rows"]
    ids_key, rows_key = f"state_dict[{prefix + '.ids'!r}]", f"state_dict[{prefix + '.rows'!r}]"
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.is_floating_point() or ids.is_complex():
        raise TypeError(
            f"{ids_key}: expected a 1-D integer tensor of row ids, got {_describe(ids)}"
        )
    if ids.numel() and (ids.min() < 0 or ids.max() >= num_rows):
        bad = ids[(ids < 0) | (ids >= num_rows)][0].item()
        raise IndexError(
            f"{ids_key}: row id {bad} is out of range; expected ids in [0, {num_rows}) (the "
            "model's vocabulary)"
        )
    if ids.unique().numel() != ids.numel():
        raise ValueError(f"{ids_key}: expected distinct ids, got {_show(ids)}")
    expected_shape = (ids.numel(), width)
    if not isinstance(rows, Tensor) or tuple(rows.shape) != expected_shape:
        raise ValueError(
            f"{rows_key}: expected shape {expected_shape} (one row of the model's width {width} "
            f"per id), got {_describe(rows)}"
        )
    if not rows.is_floating_point():
        raise TypeError(f"{rows_key}: expected a floating-point tensor, got {_describe(rows)}")
    return ids.long(), rows


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _show(ids: Tensor) -> str:
    values = ids.tolist()
    shown = ", ".join(map(str, values[:SHOWN_IDS])) + (", ..." if len(values) > SHOWN_IDS else "")
    return f"[{shown}] ({len(values)} ids)"
