"""Judge every property for one (approach, optimizer, case): the unit both the tests and
``python -m bench verify`` are made of."""

from __future__ import annotations

from dataclasses import dataclass, field

import impls

from . import properties as P
from .optimizers import OptimizerSpec
from .trajectory import Case, Loop, approach_factory, ideal_factory, train

CORE_PROPERTIES = ("P1", "P2", "P3", "P4", "P5", "P6")


@dataclass
class CaseResult:
    """Verdicts by property, or why the approach could not run this case at all."""

    verdicts: dict[str, P.Verdict] = field(default_factory=dict)
    unsupported: str | None = None


def unsupported_reason(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def check_case(
    approach: str,
    spec: OptimizerSpec,
    case: Case,
    scenario: str,
    properties: tuple[str, ...] = CORE_PROPERTIES,
) -> CaseResult:
    """Run ``case`` through ``approach`` and the ideal, and judge ``properties``.

    An approach that refuses the case's options, or an optimizer that rejects its gradients
    (SparseAdam on dense gradients, Adam on sparse ones), makes the case ``unsupported``: the
    error text is the result.
    """
    factory = approach_factory(approach, case)
    try:
        run = train(factory, case, spec)
    except impls.UnsupportedOption as error:
        return CaseResult(unsupported=unsupported_reason(error))
    except RuntimeError as error:
        if "sparse" in str(error).lower() or "dense" in str(error).lower():
            return CaseResult(unsupported=unsupported_reason(error))
        raise
    mask = case.trainable
    verdicts: dict[str, P.Verdict] = {}
    ideal = None
    if "P2" in properties or "P3" in properties:
        ideal = train(ideal_factory(case), case, spec)
    for prop in properties:
        if prop == "P1":
            verdicts[prop] = P.frozen_rows_identical(run, mask, approach, scenario)
        elif prop == "P2":
            verdicts[prop] = P.touched_rows_changed(run, ideal, mask, approach, scenario)
        elif prop == "P3":
            verdicts[prop] = P.follows_ideal(run, ideal, mask, approach, scenario)
        elif prop == "P4":
            verdicts[prop] = P.forward_matches_table(run, approach, scenario)
        elif prop == "P5":
            verdicts[prop] = P.inputs_untouched(run, approach, scenario)
        elif prop == "P6":
            resumed = train(factory, case, spec, Loop(checkpoint_after=len(case.batches) // 2))
            verdicts[prop] = P.resume_matches(resumed, run, approach, scenario)
        else:
            raise ValueError(f"properties: unknown property {prop!r}; expected P1..P6")
    return CaseResult(verdicts)
