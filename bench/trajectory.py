"""Run one training case through an approach (or the ideal) and record what happened.

A :class:`Case` is everything random about a check (table, mask, batches, loss coefficients and
embedding options); a :class:`Loop` is how the user's training loop is written. ``train`` runs
the plain loop of DESIGN.md — ``zero_grad``, forward, backward, ``step`` — and records the merged
table after every step, every output beside the output ``F.embedding`` gives on the table as it
was, and whether any input tensor was written to. Properties are then judged on the record.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

import impls
from impls.base import EmbeddingOptions

from .ideal import IdealEmbedding
from .optimizers import OptimizerSpec


@dataclass(frozen=True)
class Case:
    """A table, which rows train, and the batches one run sees.

    The loss of a step is ``(emb(ids) * coefficients).sum()``; coefficients are positive, so every
    looked-up, non-padding row gets a non-zero gradient and "received a gradient" is exact.
    """

    weight: Tensor
    trainable: Tensor
    batches: tuple[Tensor, ...]
    coefficients: tuple[Tensor, ...]
    options: dict = field(default_factory=dict)

    @property
    def embedding_options(self) -> EmbeddingOptions:
        return EmbeddingOptions(**self.options)

    def describe(self) -> dict:
        return {
            "num_rows": self.weight.shape[0],
            "dim": self.weight.shape[1],
            "dtype": str(self.weight.dtype).removeprefix("torch."),
            "trainable_rows": self.trainable.nonzero().squeeze(1).tolist(),
            "batch_shapes": [list(b.shape) for b in self.batches],
            "steps": len(self.batches),
            "options": dict(self.options),
        }


@dataclass(frozen=True)
class Loop:
    """How the training loop is written; the default is the plain loop of DESIGN.md."""

    checkpoint_after: int | None = None


@dataclass
class Trajectory:
    tables: list[Tensor]
    outputs: list[Tensor]
    expected_outputs: list[Tensor]
    mutated_inputs: list[str]
    received_gradient: Tensor | None = None


ModuleFactory = Callable[[], torch.nn.Module]


def approach_factory(approach: str, case: Case) -> ModuleFactory:
    cls = impls.APPROACHES[approach]
    return lambda: cls.from_pretrained(case.weight, case.trainable, **case.options)


def ideal_factory(case: Case) -> ModuleFactory:
    return lambda: IdealEmbedding(case.weight, case.trainable, case.embedding_options)


def _reference_options(options: EmbeddingOptions) -> dict:
    return {
        "padding_idx": options.padding_idx,
        "max_norm": options.max_norm,
        "norm_type": options.norm_type,
    }


def _reload(module: torch.nn.Module, optimizer, factory: ModuleFactory, spec: OptimizerSpec):
    """Save model and optimizer state, load both into fresh objects (property P6)."""
    buffer = io.BytesIO()
    torch.save({"model": module.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = factory()
    fresh.load_state_dict(state["model"])
    fresh_optimizer = spec.build(fresh.parameters())
    fresh_optimizer.load_state_dict(state["optimizer"])
    fresh.attach(fresh_optimizer)
    return fresh, fresh_optimizer


def train(
    factory: ModuleFactory, case: Case, spec: OptimizerSpec, loop: Loop = Loop()
) -> Trajectory:
    """Train a fresh module from ``factory`` on ``case`` and record the trajectory."""
    originals = {
        "weight": case.weight.clone(),
        "trainable": case.trainable.clone(),
        **{f"ids[{i}]": ids.clone() for i, ids in enumerate(case.batches)},
    }
    module = factory()
    optimizer = spec.build(module.parameters())
    module.attach(optimizer)
    reference = _reference_options(case.embedding_options)
    record = Trajectory([module.merged_weight()], [], [], [])
    for step, (ids, coefficients) in enumerate(zip(case.batches, case.coefficients, strict=True)):
        if loop.checkpoint_after == step:
            module, optimizer = _reload(module, optimizer, factory, spec)
        record.expected_outputs.append(F.embedding(ids, record.tables[-1].clone(), **reference))
        optimizer.zero_grad()
        output = module(ids)
        loss = (output * coefficients).sum()
        if loss.requires_grad:
            loss.backward()
        optimizer.step()
        record.outputs.append(output.detach().clone())
        record.tables.append(module.merged_weight())
    current = {
        "weight": case.weight,
        "trainable": case.trainable,
        **{f"ids[{i}]": ids for i, ids in enumerate(case.batches)},
    }
    record.mutated_inputs = [k for k, v in originals.items() if not torch.equal(v, current[k])]
    if isinstance(module, IdealEmbedding):
        record.received_gradient = module.received_gradient.clone()
    return record


def with_options(case: Case, **options) -> Case:
    return replace(case, options={**case.options, **options})
