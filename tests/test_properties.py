"""P0–P6 for every approach under every optimizer of the foundation issue, asserted both ways.

A cell the truth table (``bench.verify.truth_table``) marks ``holds`` must hold on every hypothesis
example it is judged on; a cell marked ``violated`` must be shown violated — first on the worked
example of the zero-gradient answer or the two-table snippet's layout, otherwise by an example
hypothesis finds; a ``not judged`` cell must have no example it can be judged on (every one
raises: P0); an ``unsupported`` cell must be refused with an error naming the approach and the
option.

The approaches are the reference ones and the peers (``bench.peers``), and any implementation named
in ``ROWFREEZE_APPROACHES=MODULE:NAME[,MODULE:NAME...]``: one the truth table has no rule for must
hold every property, and a violation fails with a counterexample to paste. A drawn case an
implementation refuses (a mask it cannot express) is skipped, as ``bench verify`` skips it.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, assume, find, given, settings
from hypothesis import strategies as st

import impls
from bench.common.schema import CORE_PROPERTIES, OUTCOMES, RUNS
from bench.implementations import Implementation, default_names, resolve
from bench.verify.counterexample import reproduction
from bench.verify.judge import judge_case
from bench.verify.sampling import suite_profile
from bench.verify.scenarios import SCENARIOS
from bench.verify.strategies import probe_case
from bench.verify.trajectory import TrainingCase
from bench.verify.truth_table import HOLDS, NOT_JUDGED, UNSUPPORTED, VIOLATED, expectation

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


def approaches_under_test(environ=os.environ) -> list[Implementation]:
    """The default approaches, then those named in ``ROWFREEZE_APPROACHES`` (comma-separated
    references), each resolved once, now, so that a typo fails collection naming it."""
    named = [r.strip() for r in environ.get(APPROACHES_VARIABLE, "").split(",") if r.strip()]
    return [resolve(name) for name in dict.fromkeys([*default_names(), *named])]


CELLS = [
    pytest.param(i, o, id=f"{i.name}-{o}")
    for i in approaches_under_test()
    for o in OPTIMIZER_SCENARIOS
]


def expected(implementation: Implementation, scenario: str, outcome: str) -> list[str]:
    return [
        p
        for p in CORE_PROPERTIES
        if expectation(implementation.name, scenario, p).outcome == outcome
    ]


def cells_with(outcome: str) -> list:
    return [cell for cell in CELLS if expected(*cell.values, outcome)]


@pytest.mark.parametrize(("implementation", "optimizer"), cells_with(HOLDS))
@given(data=st.data())
def test_cells_marked_holds_hold_on_every_example(implementation, optimizer, data):
    holding = expected(implementation, optimizer, HOLDS)
    scenario = SCENARIOS[optimizer]
    case = data.draw(scenario.cases())
    assume(scenario.usable(case))
    result = judge_case(implementation, scenario, case, tuple(holding))
    if implementation.black_box:
        assume(result.unsupported is None)  # a case it refuses, e.g. a mask it cannot express
    assert result.unsupported is None, f"{implementation.name} / {optimizer}: {result.unsupported}"
    failures = [
        f"{verdict.message}\ncounterexample:\n" + reproduction(implementation, scenario, case, p)
        for p, verdict in result.verdicts.items()
        if not verdict
    ]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(("implementation", "optimizer"), cells_with(NOT_JUDGED))
@given(data=st.data())
# The seed's class refuses every mask but "pretrained rows first", so most drawn cases are
# filtered out by design; the cases that remain are the ones the cell is about.
@settings(suppress_health_check=[HealthCheck.filter_too_much])
def test_cells_marked_not_judged_have_no_example_to_judge(implementation, optimizer, data):
    unjudged = expected(implementation, optimizer, NOT_JUDGED)
    scenario = SCENARIOS[optimizer]
    case = data.draw(scenario.cases())
    assume(scenario.usable(case))
    result = judge_case(implementation, scenario, case, (RUNS, *unjudged))
    assume(result.unsupported is None)
    judged = sorted(set(unjudged) & set(result.verdicts))
    assert not judged, (
        f"{implementation.name} / {optimizer}: {judged} judged on a case that ran; the truth "
        f"table says every case raises. Case:\n{reproduction(implementation, scenario, case, RUNS)}"
    )
    assert not result.verdicts[RUNS], f"{implementation.name} / {optimizer}: the case ran"


VIOLATED_CELLS = [
    pytest.param(*cell.values, p, id=f"{cell.id}-{p}")
    for cell in CELLS
    for p in expected(*cell.values, VIOLATED)
]


@pytest.mark.parametrize(("implementation", "optimizer", "prop"), VIOLATED_CELLS)
def test_cells_marked_violated_are_shown_violated(implementation, optimizer, prop):
    scenario = SCENARIOS[optimizer]

    def violates(case: TrainingCase) -> bool:
        if not scenario.usable(case):
            return False
        result = judge_case(implementation, scenario, case, (prop,))
        verdict = result.verdicts.get(prop)
        return result.unsupported is None and verdict is not None and not verdict.holds

    witness = next((w for w in scenario.witnesses() if violates(w)), None)
    if witness is None:
        witness = find(
            scenario.cases(),
            violates,
            settings=settings(max_examples=suite_profile().shrink_examples, database=None),
        )
    verdict = judge_case(implementation, scenario, witness, (prop,)).verdicts[prop]
    assert not verdict.holds
    assert implementation.name in verdict.message
    assert optimizer in verdict.message


UNSUPPORTED_CELLS = [
    cell for cell in CELLS if expected(*cell.values, UNSUPPORTED) == list(CORE_PROPERTIES)
]


@pytest.mark.parametrize(("implementation", "optimizer"), UNSUPPORTED_CELLS)
def test_cells_marked_unsupported_are_refused_by_name(implementation, optimizer):
    scenario = SCENARIOS[optimizer]
    result = judge_case(implementation, scenario, probe_case(scenario.padding))
    assert result.unsupported is not None, f"{implementation.name} / {optimizer} ran"
    assert implementation.name in result.unsupported
    assert "sparse" in result.unsupported


def test_every_cell_has_one_outcome_and_violations_are_explained():
    for cell in CELLS:
        implementation, optimizer = cell.values
        for prop in CORE_PROPERTIES:
            expected_cell = expectation(implementation.name, optimizer, prop)
            assert expected_cell.outcome in OUTCOMES
            assert expected_cell.outcome == HOLDS or expected_cell.why, (cell.id, prop)


def test_adafactor_rejects_an_empty_parameter():
    """Why Adafactor cases need a trainable row: torch's Adafactor fails on a (0, D) parameter,
    which is what split-style approaches hold when every row is frozen."""
    weight = torch.randn(4, 3)
    emb = impls.APPROACHES["split"].from_pretrained(weight, torch.zeros(4, dtype=torch.bool))
    optimizer = torch.optim.Adafactor(emb.parameters())
    emb.trainable_weight.grad = torch.zeros(0, 3)
    with pytest.raises(ZeroDivisionError):
        optimizer.step()
