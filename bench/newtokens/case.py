"""One case: an approach trains the new rows of one model; everything the record says about it.

:func:`run_case` runs in a fresh process (:func:`bench.common.processes.run_isolated`), so the
peak memory is the case's own. Steps:

1. Peak memory: the meter's baseline is taken once torch's thread pools exist and before the
   model is built; the high-water mark is reset once the model is built and the approach
   installed, and read after the last step. On CPU that is the resident-set high-water mark
   (``VmHWM``) above the baseline — it covers the installed model, gradients, optimizer state and
   a step's temporaries, not the one-off copy made while installing; on CUDA the allocator's
   ``max_memory_allocated``. ``peak_method`` says which.
2. Training: AdamW at torch's defaults (``weight_decay=0.01``, so a zero gradient is not "no
   update") with the profile's learning rate, ``warmup_steps`` then ``measured_steps`` steps of
   ``zero_grad``, forward with the language-model loss, backward, ``step``. Each measured step is
   timed with ``perf_counter`` (CUDA synchronised at each cut), split into forward (with
   ``zero_grad``), backward and optimizer; the record holds the medians (and the step's IQR),
   summarised by :func:`bench.common.stats.time_summary` like every time column.
3. Checks, after the peak was read: logits of the trained model on held-out text; the small
   checkpoint written (``checkpoint_bytes``: the file as written); the model merged into plain
   layers, whose logits must equal the trained model's bit for bit (``merged_logits_equal``);
   the merged tables compared with the starting model's (every frozen row of the input table and
   of the output layer bit-identical, :func:`bench.common.frozen_rows.changed_frozen_rows`; new
   rows changed); then the small checkpoint loaded into a
   fresh starting model, whose logits must also equal them (``checkpoint_logits_equal``: false
   where frozen rows drifted, which a checkpoint of the trained rows cannot carry).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from bench.common.frozen_rows import changed_frozen_rows
from bench.common.peak_memory import PeakMeter
from bench.common.schema import OK, SKIPPED
from bench.common.stats import time_summary
from impls.base import UnsupportedOption

from .installs import install
from .workload import PreparedModel


@dataclass(frozen=True)
class NewTokensCase:
    approach: str
    device: str
    model: PreparedModel
    learning_rate: float


class CaseSkipped(Exception):
    """The approach cannot train this case; the message is the record's reason."""


def run_case(case: NewTokensCase) -> dict:
    """The measured fields of ``case`` (see the module docstring) with ``status`` ``ok``, or
    ``status`` ``skipped`` and the ``reason``; call it in a fresh process."""
    try:
        return {"status": OK, "reason": None, **_measure(case)}
    except CaseSkipped as skip:
        return {"status": SKIPPED, "reason": str(skip)}


def _measure(case: NewTokensCase) -> dict:
    prepared, device = case.model, case.device
    _warm_up(device)
    meter = PeakMeter(device)
    meter.start()
    try:
        installed = install(case.approach, prepared.initial_model(device), prepared.new_ids)
    except UnsupportedOption as refusal:
        raise CaseSkipped(str(refusal)) from None
    parameters = installed.parameters()
    if not parameters:
        raise CaseSkipped(
            f"approach {case.approach!r} leaves no parameter to train (every row frozen, and the "
            "rest of the model is frozen too), so there is no training step to measure"
        )
    optimizer = torch.optim.AdamW(parameters, lr=case.learning_rate)
    installed.attach(optimizer)
    meter.reset()
    training = _train(installed.model, optimizer, prepared, device)
    peak_bytes = meter.peak_bytes()

    held_out = prepared.held_out.to(device)
    trained_logits = _logits(installed.model, held_out)
    with tempfile.TemporaryDirectory(prefix="rowfreeze-case-") as directory:
        checkpoint = installed.save(Path(directory))
        merged = installed.merge()
        merged_logits = _logits(merged, held_out)
        start = prepared.initial_model(device)
        rows = _row_changes(merged, start, prepared.new_ids)
        served = installed.serve(start, Path(directory))
        checkpoint_logits = _logits(served, held_out)
        checkpoint_bytes = checkpoint.stat().st_size
    return {
        **training,
        **rows,
        "peak_bytes": peak_bytes,
        "peak_method": meter.method,
        "checkpoint_bytes": checkpoint_bytes,
        "full_checkpoint_bytes": _state_dict_bytes(merged),
        "merged_logits_equal": torch.equal(merged_logits, trained_logits),
        "checkpoint_logits_equal": torch.equal(checkpoint_logits, trained_logits),
        "threads": torch.get_num_threads(),
    }


def _warm_up(device: str) -> None:
    """Start torch's thread pools (and CUDA context) so they belong to the baseline."""
    x = torch.randn(64, 64, device=device, requires_grad=True)
    (x @ x).sum().backward()
    _synchronize(device)


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _train(model: nn.Module, optimizer, prepared: PreparedModel, device: str) -> dict:
    spec = prepared.spec
    model.train()
    torch.manual_seed(prepared.seed)  # the same dropout masks for every approach
    losses, phases = [], []
    for step in range(spec.warmup_steps + spec.measured_steps):
        ids = prepared.batch(step).to(device)
        _synchronize(device)
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        cuts = [_now(device)]
        loss.backward()
        cuts.append(_now(device))
        optimizer.step()
        cuts.append(_now(device))
        losses.append(loss.detach().item())
        if step >= spec.warmup_steps:
            phases.append([cuts[0] - start, cuts[1] - cuts[0], cuts[2] - cuts[1], cuts[2] - start])
    forward, backward, optimizer_s, step = (time_summary(p) for p in zip(*phases, strict=True))
    return {
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "step_median_s": step["median_s"],
        "step_iqr_s": step["iqr_s"],
        "forward_median_s": forward["median_s"],
        "backward_median_s": backward["median_s"],
        "optimizer_median_s": optimizer_s["median_s"],
    }


def _now(device: str) -> float:
    _synchronize(device)
    return time.perf_counter()


@torch.no_grad()
def _logits(model: nn.Module, ids: Tensor) -> Tensor:
    model.eval()
    return model(input_ids=ids).logits


def _tables(model: nn.Module) -> list[Tensor]:
    """The plain model's input table and, if untied, its output layer's weight."""
    embedding, output = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    return [embedding] if output is embedding else [embedding, output]


@torch.no_grad()
def _row_changes(merged: nn.Module, start: nn.Module, new_ids: tuple[int, ...]) -> dict:
    """Frozen rows identical (input table and output layer), new rows changed, largest drift."""
    after, before = _tables(merged), _tables(start)
    if len(after) != len(before):
        raise RuntimeError(
            f"merged model: expected {len(before)} tables (tied: {len(before) == 1}), got "
            f"{len(after)}: merging changed whether the output layer is tied"
        )
    new = torch.zeros(before[0].shape[0], dtype=torch.bool, device=before[0].device)
    new[list(new_ids)] = True
    identical, changed, drift = True, 0, 0.0
    for a, b in zip(after, before, strict=True):
        identical &= changed_frozen_rows(b, a, new).numel() == 0
        changed += int((a[new] != b[new]).any(dim=1).sum())
        drift = max(drift, float((a[~new] - b[~new]).abs().max()))
    return {
        "frozen_rows_identical": identical,
        "new_rows_changed": changed,
        "new_rows": len(new_ids) * len(after),
        "max_frozen_change": drift,
    }


def _state_dict_bytes(model: nn.Module) -> int:
    """Bytes of the model's tensors, a tied weight once: what ``save_pretrained`` writes, less
    its small header."""
    storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
        for t in model.state_dict().values()
    }
    return sum(storages.values())
