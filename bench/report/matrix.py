"""The verification matrix as the page shows it: scenarios down, approaches across, P1–P7 per cell.

Scenarios run down the page because there are many (30 and more) and approaches across because
there are few; each table cell holds one small box per property, coloured by outcome. Every box
that is not a plain "holds as expected" links to its evidence (explanation, error message,
pasteable counterexample) further down, so the proof of any claim is one click away.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from bench.common.schema import HOLDS, NOT_CHECKED, ORIGINS, OUTCOMES, SCENARIO_GROUPS
from bench.report.recommend import cell_anchor
from bench.report.sources import is_missing, json_text, ordered_unique


@dataclass(frozen=True)
class MatrixCell:
    property: str
    outcome: str
    expected: str | None
    anchor: str
    has_evidence: bool

    @property
    def unexpected(self) -> bool:
        return self.expected is not None and self.expected != self.outcome

    @property
    def css_class(self) -> str:
        outcome = self.outcome if self.outcome in (*OUTCOMES, NOT_CHECKED) else "other"
        return f"cell {css_name(outcome)}" + " unexpected" * self.unexpected

    @property
    def title(self) -> str:
        expected = f" (expected {self.expected})" if self.unexpected else ""
        return f"{self.property}: {self.outcome}{expected}"


@dataclass
class ScenarioRow:
    name: str
    params: str
    cells: dict[str, list[MatrixCell]]


@dataclass(frozen=True)
class Evidence:
    """Everything recorded about one cell that needs explaining."""

    anchor: str
    approach: str
    scenario: str
    property: str
    outcome: str
    expected: str | None
    explanation: str
    detail: str
    counterexample: str
    examples: str
    max_abs_change: str
    raised: bool = False
    """Whether the violation is an exception the implementation raised."""

    @property
    def css_class(self) -> str:
        return f"evidence {css_name(self.outcome)}"


@dataclass
class MatrixView:
    approaches: list[str]
    approach_groups: list[tuple[str, list[str]]]
    """Columns by where the implementation comes from (reference, as people run them, ...)."""
    groups: list[tuple[str, list[ScenarioRow]]]
    evidence: list[Evidence]
    counts: dict[str, int]
    unexpected: int


def css_name(outcome: str) -> str:
    """An outcome as one CSS class name (``not judged`` has a space)."""
    return outcome.replace(" ", "-")


def text_of(value: object) -> str:
    return "" if is_missing(value) else str(value)


def count_text(value: object) -> str:
    """A count as written (JSON integers read back as floats when a column has nulls)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return text_of(value)


def needs_evidence(row) -> bool:
    surprising = not is_missing(row.expected) and row.expected != row.outcome
    return row.outcome != HOLDS or surprising or bool(row.explanation)


def approach_groups(verification: pd.DataFrame) -> list[tuple[str, list[str]]]:
    """Approaches by origin, in ``ORIGINS`` order (an unknown origin last, under its own name)."""
    origin_of = dict(zip(verification["approach"], verification["origin"], strict=True))
    origins = [o for o in ORIGINS if o in origin_of.values()]
    origins += [o for o in ordered_unique(origin_of.values()) if o not in ORIGINS]
    return [
        (ORIGINS.get(origin, origin), [a for a, o in origin_of.items() if o == origin])
        for origin in origins
    ]


def build_matrix(verification: pd.DataFrame) -> MatrixView:
    columns = approach_groups(verification)
    approaches = [approach for _, members in columns for approach in members]
    groups_seen = ordered_unique(verification["group"])
    group_names = [g for g in SCENARIO_GROUPS if g in groups_seen] + [
        g for g in groups_seen if g not in SCENARIO_GROUPS
    ]
    evidence = []
    groups = []
    for group_name in group_names:
        in_group = verification[verification["group"] == group_name]
        rows = []
        for scenario in ordered_unique(in_group["scenario"]):
            of_scenario = in_group[in_group["scenario"] == scenario]
            properties = sorted(ordered_unique(of_scenario["property"]))
            cells: dict[str, list[MatrixCell]] = {approach: [] for approach in approaches}
            by_key = {(r.approach, r.property): r for r in of_scenario.itertuples(index=False)}
            for approach in approaches:
                for property_name in properties:
                    row = by_key.get((approach, property_name))
                    anchor = cell_anchor(approach, scenario, property_name)
                    if row is None:
                        cells[approach].append(
                            MatrixCell(property_name, NOT_CHECKED, None, anchor, False)
                        )
                        continue
                    expected = None if is_missing(row.expected) else str(row.expected)
                    cell = MatrixCell(
                        property_name, row.outcome, expected, anchor, needs_evidence(row)
                    )
                    cells[approach].append(cell)
                    if cell.has_evidence:
                        evidence.append(evidence_of(row, anchor, expected))
            params = of_scenario["params"].iloc[0]
            rows.append(ScenarioRow(scenario, json_text(params), cells))
        groups.append((group_name, rows))
    counts = verification["outcome"].value_counts().to_dict()
    unexpected = int(
        (
            verification["expected"].notna() & (verification["expected"] != verification["outcome"])
        ).sum()
    )
    return MatrixView(approaches, columns, groups, evidence, counts, unexpected)


def evidence_of(row, anchor: str, expected: str | None) -> Evidence:
    change = row.max_abs_change
    return Evidence(
        anchor=anchor,
        approach=row.approach,
        scenario=row.scenario,
        property=row.property,
        outcome=row.outcome,
        expected=expected,
        explanation=text_of(row.explanation),
        detail=text_of(row.detail),
        counterexample=text_of(row.counterexample),
        examples=count_text(row.examples),
        max_abs_change="" if is_missing(change) else f"{float(change):.3g}",
        raised=not is_missing(row.raised),
    )
