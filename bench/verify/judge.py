"""Judge every property for one (approach, optimizer, case): the unit both the tests and
``python -m bench verify`` are made of."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import impls
from bench.common.implementations import resolve
from bench.common.optimizers import OPTIMIZERS
from bench.common.schema import CORE_PROPERTIES
from bench.common.text import error_text
from bench.verify import properties as P
from bench.verify.scenarios import Scenario
from bench.verify.trajectory import TrainingCase, approach_factory, ideal_factory, train


@dataclass
class CaseVerdicts:
    """Verdicts by property, or why the approach could not run this case at all."""

    verdicts: dict[str, P.Verdict] = field(default_factory=dict)
    unsupported: str | None = None


def judge_case(
    approach: str,
    scenario: Scenario,
    case: TrainingCase,
    properties: tuple[str, ...] | None = None,
) -> CaseVerdicts:
    """Run a drawn ``case`` through ``approach`` and the ideal under ``scenario``; judge
    ``properties`` (default: the scenario's single-process properties).

    ``approach`` is any reference ``bench.common.implementations.resolve`` accepts. An approach
    that refuses the case (its options, or a mask it cannot express), or an optimizer that rejects
    a reference approach's gradients (SparseAdam on dense gradients, Adam on sparse ones), makes
    the case ``unsupported``: the error text is the result. An exception a black box raises while
    training violates every property judged, except that a change to the caller's tensors is
    reported as itself (P5 is about exactly that).
    """
    properties = tuple(p for p in (properties or scenario.properties) if p in CORE_PROPERTIES)
    case = scenario.prepare(case)
    spec = OPTIMIZERS[scenario.optimizer]
    loop = scenario.loop
    implementation = resolve(approach)
    factory = approach_factory(approach, case)
    name = scenario.name
    contained = implementation.black_box

    def run_loop(loop_to_run):
        return train(factory, case, spec, loop_to_run, errors_are_results=contained)

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
    mask = case.trainable
    verdicts: dict[str, P.Verdict] = {}
    ideal = None
    if run.error is None and ("P2" in properties or "P3" in properties):
        ideal = train(ideal_factory(case), case, spec, loop.for_ideal())
    for prop in properties:
        if prop == "P5":
            verdicts[prop] = P.inputs_untouched(run, approach, name)
            if verdicts[prop] and run.error:
                verdicts[prop] = P.raised(run, prop, approach, name)
        elif run.error:
            verdicts[prop] = P.raised(run, prop, approach, name)
        elif prop == "P1":
            verdicts[prop] = P.frozen_rows_stay(run, mask, approach, name)
        elif prop == "P2":
            verdicts[prop] = P.touched_rows_changed(run, ideal, mask, approach, name)
        elif prop == "P3":
            verdicts[prop] = P.follows_ideal(run, ideal, mask, approach, name)
        elif prop == "P4":
            verdicts[prop] = P.forward_matches_table(run, approach, name)
        elif prop == "P6":
            resumed = run_loop(replace(loop, checkpoint_after=len(case.batches) // 2))
            verdicts[prop] = (
                P.raised(resumed, prop, approach, name)
                if resumed.error
                else P.resume_matches(resumed, run, approach, name)
            )
    return CaseVerdicts(verdicts)
