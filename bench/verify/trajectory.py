"""Run one training case through an approach (or the ideal) and record what happened.

A :class:`TrainingCase` is everything random about a check (table, mask, batches, loss coefficients
and embedding options); a :class:`Loop` is how the user's training loop is written. ``train`` runs
the plain loop of docs/design.md — ``zero_grad``, forward, backward, ``step`` — and records the
merged table after every step, every output beside the output ``F.embedding`` gives on the table as
it was, and whether any input tensor was written to. Properties are then judged on the record.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

import impls
from bench.common.optimizers import OptimizerSpec
from bench.common.text import error_text
from bench.implementations import Implementation
from bench.verify.ideal import IdealEmbedding
from impls.base import EmbeddingOptions


@dataclass(frozen=True)
class TrainingCase:
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


@dataclass(frozen=True)
class Loop:
    """How the training loop is written; the default is the plain loop of docs/design.md.

    ``checkpoint_after``: save model and optimizer state before that step, load both into fresh
    objects and continue (P6). ``clip_grad_norm``: ``clip_grad_norm_`` over ``parameters()``
    after backward. ``micro_batches``: each step's ids are split along dim 0 and the gradients
    accumulated. ``autocast``: forward and loss under ``torch.autocast`` with that dtype.
    ``grad_scaler``: float16 loss scaling with ``torch.amp.GradScaler``. ``compile``: the module
    is ``torch.compile``d with that backend, with ``fullgraph=True`` when ``fullgraph`` (a graph
    break is then an error, not a silent fallback). ``tied_output``: an output layer tied to the
    table (``logits = out @ effective_weight().T``) adds a positive-weighted sum of logits to the
    loss. ``func``: the gradient comes from ``torch.func.grad`` over
    ``torch.func.functional_call``, the forward is ``torch.func.vmap``'d over the batch dimension,
    and the gradients are written to ``.grad`` before ``optimizer.step()`` (the functorch style
    of training loop).
    """

    checkpoint_after: int | None = None
    clip_grad_norm: float | None = None
    micro_batches: int = 1
    autocast: str | None = None
    grad_scaler: bool = False
    compile: str | None = None
    fullgraph: bool = False
    tied_output: bool = False
    func: bool = False

    def for_ideal(self) -> Loop:
        """The reference keeps the loop's semantics but is never compiled nor checkpointed, and
        takes its gradients by backward (the same gradients ``torch.func.grad`` computes)."""
        return replace(self, compile=None, fullgraph=False, checkpoint_after=None, func=False)

    @property
    def wraps_in_a_tool(self) -> bool:
        """Whether the loop hands the module to a tool that may refuse it (compile, torch.func)."""
        return bool(self.compile) or self.func


@dataclass
class Trajectory:
    tables: list[Tensor | None]
    outputs: list[Tensor]
    expected_outputs: list[Tensor | None]
    mutated_inputs: list[str]
    received_gradient: Tensor | None = None
    eval_output: Tensor | None = None
    """The last batch looked up again in ``eval()`` mode without gradient, after the last step
    (how a trained model is used), and what ``F.embedding`` gives on the last table read."""
    eval_expected: Tensor | None = None
    error: str | None = None
    """The first exception a black box raised (where, its type and message), if any: a violation
    of P0, and the reason the run's other properties are not judged."""


ModuleFactory = Callable[[], torch.nn.Module]


def approach_factory(implementation: Implementation, case: TrainingCase) -> ModuleFactory:
    return lambda: implementation.from_pretrained(case.weight, case.trainable, **case.options)


def ideal_factory(case: TrainingCase) -> ModuleFactory:
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


def _tied_coefficients(tokens: int, rows: int, step: int, like: Tensor) -> Tensor:
    generator = torch.Generator().manual_seed(1000 + step)
    return ((0.5 + torch.rand(tokens, rows, generator=generator)) * 0.1).to(like)


def _loss(module, model, ids: Tensor, coefficients: Tensor, loop: Loop, step: int):
    output = model(ids)
    loss = (output * coefficients.to(output.dtype)).sum()
    if loop.tied_output:
        flat = output.reshape(-1, output.shape[-1])
        logits = flat @ module.effective_weight().t()
        tied = _tied_coefficients(flat.shape[0], logits.shape[1], step, logits)
        loss = loss + (logits * tied).sum()
    return output, loss


def _compiled(module: torch.nn.Module, loop: Loop):
    if not loop.compile:
        return module
    # Each case is a new module with new shapes; without a reset, Dynamo's recompilations of
    # the class's forward pile up across cases until fullgraph=True fails on the limit.
    torch._dynamo.reset()
    return torch.compile(module, backend=loop.compile, fullgraph=loop.fullgraph)


def _func_backward(module: torch.nn.Module, ids: Tensor, coefficients: Tensor) -> Tensor:
    """The loss's gradient by ``torch.func``, added to each trainable parameter's ``.grad``;
    returns the (vmapped) output. Nothing runs through ``Tensor.backward``, so hooks on the
    module's parameters see no gradient, exactly as in a user's functorch loop."""
    trainable = {n: p for n, p in module.named_parameters() if p.requires_grad}
    fixed = {
        **{n: p for n, p in module.named_parameters() if not p.requires_grad},
        **dict(module.named_buffers()),
    }

    def loss(params):
        def lookup(row):
            return torch.func.functional_call(module, (params, fixed), (row,))

        output = torch.func.vmap(lookup)(ids)
        return (output * coefficients.to(output.dtype)).sum(), output

    if not trainable:
        return loss({})[1]
    grads, output = torch.func.grad(loss, has_aux=True)(trainable)
    for name, grad in grads.items():
        parameter = trainable[name]
        parameter.grad = grad if parameter.grad is None else parameter.grad + grad
    return output


