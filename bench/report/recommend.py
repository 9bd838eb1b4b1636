"""The answer: which approach to use for a user's setup, computed from the result files.

A user's setup has three dimensions that decide which approaches are safe: whether the optimizer
applies weight decay (decay moves rows whose gradient is zero), whether gradients are sparse, and
whether training is distributed. For each setup the verification cells that apply are collected
(``applies``) and an approach is *eligible* when every one of them holds; among the eligible,
the fastest full training step at the headline case wins. Numbers and pitfalls are taken from the
rows, never written here, so a different measurement gives a different answer.

The rules for which cells apply are in ``METHOD``, which the report prints beside the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from bench.common.schema import (
    DISTRIBUTED_PROPERTY,
    HOLDS,
    NOT_CHECKED,
    NOT_JUDGED,
    PEER,
    UNSUPPORTED,
    VIOLATED,
)
from bench.report.sources import (
    CASE_COLUMNS,
    REFERENCE_APPROACHES,
    environment_note,
    is_missing,
    ok_rows,
    ordered_unique,
    row_keys,
    slug,
)

CORE_GROUPS = ("optimizer", "loop", "distributed")
METHOD = (
    "Setups differ in three ways that decide safety: weight decay (it moves rows whose gradient "
    "is zero), sparse gradients, and distributed training.",
    "Cells of the optimizer, loop and distributed scenarios, and of every sparse scenario, "
    "decide: an approach is eligible when each one that applies to the setup holds.",
    "A loop feature an approach refuses (unsupported) fails loudly at the first step, so it is "
    "listed as a caveat rather than a disqualification; a violated cell always disqualifies, "
    "except a violation of P0, an exception the implementation raises (it crashes instead of "
    "silently training the wrong rows), which is listed as a caveat. A cell not judged (every "
    "case raised, so nothing shows that it holds) disqualifies.",
    "Scenarios with weight decay apply only to setups with weight decay (except P7, ranks "
    "agreeing); sparse scenarios only to sparse setups; distributed ones and P7 only to "
    "distributed setups.",
    "Embedding options, dtypes and devices are features you may not use: an eligible "
    "approach's failures there are listed as caveats.",
    "A cell that is unsupported for every approach (the machine could not run it) is listed as "
    "not checkable instead of disqualifying everyone.",
    "Among the eligible approaches the fastest full training step (zero_grad, forward, "
    "backward, optimizer step) at the headline case wins; ties in coverage prefer a CUDA case.",
)
LOUD_GROUPS = ("loop",)


@dataclass(frozen=True)
class Setup:
    """A user's training setup, as far as it decides which approaches are safe."""

    weight_decay: bool
    sparse: bool
    distributed: bool

    @property
    def label(self) -> str:
        return ", ".join(
            (
                "optimizer with weight decay" if self.weight_decay else "no weight decay",
                "sparse gradients" if self.sparse else "dense gradients",
                "distributed" if self.distributed else "single process",
            )
        )

    @property
    def anchor(self) -> str:
        return slug(
            "setup",
            "wd" if self.weight_decay else "nowd",
            "sparse" if self.sparse else "dense",
            "ddp" if self.distributed else "single",
        )


SETUPS = tuple(
    Setup(weight_decay, sparse, distributed)
    for distributed in (False, True)
    for sparse in (False, True)
    for weight_decay in (True, False)
)


@dataclass(frozen=True)
class ScenarioTraits:
    group: str
    weight_decay: bool
    sparse: bool
    distributed: bool

    @property
    def core(self) -> bool:
        return self.group in CORE_GROUPS or self.sparse


def scenario_traits(group: str, weight_decay: object, sparse_gradients: object) -> ScenarioTraits:
    """The setup dimensions a scenario exercises, from the facts its records carry.

    A record without them (a file written before they were recorded) counts as no decay and
    dense gradients.
    """
    decay = 0.0 if is_missing(weight_decay) else float(weight_decay)
    sparse = sparse_gradients is True
    return ScenarioTraits(group, decay != 0.0, sparse, group == "distributed")


