"""Judge every property for one (implementation, scenario, case): the unit both the tests and
``python -m bench verify`` are made of."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import impls
from bench.common.optimizers import OPTIMIZERS
from bench.common.schema import CORE_PROPERTIES, RUNS
from bench.common.text import error_text
from bench.implementations import Implementation
from bench.verify import properties as P
from bench.verify.scenarios import Scenario
from bench.verify.trajectory import TrainingCase, approach_factory, ideal_factory, train


@dataclass
class CaseVerdicts:
    """Verdicts by property, or why the implementation could not run this case at all.

    A property missing from ``verdicts`` was not judged on this case: the run raised (P0 says
    so) before there was anything to judge it on.
    """

    verdicts: dict[str, P.Verdict] = field(default_factory=dict)
    unsupported: str | None = None


def judge_case(
    implementation: Implementation,
    scenario: Scenario,
    case: TrainingCase,
    properties: tuple[str, ...] | None = None,
) -> CaseVerdicts:
    """Run a drawn ``case`` through ``implementation`` and the ideal under ``scenario``; judge
    ``properties`` (default: the scenario's single-process properties).

    An implementation that refuses the case (its options, or a mask it cannot express), or an
    optimizer that rejects a reference approach's gradients (SparseAdam on dense gradients, Adam
    on sparse ones), makes the case ``unsupported``: the error text is the result. An exception
    a black box raises while building, training or reading its table violates P0 and leaves the
    other properties unjudged on this case, except P5 when the caller's tensors changed before it
    raised. A reference approach's exception is a bug of this package and propagates.
    """
    properties = tuple(p for p in (properties or scenario.properties) if p in CORE_PROPERTIES)
    case = scenario.prepare(case)
    spec = OPTIMIZERS[scenario.optimizer]
    loop = scenario.loop
    factory = approach_factory(implementation, case)
    approach_name, scenario_name = implementation.name, scenario.name

    def run_loop(loop_to_run):
        return train(factory, case, spec, loop_to_run, errors_are_results=implementation.black_box)

    try:
        run = run_loop(loop)
    except impls.UnsupportedOption as error:
        return CaseVerdicts(unsupported=error_text(error))
    except Exception as error:
        if loop.wraps_in_a_tool:  # torch.compile / torch.func refusing the approach's code
            return CaseVerdicts(unsupported=error_text(error))
        if isinstance(error, RuntimeError) and any(
            word in str(error).lower() for word in ("sparse", "dense")
        ):
            return CaseVerdicts(unsupported=error_text(error))
        raise
    verdicts: dict[str, P.Verdict] = {}
    if RUNS in properties:
        verdicts[RUNS] = P.runs(run, approach_name, scenario_name)
    if "P5" in properties:
        untouched = P.inputs_untouched(run, approach_name, scenario_name)
        if run.error is None or not untouched:  # a change made before it raised happened
            verdicts["P5"] = untouched
    if run.error:
        return CaseVerdicts(verdicts)
    mask = case.trainable
    ideal = None
    if "P2" in properties or "P3" in properties:
        ideal = train(ideal_factory(case), case, spec, loop.for_ideal())
    for prop in properties:
        if prop == "P1":
            verdicts[prop] = P.frozen_rows_stay(
                run, case.weight, mask, approach_name, scenario_name
            )
        elif prop == "P2":
            verdicts[prop] = P.touched_rows_changed(run, ideal, mask, approach_name, scenario_name)
        elif prop == "P3":
            verdicts[prop] = P.follows_ideal(run, ideal, mask, approach_name, scenario_name)
        elif prop == "P4":
            verdicts[prop] = P.forward_matches_table(run, approach_name, scenario_name)
        elif prop == "P6":
            resumed = run_loop(replace(loop, checkpoint_after=len(case.batches) // 2))
            if resumed.error:  # saving, loading or continuing raised: P0's finding
                if RUNS in properties:
                    verdicts[RUNS] = P.runs(resumed, approach_name, scenario_name)
            else:
                verdicts[prop] = P.resume_matches(resumed, run, approach_name, scenario_name)
    return CaseVerdicts(verdicts)
