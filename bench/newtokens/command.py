"""New tokens in a language model: train only their rows with every approach and PEFT, end to end.

``python -m bench newtokens [--out reports] [--profile quick|full] [--approaches NAME ...]
[--models NAME ...] [--device cpu cuda] [--memory-budget GiB]``

Nothing is downloaded: a tokenizer is trained here on gensim's Lee corpus, GPT-2 (tied output
layer) and Llama (untied) are built from their config classes and pre-trained briefly on the
same text, whole words are added as tokens (``resize_token_embeddings``) and each approach trains
only their rows on text that uses them — every approach of :data:`impls.APPROACHES` installed
with :func:`impls.train_only_rows`, and PEFT's trainable tokens through ``get_peft_model`` as a
peer — one fresh process per case (see :mod:`bench.newtokens.case` for what is measured).
``quick`` takes a few minutes on 2 cores; ``full`` pre-trains longer, measures more steps and adds
the two architectures with an LLM-sized table (128,000 × 2,048), on CPU and on CUDA when present;
a case whose estimated memory exceeds the budget (``--memory-budget``, default 20 GiB, or what is
available if less) is recorded as skipped with the estimate.

``newtokens.json`` (and ``.csv``) gets one record per (approach, model, device), written as each
case finishes; a re-run with the same ``--out`` and profile resumes. A failing case is recorded
with its reason and the run goes on.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

import impls
from bench.common import cli
from bench.common.environment import environment
from bench.common.load import ATTEMPTS, busy_cores, is_noisy, spread
from bench.common.processes import IsolatedFailure, run_isolated
from bench.common.results import ResultsFile
from bench.common.schema import FAILED, FINISHED, NEWTOKENS, OK, PEFT_PEER, SKIPPED, record
from bench.common.text import GiB, error_text, format_bytes
from bench.perf.memory import (
    available_bytes,
    fit_persistent_bytes,
    persistent_bytes,
    transient_bytes,
)

from .case import NewTokensCase, run_case
from .workload import PROFILES, NewTokensProfile, PreparedModel, prepare

DEFAULT_MEMORY_BUDGET_GIB = 20.0
LOGITS_COPIES = 5
"""Vocabulary-wide tensors per token in a step: the logits, the loss's shifted copy and
log-softmax, and their gradients."""


def approach_names() -> list[str]:
    return [*impls.APPROACHES, PEFT_PEER]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("reports"), help="directory for newtokens.json"
    )
    parser.add_argument("--profile", choices=list(PROFILES), default="quick")
    parser.add_argument(
        "--approaches",
        nargs="+",
        choices=approach_names(),
        default=approach_names(),
        metavar="NAME",
        help=f"approaches to train (default: all of {', '.join(approach_names())})",
    )
    parser.add_argument(
        "--models", nargs="+", metavar="NAME", help="only these models of the profile"
    )
    cli.add_device_argument(parser, "train")
    cli.add_memory_budget_argument(
        parser, DEFAULT_MEMORY_BUDGET_GIB, f"{DEFAULT_MEMORY_BUDGET_GIB:g}"
    )
    parser.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    profile = cli.restricted(PROFILES[args.profile], args.models)
    if profile is None:
        return 2
    with cli.sigterm_unwinds():
        results = run_newtokens(
            profile,
            args.approaches,
            cli.chosen_devices(args.device),
            args.out,
            args.seed,
            cli.budget_bytes(args.memory_budget),
        )
    print(format_table(results.records))
    print(f"wrote {results.path} and {results.csv_path}")
    return 0


def run_newtokens(
    profile: NewTokensProfile,
    approaches: Sequence[str],
    devices: Sequence[str],
    out: Path,
    seed: int = 0,
    memory_budget: int = int(DEFAULT_MEMORY_BUDGET_GIB * GiB),
    isolate: bool = True,
    attempts: int = ATTEMPTS,
) -> ResultsFile:
    """Every (approach, model, device) case of ``profile`` not already finished in ``out``.

    ``isolate=False`` runs the cases in this process (tests: no fork server to start); their
    peak memory is then not their own, and ``isolated`` says so. A case measured on a busy
    machine is measured again, up to ``attempts`` times (:mod:`bench.common.load`).
    """
    results = ResultsFile(Path(out) / NEWTOKENS.filename, key=NEWTOKENS.key)
    finished = results.done(
        ("approach", "model", "device"),
        where=lambda r: (
            r.get("status") in FINISHED
            and r.get("profile") == profile.name
            and r.get("seed") == seed
        ),
    )
    todo = [
        (spec.name, device, approach)
        for spec in profile.models
        for device in devices
        for approach in approaches
        if (approach, spec.name, device) not in finished
    ]
    if not todo:  # nothing to measure: no tokenizer to train, no model to pre-train
        return results
    workload = prepare(profile.only(sorted({model for model, _, _ in todo})), seed)
    with workload.directory, results:  # leaving writes the CSV
        for model, device, approach in todo:
            prepared = workload.models[model]
            row = base_record(approach, device, prepared, profile, workload.new_words)
            case = NewTokensCase(approach, device, prepared, profile.learning_rate)
            row.update(measure(case, profile, memory_budget, isolate, attempts))
            row["isolated"] = isolate
            results.append(row)
            print(f"newtokens: {_one_line(row)}", flush=True)
    return results


def measure(
    case: NewTokensCase,
    profile: NewTokensProfile,
    memory_budget: int,
    isolate: bool,
    attempts: int = ATTEMPTS,
) -> dict:
    """The measured fields of ``case``, or a skipped/failed status with its reason.

    A case that comes out noisy (:func:`bench.common.load.is_noisy`: the machine was busy, or
    the steps' IQR is wide) runs again, at most ``attempts`` times; the quietest attempt is kept.
    """
    try:
        estimate = estimate_bytes(case.model, case.approach)
    except Exception as error:  # an approach that refuses the tiny build refuses the case too
        return {"status": SKIPPED, "reason": f"while estimating memory: {error_text(error)}"}
    limit = min(memory_budget, available_bytes(case.device))
    if estimate > limit:
        source = "the memory budget" if limit == memory_budget else f"available on {case.device}"
        reason = f"estimated {format_bytes(estimate)} > {format_bytes(limit)} ({source})"
        return {"status": SKIPPED, "reason": reason, "estimated_bytes": estimate}
    tries = []
    for _ in range(attempts):
        load = busy_cores()
        fields = {**_run(case, profile, isolate), "load_before": load, "estimated_bytes": estimate}
        if fields["status"] != OK:
            return {**fields, "attempts": len(tries) + 1}
        step_spread = spread(fields["step_median_s"], fields["step_iqr_s"])
        fields["noisy"] = is_noisy(load, [step_spread])
        tries.append((step_spread or 0.0, fields))
        if not fields["noisy"]:
            break
    quietest = min(tries, key=lambda attempt: (attempt[1]["noisy"], attempt[0]))[1]
    return {**quietest, "attempts": len(tries)}


def _run(case: NewTokensCase, profile: NewTokensProfile, isolate: bool) -> dict:
    try:
        if isolate:
            return run_isolated(run_case, case, timeout_s=profile.case_timeout_s)
        return run_case(case)
    except IsolatedFailure as failure:
        return {"status": FAILED, "reason": str(failure)}
    except Exception as error:
        return {"status": FAILED, "reason": error_text(error)}


def base_record(
    approach: str,
    device: str,
    prepared: PreparedModel,
    profile: NewTokensProfile,
    new_words: Sequence[str],
) -> dict:
    """What a record says about its case before anything is measured; every column present."""
    spec = prepared.spec
    return record(
        NEWTOKENS,
        approach=approach,
        model=spec.name,
        device=device,
        tied=spec.tied,
        vocab_size=prepared.vocab_size,
        new_tokens=len(prepared.new_ids),
        embedding_dim=spec.hidden,
        profile=profile.name,
        seed=prepared.seed,
        optimizer="AdamW",
        learning_rate=profile.learning_rate,
        weight_decay=torch.optim.AdamW([torch.zeros(1)]).defaults["weight_decay"],
        batch_size=spec.batch_size,
        sequence_length=prepared.sequence_length,
        warmup_steps=spec.warmup_steps,
        measured_steps=spec.measured_steps,
        pretrain_steps=spec.pretrain_steps if prepared.state_path else 0,
        pretrain_loss=prepared.pretrain_loss,
        new_words=list(new_words),
        env=environment(),
    )


def estimate_bytes(prepared: PreparedModel, approach: str) -> int:
    """What the case will need, without allocating it: the model's other parameters, counted on
    the meta device; per table (one if tied, two if not) the original, the approach's persistent
    bytes fitted from tiny builds (:func:`bench.perf.memory.fit_persistent_bytes`) and a step's
    table-sized temporaries; and ``LOGITS_COPIES`` vocabulary-wide tensors per token. PEFT's layer
    keeps what ``index_copy`` keeps (a frozen table and an (n, D) delta) and is estimated as it."""
    spec = prepared.spec
    rows, width = prepared.vocab_size, spec.hidden
    tables = 1 if spec.tied else 2
    with torch.device("meta"):
        model = spec.build(rows, prepared.sequence_length)
    table_bytes = rows * width * 4
    body = sum(p.numel() * p.element_size() for p in model.parameters()) - tables * table_bytes
    cls = impls.APPROACHES.get(approach, impls.APPROACHES["index_copy"])
    approach_bytes = fit_persistent_bytes(
        lambda v, n: _tiny_persistent_bytes(cls, v, n, width), rows, len(prepared.new_ids)
    )
    tokens = spec.batch_size * prepared.sequence_length
    step = transient_bytes(rows, width, tokens, 4)
    return body + tables * (table_bytes + approach_bytes + step) + LOGITS_COPIES * tokens * rows * 4


def _tiny_persistent_bytes(cls, rows: int, trainable: int, width: int) -> int:
    """Persistent bytes of ``cls`` as a table read by a lookup and an output layer, after a step."""
    table = cls.from_pretrained(torch.randn(rows, width), torch.arange(rows - trainable, rows))
    parameters = [p for p in table.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters or [torch.zeros(1, requires_grad=True)])
    table.attach(optimizer)
    ids = torch.arange(rows)
    loss = table(ids).sum() + table.project(torch.randn(4, width)).sum()
    if loss.requires_grad:
        loss.backward()
    optimizer.step()
    return persistent_bytes(table, optimizer)


def _one_line(record: dict) -> str:
    head = f"{record['approach']} on {record['model']} ({record['device']}): {record['status']}"
    if record["status"] != OK:
        return f"{head}: {record['reason']}"
    noisy = ", noisy" if record["noisy"] else ""
    return (
        f"{head}, frozen identical {record['frozen_rows_identical']}, "
        f"step {record['step_median_s'] * 1e3:.1f} ms{noisy}"
    )


def format_table(records: list[dict]) -> str:
    """The records as a text table (numbers become text only here)."""
    header = (
        f"{'model':<16} {'approach':<22} {'frozen same':>11} {'new moved':>9} {'loss':>13} "
        f"{'step ms':>8} {'peak':>10} {'checkpoint':>10} {'full':>10} {'merged same':>11}"
    )
    lines = [header]
    for r in sorted(records, key=lambda r: (r["model"], r["device"], r["approach"])):
        name = f"{r['model']}/{r['device']}"
        if r["status"] != OK:
            lines.append(f"{name:<16} {r['approach']:<22} {r['status']}: {r['reason']}")
            continue
        lines.append(
            f"{name:<16} {r['approach']:<22} {r['frozen_rows_identical']!s:>11} "
            f"{r['new_rows_changed']:>4}/{r['new_rows']:<4} "
            f"{r['loss_first']:>6.2f}>{r['loss_last']:<6.2f} {r['step_median_s'] * 1e3:>8.1f} "
            f"{format_bytes(r['peak_bytes']):>10} {format_bytes(r['checkpoint_bytes']):>10} "
            f"{format_bytes(r['full_checkpoint_bytes']):>10} {r['merged_logits_equal']!s:>11}"
        )
    return "\n".join(lines)