def applies(traits: ScenarioTraits, property_name: str, setup: Setup) -> bool:
    if traits.sparse != setup.sparse:
        return False
    if traits.distributed and not setup.distributed:
        return False
    if property_name == DISTRIBUTED_PROPERTY:
        return setup.distributed
    return setup.weight_decay or not traits.weight_decay


@dataclass(frozen=True)
class CellRef:
    """One verification cell, with the anchor of its evidence in the matrix section."""

    approach: str
    scenario: str
    property: str
    outcome: str
    explanation: str
    raised: bool = False

    @property
    def anchor(self) -> str:
        return cell_anchor(self.approach, self.scenario, self.property)


def cell_anchor(approach: str, scenario: str, property_name: str) -> str:
    return slug("cell", approach, scenario, property_name)


@dataclass
class Finding:
    """Cells of one approach that fail for the same recorded reason."""

    approach: str
    outcome: str
    text: str
    cells: list[CellRef]
    raised: bool = False

    @property
    def verb(self) -> str:
        if self.raised:
            return "violates, by raising,"
        return FINDING_VERBS.get(self.outcome, self.outcome)


FINDING_VERBS = {
    VIOLATED: "violates",
    UNSUPPORTED: "does not support",
    NOT_JUDGED: "could not be judged (every case raised) on",
    NOT_CHECKED: "was not checked for",
}


def group_findings(cells: Sequence[CellRef]) -> list[Finding]:
    findings: dict[tuple[str, str, str], Finding] = {}
    for cell in cells:
        text = cell.explanation or "no explanation recorded"
        key = (cell.approach, cell.outcome, text, cell.raised)
        finding = Finding(cell.approach, cell.outcome, text, [], cell.raised)
        findings.setdefault(key, finding).cells.append(cell)
    return list(findings.values())


@dataclass
class SetupCheck:
    """The verification evidence for one setup: what applies and who passes it."""

    scenarios: list[str]
    unchecked: list[str]
    covered: bool
    failures: dict[str, list[CellRef]]
    caveats: dict[str, list[CellRef]]

    @property
    def eligible(self) -> list[str]:
        return [approach for approach, cells in self.failures.items() if not cells]


def check_setup(verification: pd.DataFrame, setup: Setup) -> SetupCheck:
    """Sort every cell that applies to ``setup`` into failures (they disqualify) and caveats."""
    approaches = ordered_unique(verification["approach"])
    traits = {
        row.scenario: scenario_traits(row.group, row.weight_decay, row.sparse_gradients)
        for row in verification.drop_duplicates("scenario").itertuples(index=False)
    }
    cells = {
        (row.approach, row.scenario, row.property): row
        for row in verification.itertuples(index=False)
    }
    pairs = ordered_unique(
        (row.scenario, row.property)
        for row in verification.itertuples(index=False)
        if applies(traits[row.scenario], row.property, setup)
    )
    unchecked = []
    failures: dict[str, list[CellRef]] = {approach: [] for approach in approaches}
    caveats: dict[str, list[CellRef]] = {approach: [] for approach in approaches}
    informative = []
    for scenario, property_name in pairs:
        outcomes = {
            cells[a, scenario, property_name].outcome
            for a in approaches
            if (a, scenario, property_name) in cells
        }
        if outcomes == {UNSUPPORTED}:
            unchecked.append(f"{scenario} {property_name}")
        else:
            informative.append((scenario, property_name))
    for scenario, property_name in informative:
        kind = traits[scenario]
        for approach in approaches:
            row = cells.get((approach, scenario, property_name))
            outcome = NOT_CHECKED if row is None else row.outcome
            if outcome == HOLDS:
                continue
            explanation = (
                "no result recorded (an interrupted or partial verification run?)"
                if row is None
                else row.explanation or ("" if is_missing(row.detail) else str(row.detail))
            )
            raised = row is not None and not is_missing(row.raised)
            ref = CellRef(approach, scenario, property_name, outcome, explanation, raised)
            loud = (kind.group in LOUD_GROUPS and outcome != VIOLATED) or raised
            if kind.core and not loud:
                failures[approach].append(ref)
            else:
                caveats[approach].append(ref)
    core = [(s, p) for s, p in informative if traits[s].core]
    covered = bool(core)
    if setup.weight_decay:
        covered = covered and any(traits[s].weight_decay for s, _ in core)
    if setup.distributed:
        covered = covered and any(traits[s].distributed for s, _ in core)
    return SetupCheck(
        scenarios=ordered_unique(s for s, _ in informative),
        unchecked=unchecked,
        covered=covered,
        failures=failures,
        caveats=caveats,
    )


