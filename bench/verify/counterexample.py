"""Counterexamples as Python a user can paste to see a violation for themselves."""

from __future__ import annotations

import torch

from bench.common.optimizers import OPTIMIZERS
from bench.common.schema import REFERENCE
from bench.implementations import Implementation
from bench.verify.scenarios import Scenario
from bench.verify.trajectory import Loop, TrainingCase


def tensor_source(tensor: torch.Tensor) -> str:
    """Exact: float32/16 values print as the doubles they are, and convert back bit for bit."""
    return f"torch.tensor({tensor.tolist()!r}, dtype={tensor.dtype})"


def _case_source(case: TrainingCase) -> list[str]:
    batches = ", ".join(tensor_source(b) for b in case.batches)
    coefficients = ", ".join(tensor_source(c) for c in case.coefficients)
    return [
        f"weight = {tensor_source(case.weight)}",
        f"trainable = {tensor_source(case.trainable)}",
        f"batches = [{batches}]",
        f"coefficients = [{coefficients}]",
    ]


def reproduction(
    implementation: Implementation, scenario: Scenario, case: TrainingCase, prop: str
) -> str:
    """Source that reproduces ``prop``'s verdict for ``implementation`` on ``case``.

    A reference approach in a plain loop is spelled out with torch and ``impls`` only; a scenario
    with loop features, and any implementation outside ``impls`` (its errors are results, and
    ``judge_case`` reports them), is replayed through ``bench.verify.judge.judge_case``, which
    resolves the reference as ``python -m bench verify`` did: run it from the same directory.
    """
    approach = implementation.name
    case = scenario.prepare(case)
    lines = ["import torch", "import impls", *_case_source(case)]
    plain = scenario.loop == Loop() and prop in ("P1", "P2")
    if plain and implementation.origin == REFERENCE:
        options = "".join(f", {k}={v!r}" for k, v in case.options.items())
        lines += [
            f"emb = impls.APPROACHES[{approach!r}].from_pretrained(weight, trainable{options})",
            f"optimizer = {OPTIMIZERS[scenario.optimizer].source()}",
            "emb.attach(optimizer)",
            "for ids, coefficient in zip(batches, coefficients):",
            "    optimizer.zero_grad()",
            "    loss = (emb(ids) * coefficient).sum()",
            "    if loss.requires_grad:",
            "        loss.backward()",
            "    optimizer.step()",
            "after = emb.merged_weight()",
        ]
        if prop == "P1":
            lines += [
                "changed = (after != weight)[~trainable].any(dim=1)",
                "print('frozen rows as given', weight[~trainable][changed])",
                "print('frozen rows as returned', after[~trainable][changed])",
            ]
        else:
            lines.append("print('trainable rows changed by', (after - weight)[trainable].abs())")
        return "\n".join(lines)
    lines = [
        lines[0],
        "from bench.implementations import resolve",
        "from bench.verify.judge import judge_case",
        "from bench.verify.scenarios import SCENARIOS",
        "from bench.verify.trajectory import TrainingCase",
        *lines[2:],
        "case = TrainingCase(weight, trainable, tuple(batches), tuple(coefficients), "
        f"{dict(case.options)!r})",
        f"result = judge_case(resolve({approach!r}), SCENARIOS[{scenario.name!r}], case, "
        f"({prop!r},))",
        f"verdict = result.verdicts.get({prop!r})",
        "if result.unsupported or verdict is None:",
        "    print(result.unsupported or 'not judged: the case raised (P0)')",
        "else:",
        "    print(verdict.message or 'holds')",
    ]
    return "\n".join(lines)


def distributed_reproduction(approach: str, wrapper: str, optimizer: str) -> str:
    return "\n".join(
        [
            "from bench.distributed.runs import frozen_row_changes, ranks_agree, run_distributed",
            f"outcome = run_distributed({approach!r}, {wrapper!r}, optimizer={optimizer!r})",
            "print(outcome.error or (ranks_agree(outcome), frozen_row_changes(outcome)[:3]))",
        ]
    )
