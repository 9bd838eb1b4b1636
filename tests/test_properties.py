"""P1–P6 for every approach under every optimizer of the foundation issue, asserted both ways.

A cell the truth table (``bench.verify.truth_table``) marks ``holds`` must hold on every hypothesis
example; a cell marked ``violated`` must be shown violated — first on the worked example of the
zero-gradient answer, otherwise by an example hypothesis finds; an ``unsupported`` cell must be
refused with an error naming the approach and the option.

The approaches are the reference ones and the peers (``bench.peers``), and any implementation named
in ``ROWFREEZE_APPROACHES=MODULE:NAME[,MODULE:NAME...]``: one the truth table has no rule for must
hold every property, and a violation fails with a counterexample to paste. A drawn case an
implementation refuses (a mask it cannot express) is skipped, as ``bench verify`` skips it.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import assume, find, given, settings
from hypothesis import strategies as st

import impls
from bench.common.implementations import default_names, resolve
from bench.common.schema import CORE_PROPERTIES
from bench.verify.counterexample import reproduction
from bench.verify.judge import judge_case
from bench.verify.sampling import suite_profile
from bench.verify.scenarios import SCENARIOS
from bench.verify.strategies import probe_case, worked_example
from bench.verify.trajectory import TrainingCase
from bench.verify.truth_table import HOLDS, UNSUPPORTED, VIOLATED, expectation

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

APPROACHES_VARIABLE = "ROWFREEZE_APPROACHES"


def approaches_under_test(environ=os.environ) -> list[str]:
    """The default approaches, then those named in ``ROWFREEZE_APPROACHES`` (comma-separated
    references, each checked now so that a typo fails collection naming it)."""
    named = [r.strip() for r in environ.get(APPROACHES_VARIABLE, "").split(",") if r.strip()]
    for reference in named:
        resolve(reference)
    return list(dict.fromkeys([*default_names(), *named]))


CELLS = [(a, o) for a in approaches_under_test() for o in OPTIMIZER_SCENARIOS]


def expected(approach: str, scenario: str, outcome: str) -> list[str]:
    return [p for p in CORE_PROPERTIES if expectation(approach, scenario, p).outcome == outcome]


HOLDING_CELLS = [(a, o) for a, o in CELLS if expected(a, o, HOLDS)]


@pytest.mark.parametrize(("approach", "optimizer"), HOLDING_CELLS)
@given(data=st.data())
def test_cells_marked_holds_hold_on_every_example(approach, optimizer, data):
    holding = expected(approach, optimizer, HOLDS)
    scenario = SCENARIOS[optimizer]
    case = data.draw(scenario.cases())
    assume(scenario.usable(case))
    result = judge_case(approach, scenario, case, tuple(holding))
    if resolve(approach).black_box:
        assume(result.unsupported is None)  # a case it refuses, e.g. a mask it cannot express
    assert result.unsupported is None, f"{approach} / {optimizer}: {result.unsupported}"
    failures = [
        f"{result.verdicts[p].message}\ncounterexample:\n"
        + reproduction(approach, scenario, case, p)
        for p in holding
        if not result.verdicts[p]
    ]
    assert not failures, "\n".join(failures)


VIOLATED_CELLS = [
    (a, o, p) for a, o in CELLS for p in CORE_PROPERTIES if expectation(a, o, p).outcome == VIOLATED
]


@pytest.mark.parametrize(("approach", "optimizer", "prop"), VIOLATED_CELLS)
def test_cells_marked_violated_are_shown_violated(approach, optimizer, prop):
    scenario = SCENARIOS[optimizer]

    def violates(case: TrainingCase) -> bool:
        if not scenario.usable(case):
            return False
        result = judge_case(approach, scenario, case, (prop,))
        return result.unsupported is None and not result.verdicts[prop].holds

    witness = worked_example()
    if not violates(witness):
        witness = find(
            scenario.cases(),
            violates,
            settings=settings(max_examples=suite_profile().shrink_examples, database=None),
        )
    verdict = judge_case(approach, scenario, witness, (prop,))
    assert not verdict.verdicts[prop].holds
    assert approach in verdict.verdicts[prop].message
    assert optimizer in verdict.verdicts[prop].message


UNSUPPORTED_CELLS = [
    (a, o) for a, o in CELLS if expected(a, o, UNSUPPORTED) == list(CORE_PROPERTIES)
]


@pytest.mark.parametrize(("approach", "optimizer"), UNSUPPORTED_CELLS)
def test_cells_marked_unsupported_are_refused_by_name(approach, optimizer):
    scenario = SCENARIOS[optimizer]
    result = judge_case(approach, scenario, probe_case(scenario.padding))
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