@dataclass
class Comparison:
    """The winner against one reference approach at one case; numbers stay numbers until the
    template words them."""

    approach: str
    role: str
    failed_checks: int | None  # None: the reference has no cells in verification.json
    step_s: float | None = None
    persistent_bytes: float | None = None
    peak_bytes: float | None = None

    @property
    def measured(self) -> bool:
        return self.step_s is not None


@dataclass
class CaseAnswer:
    """The fastest eligible approach at one headline case, and how it compares."""

    case: dict[str, object]
    environment: str
    winner: str
    step_s: float
    tokens_per_s: float | None
    persistent_bytes: float | None
    peak_bytes: float | None
    comparisons: list[Comparison]
    faster_but_unsafe: list[str]
    noisy: list[str]  # approaches of this answer (winner, references) whose row is noisy


@dataclass
class Recipe:
    """A popular recipe (an implementation as people run it) judged for one setup.

    ``unsafe``: the applicable checks it violates silently, grouped by reason (why it is unsafe
    here); ``refused``: those it cannot run (the setup is not open to it); ``unjudged``: those no
    case could be judged on, as every case raised; ``crashes``: those it violates by raising
    (P0). It is unsafe for the setup when ``unsafe`` is not empty.
    """

    approach: str
    unsafe: list[Finding]
    refused: list[Finding]
    unjudged: list[Finding]
    crashes: list[Finding]


def popular_recipes(verification: pd.DataFrame, check: SetupCheck) -> list[Recipe]:
    """Every implementation of origin ``peer`` in ``verification``, judged by ``check``."""
    peers = ordered_unique(verification.loc[verification["origin"] == PEER, "approach"])
    recipes = []
    for approach in peers:
        failures = check.failures.get(approach, [])
        recipes.append(
            Recipe(
                approach,
                group_findings([c for c in failures if c.outcome == VIOLATED]),
                group_findings([c for c in failures if c.outcome not in (VIOLATED, NOT_JUDGED)]),
                group_findings([c for c in failures if c.outcome == NOT_JUDGED]),
                group_findings([c for c in check.caveats.get(approach, []) if c.raised]),
            )
        )
    return recipes


@dataclass
class Recommendation:
    setup: Setup
    approach: str | None
    note: str
    check: SetupCheck | None
    cases: list[CaseAnswer] = field(default_factory=list)
    pitfalls: list[Finding] = field(default_factory=list)
    caveats: list[Finding] = field(default_factory=list)
    recipes: list[Recipe] = field(default_factory=list)

    @property
    def unsafe_recipes(self) -> list[str]:
        return [recipe.approach for recipe in self.recipes if recipe.unsafe]

    @property
    def eligible(self) -> list[str]:
        return self.check.eligible if self.check else []


def headline_steps(results: pd.DataFrame | None, setup: Setup) -> list[pd.DataFrame]:
    """Headline full-step rows that measured this setup's gradient kind, one frame per case.

    Ordered so that the case measuring the most approaches comes first, a CUDA case before a CPU
    one on ties (that is where people train).
    """
    if results is None:
        return []
    rows = ok_rows(results)
    rows = rows[rows["median_s"].notna() & (rows["sparse"] == setup.sparse)]
    if rows.empty:
        return []
    cases = [
        group.drop_duplicates("approach", keep="last")
        for _, group in rows.groupby(row_keys(rows, CASE_COLUMNS))
    ]
    return sorted(
        cases,
        key=lambda case: (-case["approach"].nunique(), str(case["device"].iloc[0]) != "cuda"),
    )