def train(
    factory: ModuleFactory,
    case: TrainingCase,
    spec: OptimizerSpec,
    loop: Loop = Loop(),
    errors_are_results: bool = False,
) -> Trajectory:
    """Train a fresh module from ``factory`` on ``case`` and record the trajectory.

    ``errors_are_results`` (implementations judged as black boxes): an exception raised while
    building, training or reading the table is kept in ``error`` instead of propagating. A failed
    read of the table leaves ``None`` in its place and training goes on, so what the steps do to
    the caller's tensors is still seen; a failed step ends the run. A refusal
    (``UnsupportedOption``) always propagates: it is not a result about the module.
    """
    originals = {
        "weight": case.weight.clone(),
        "trainable": case.trainable.clone(),
        **{f"ids[{i}]": ids.clone() for i, ids in enumerate(case.batches)},
    }
    record = Trajectory([], [], [], [])
    try:
        _run(factory, case, spec, loop, record, errors_are_results)
    except impls.UnsupportedOption:
        raise
    except Exception as error:
        if not errors_are_results:
            raise
        record.error = record.error or f"while training: {error_text(error)}"
    current = {
        "weight": case.weight,
        "trainable": case.trainable,
        **{f"ids[{i}]": ids for i, ids in enumerate(case.batches)},
    }
    record.mutated_inputs = [
        _change(k, v, current[k]) for k, v in originals.items() if not torch.equal(v, current[k])
    ]
    for name, value in originals.items():
        # Put the caller's tensors back, so the ideal and the resumed run see the same inputs.
        current[name].copy_(value)
    return record


def _change(name: str, before: Tensor, after: Tensor) -> str:
    """``name`` and how it changed: the whole of a small tensor, else its first changed row."""
    if before.numel() <= 16:
        return f"{name} (was {before.tolist()}, is {after.tolist()})"
    row = int((before != after).reshape(before.shape[0], -1).any(dim=1).nonzero()[0, 0])
    return f"{name} (row {row} was {before[row].tolist()}, is {after[row].tolist()})"


def _run(factory, case, spec, loop: Loop, record: Trajectory, errors_are_results: bool) -> None:
    device_type = case.weight.device.type
    module = factory()
    model = _compiled(module, loop)
    optimizer = spec.build(module.parameters())
    module.attach(optimizer)
    scaler = torch.amp.GradScaler(device_type) if loop.grad_scaler else None
    reference = _reference_options(case.embedding_options)

    def read_table() -> Tensor | None:
        try:
            return module.merged_weight()
        except Exception as error:
            if not errors_are_results:
                raise
            where = "reading the table (merged_weight())"
            record.error = record.error or f"{where}: {error_text(error)}"
            return None

    record.tables.append(read_table())
    for step, (ids, coefficients) in enumerate(zip(case.batches, case.coefficients, strict=True)):
        if loop.checkpoint_after == step:
            module, optimizer = _reload(module, optimizer, factory, spec)
            model = _compiled(module, loop)
        table = record.tables[-1]
        expected = None if table is None else F.embedding(ids, table.clone(), **reference)
        record.expected_outputs.append(expected)
        optimizer.zero_grad()
        outputs = []
        chunks = zip(
            torch.tensor_split(ids, loop.micro_batches),
            torch.tensor_split(coefficients, loop.micro_batches),
            strict=True,
        )
        for micro_ids, micro_coefficients in chunks:
            if micro_ids.numel() == 0:
                continue
            if loop.func:
                outputs.append(_func_backward(module, micro_ids, micro_coefficients).detach())
                continue
            with torch.autocast(
                device_type,
                dtype=getattr(torch, loop.autocast or "bfloat16"),
                enabled=loop.autocast is not None,
            ):
                output, loss = _loss(module, model, micro_ids, micro_coefficients, loop, step)
            outputs.append(output.detach().clone())
            if loss.requires_grad:
                (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(optimizer)
        if loop.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), loop.clip_grad_norm)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        record.outputs.append(torch.cat(outputs).view(*ids.shape, -1))
        record.tables.append(read_table())
    if record.tables[-1] is not None:
        last = case.batches[-1]
        record.eval_expected = F.embedding(last, record.tables[-1].clone(), **reference)
        record.eval_output = _forward_in_eval_mode(module, last)
    if isinstance(module, IdealEmbedding):
        record.received_gradient = module.received_gradient.clone()


def _forward_in_eval_mode(module: torch.nn.Module, ids: Tensor) -> Tensor:
    """``module(ids)`` in ``eval()`` mode under ``no_grad``: a lookup that takes another path
    once training is over must still read the trained table. The module is put back in
    training mode."""
    module.eval()
    try:
        with torch.no_grad():
            return module(ids).detach().clone()
    finally:
        module.train()


def with_options(case: TrainingCase, **options) -> TrainingCase:
    return replace(case, options={**case.options, **options})


def on(
    case: TrainingCase, device: str | torch.device, dtype: torch.dtype | None = None
) -> TrainingCase:
    """The same case on another device and/or in another floating-point dtype."""
    dtype = dtype or case.weight.dtype
    return replace(
        case,
        weight=case.weight.to(device, dtype),
        trainable=case.trainable.to(device),
        batches=tuple(b.to(device) for b in case.batches),
        coefficients=tuple(c.to(device, dtype) for c in case.coefficients),
    )
