"""P1–P6 for every approach under every optimizer of the foundation issue, asserted both ways.

A cell the truth table (``bench.expectations``) marks ``holds`` must hold on every hypothesis
example; a cell marked ``violated`` must be shown violated — first on the worked example of the
zero-gradient answer, otherwise by an example hypothesis finds; an ``unsupported`` cell must be
refused with an error naming the approach and the option.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, find, given, settings

import impls
from bench.check import CORE_PROPERTIES, check_case
from bench.expectations import HOLDS, UNSUPPORTED, VIOLATED, expectation
from bench.optimizers import OPTIMIZERS
from bench.strategies import cases, worked_example
from bench.trajectory import Case, with_options

OPTIMIZER_SCENARIOS = (
    "sgd",
    "sgd_momentum_nesterov",
    "sgd_weight_decay",
    "adam",
    "adam_weight_decay",
    "adamw",
    "adagrad",
    "rmsprop",
    "adafactor",
    "sparse_adam",
)

CELLS = [(a, o) for a in impls.APPROACHES for o in OPTIMIZER_SCENARIOS]


def prepared(case: Case, optimizer: str) -> Case:
    """SparseAdam needs sparse gradients, so its scenario turns ``sparse=True`` on."""
    return with_options(case, sparse=True) if OPTIMIZERS[optimizer].needs_sparse_grad else case


def usable(case: Case, optimizer: str) -> bool:
    # torch.optim.Adafactor divides by the parameter's row count: an empty (0, D) parameter (no
    # trainable rows) raises ZeroDivisionError — see test_adafactor_rejects_an_empty_parameter.
    return not (optimizer == "adafactor" and not case.trainable.any())


def expected(approach: str, optimizer: str, outcome: str) -> list[str]:
    return [p for p in CORE_PROPERTIES if expectation(approach, optimizer, p).outcome == outcome]


@pytest.mark.parametrize(("approach", "optimizer"), CELLS)
@given(case=cases())
def test_cells_marked_holds_hold_on_every_example(approach, optimizer, case):
    holding = expected(approach, optimizer, HOLDS)
    if not holding:
        return
    assume(usable(case, optimizer))
    result = check_case(approach, OPTIMIZERS[optimizer], prepared(case, optimizer), optimizer)
    assert result.unsupported is None, f"{approach} / {optimizer}: {result.unsupported}"
    failures = [result.verdicts[p].message for p in holding if not result.verdicts[p]]
    assert not failures, "\n".join(failures)


VIOLATED_CELLS = [
    (a, o, p) for a, o in CELLS for p in CORE_PROPERTIES if expectation(a, o, p).outcome == VIOLATED
]


@pytest.mark.parametrize(("approach", "optimizer", "prop"), VIOLATED_CELLS)
def test_cells_marked_violated_are_shown_violated(approach, optimizer, prop):
    spec = OPTIMIZERS[optimizer]

    def violates(case: Case) -> bool:
        if not usable(case, optimizer):
            return False
        result = check_case(approach, spec, prepared(case, optimizer), optimizer, (prop,))
        return not result.verdicts[prop].holds

    witness = worked_example()
    if not violates(witness):
        witness = find(cases(), violates, settings=settings(max_examples=500, database=None))
    verdict = check_case(approach, spec, prepared(witness, optimizer), optimizer, (prop,))
    assert not verdict.verdicts[prop].holds
    assert approach in verdict.verdicts[prop].message
    assert optimizer in verdict.verdicts[prop].message


UNSUPPORTED_CELLS = [
    (a, o) for a, o in CELLS if expected(a, o, UNSUPPORTED) == list(CORE_PROPERTIES)
]


@pytest.mark.parametrize(("approach", "optimizer"), UNSUPPORTED_CELLS)
def test_cells_marked_unsupported_are_refused_by_name(approach, optimizer):
    result = check_case(
        approach, OPTIMIZERS[optimizer], prepared(worked_example(), optimizer), optimizer
    )
    assert result.unsupported is not None, f"{approach} / {optimizer} ran; expected a refusal"
    assert approach in result.unsupported
    assert "sparse" in result.unsupported


def test_every_cell_has_one_outcome_and_violations_are_explained():
    for approach, optimizer in CELLS:
        for prop in CORE_PROPERTIES:
            cell = expectation(approach, optimizer, prop)
            assert cell.outcome in (HOLDS, VIOLATED, UNSUPPORTED)
            assert cell.outcome == HOLDS or cell.why, (approach, optimizer, prop)


def test_adafactor_rejects_an_empty_parameter():
    """Why Adafactor cases need a trainable row: torch's Adafactor fails on a (0, D) parameter,
    which is what split-style approaches hold when every row is frozen."""
    weight = torch.randn(4, 3)
    emb = impls.APPROACHES["split"].from_pretrained(weight, torch.zeros(4, dtype=torch.bool))
    optimizer = torch.optim.Adafactor(emb.parameters())
    emb.trainable_weight.grad = torch.zeros(0, 3)
    with pytest.raises(ZeroDivisionError):
        optimizer.step()