def number(value: object) -> float | None:
    return None if is_missing(value) else float(value)


def answer_case(
    case: pd.DataFrame, eligible: Sequence[str], check: SetupCheck, environment: str
) -> CaseAnswer | None:
    by_approach = {row["approach"]: row for _, row in case.iterrows()}
    measured = [a for a in eligible if a in by_approach]
    if not measured:
        return None
    winner = min(measured, key=lambda a: by_approach[a]["median_s"])
    best = by_approach[winner]
    comparisons = []
    for approach, role in REFERENCE_APPROACHES.items():
        if approach == winner:
            continue
        failures = check.failures.get(approach)
        comparison = Comparison(approach, role, None if failures is None else len(failures))
        if (reference := by_approach.get(approach)) is not None:
            comparison.step_s = number(reference["median_s"])
            comparison.persistent_bytes = number(reference["persistent_bytes"])
            comparison.peak_bytes = number(reference["peak_bytes"])
        comparisons.append(comparison)
    faster = case[case["median_s"] < best["median_s"]].sort_values("median_s")
    first = case.iloc[0]
    return CaseAnswer(
        case={column: first[column] for column in CASE_COLUMNS},
        environment=environment,
        winner=winner,
        step_s=float(best["median_s"]),
        tokens_per_s=number(best["tokens_per_s"]),
        persistent_bytes=number(best["persistent_bytes"]),
        peak_bytes=number(best["peak_bytes"]),
        comparisons=comparisons,
        faster_but_unsafe=list(faster["approach"]),
        noisy=[
            approach
            for approach in (winner, *(c.approach for c in comparisons if c.measured))
            if by_approach[approach]["noisy"] is True
        ],
    )


def recommend(
    verification: pd.DataFrame | None, results: pd.DataFrame | None, setup: Setup
) -> Recommendation:
    """The answer for ``setup``: approach, numbers, pitfalls and caveats, or why there is none."""
    if verification is None:
        return Recommendation(
            setup, None, "needs the verification results (python -m bench verify)", None
        )
    check = check_setup(verification, setup)
    recipes = popular_recipes(verification, check)
    if not check.covered:
        return Recommendation(setup, None, "no verification scenario covers this setup", check)
    eligible = check.eligible
    if not eligible:
        closest = min(check.failures, key=lambda a: len(check.failures[a]))
        return Recommendation(
            setup,
            None,
            f"no approach holds every check; the closest, {closest}, fails "
            f"{len(check.failures[closest])} applicable check(s)",
            check,
            pitfalls=group_findings(check.failures[closest]),
            recipes=recipes,
        )
    cases = [
        answer
        for case in headline_steps(results, setup)
        if (answer := answer_case(case, eligible, check, environment_note(case)))
    ]
    if not cases:
        how = (
            "the benchmark results are needed (python -m bench run)"
            if results is None
            else "none was measured at the headline case"
        )
        return Recommendation(
            setup,
            eligible[0] if len(eligible) == 1 else None,
            f"{len(eligible)} approach(es) hold every check ({', '.join(eligible)}); "
            f"to rank them by speed {how}",
            check,
            pitfalls=pitfalls_of([*REFERENCE_APPROACHES], check),
            recipes=recipes,
        )
    winner = cases[0].winner
    tempting = [*REFERENCE_APPROACHES, *cases[0].faster_but_unsafe]
    return Recommendation(
        setup,
        winner,
        "",
        check,
        cases=cases,
        pitfalls=pitfalls_of([a for a in tempting if a != winner], check),
        caveats=group_findings(check.caveats.get(winner, [])),
        recipes=recipes,
    )


def pitfalls_of(approaches: Sequence[str], check: SetupCheck) -> list[Finding]:
    """Why each of ``approaches`` is unsafe for the setup (nothing for those that are safe)."""
    cells = [cell for a in ordered_unique(approaches) for cell in check.failures.get(a, [])]
    return group_findings(cells)


def recommend_all(
    verification: pd.DataFrame | None, results: pd.DataFrame | None
) -> list[Recommendation]:
    return [recommend(verification, results, setup) for setup in SETUPS]
