"""Argument checks shared by every approach.

Each check raises the exception type a PyTorch user expects (``TypeError`` for a wrong dtype or
type, ``IndexError`` for an index outside its range, ``ValueError`` for a wrong shape, length,
device or value) with a message that names the argument, the value received and what was expected.
None of them modifies its input.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_weight(weight: object) -> Tensor:
    """The pretrained table must be a 2-D floating-point tensor."""
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight: expected a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 2:
        raise ValueError(
            f"weight: expected a 2-D (num_embeddings, embedding_dim) tensor, "
            f"got shape {tuple(weight.shape)}"
        )
    if not weight.is_floating_point():
        raise TypeError(f"weight: expected a floating-point dtype, got {weight.dtype}")
    return weight


def as_trainable_mask(trainable: object, num_rows: int, device: torch.device) -> Tensor:
    """Normalise ``trainable`` (bool mask of length V, or 1-D integer row ids) to a new mask."""
    if not isinstance(trainable, Tensor):
        raise TypeError(
            f"trainable: expected a bool mask tensor of shape ({num_rows},) or a 1-D integer "
            f"tensor of row ids, got {type(trainable).__name__}"
        )
    if trainable.device != device:
        raise ValueError(
            f"trainable: expected a tensor on the weight's device {device}, got {trainable.device}"
        )
    if trainable.dim() != 1:
        raise ValueError(f"trainable: expected a 1-D tensor, got shape {tuple(trainable.shape)}")
    if trainable.dtype == torch.bool:
        if trainable.numel() != num_rows:
            raise ValueError(
                f"trainable: a bool mask must have one entry per row ({num_rows}), "
                f"got length {trainable.numel()}"
            )
        return trainable.clone()
    if trainable.is_floating_point() or trainable.is_complex():
        raise TypeError(
            f"trainable: expected dtype torch.bool (mask) or an integer dtype (row ids), "
            f"got {trainable.dtype}"
        )
    ids = trainable.long()
    if ids.numel() and (ids.min() < 0 or ids.max() >= num_rows):
        bad = ids[(ids < 0) | (ids >= num_rows)][0].item()
        raise IndexError(
            f"trainable: row id {bad} is out of range; expected ids in [0, {num_rows})"
        )
    if ids.unique().numel() != ids.numel():
        values, counts = ids.unique(return_counts=True)
        raise ValueError(
            f"trainable: row ids must be distinct, id {values[counts > 1][0].item()} is repeated"
        )
    mask = torch.zeros(num_rows, dtype=torch.bool, device=device)
    mask[ids] = True
    return mask


def check_padding_idx(padding_idx: object, num_rows: int) -> int | None:
    """Accept ``None`` or an int in ``[-V, V)``, normalised to ``[0, V)`` as nn.Embedding does."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, int):
        raise TypeError(f"padding_idx: expected an int or None, got {padding_idx!r}")
    if not -num_rows <= padding_idx < num_rows:
        raise IndexError(
            f"padding_idx: {padding_idx} is out of range; expected an int in "
            f"[{-num_rows}, {num_rows})"
        )
    return padding_idx % num_rows


def check_max_norm(max_norm: object) -> float | None:
    if max_norm is None:
        return None
    if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or max_norm <= 0:
        raise ValueError(f"max_norm: expected a positive number or None, got {max_norm!r}")
    return float(max_norm)


def check_ids(ids: object, num_rows: int, device: torch.device) -> Tensor:
    """Token ids must be an integer tensor on the table's device with values in ``[0, V)``.

    Type, dtype and device are metadata and always checked. The range needs the values, so it is
    checked only where reading them is free (see :func:`values_are_free_to_read`); elsewhere the
    lookup's own gather rejects a bad id, as in ``nn.Embedding``.
    """
    if not isinstance(ids, Tensor):
        raise TypeError(f"ids: expected an integer torch.Tensor, got {type(ids).__name__}")
    if ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"ids: expected dtype torch.int64 or torch.int32, got {ids.dtype}")
    if ids.device != device:
        raise ValueError(f"ids: expected a tensor on the table's device {device}, got {ids.device}")
    if ids.numel() and values_are_free_to_read(ids):
        low, high = torch.aminmax(ids)
        if low < 0 or high >= num_rows:
            bad = int(low if low < 0 else high)
            raise IndexError(
                f"ids: token id {bad} is out of range; expected ids in [0, {num_rows})"
            )
    return ids


def values_are_free_to_read(tensor: Tensor) -> bool:
    """Whether Python may look at ``tensor``'s values without cost or breaking a transform.

    Only a plain CPU tensor in eager mode qualifies. On CUDA a read waits for the device (a host
    synchronisation every step, and no CUDA-graph capture); under ``torch.compile`` it is a
    data-dependent guard that breaks the graph; a fake tensor (tracing) has no values, and a
    functorch-wrapped one (``vmap``'s batched tensors) refuses ``.item()``.
    """
    return (
        tensor.device.type == "cpu"
        and not torch.compiler.is_compiling()
        and type(tensor) is Tensor
        and not torch._C._functorch.is_functorch_wrapped_tensor(tensor)
    )
