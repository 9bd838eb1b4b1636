"""A :class:`~bench.compare.changes.Comparison` as the sections both outputs show, and as text.

The printed text and the HTML page are built from the same :class:`Section` values, so the two
cannot disagree on what changed; numbers become words only here.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.compare.changes import Comparison, Timing, TimingChange
from bench.report.sources import format_seconds

RULE = (
    "NEW/OLD is the ratio of median times; ~: within noise (the intervals median ± IQR/2 of OLD "
    "and NEW overlap); a regression (improvement) is a ratio above 1 + threshold (below "
    "1 − threshold) outside the noise; slower/faster: outside the noise, inside the threshold."
)
"""The rule of :mod:`bench.compare.changes`, in one sentence for both outputs."""


@dataclass(frozen=True)
class Section:
    """One table: a title saying how many rows and what they are, and its cells as text."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    highlighted: tuple[bool, ...]
    """Per row: whether it is a finding (a regression, improvement or changed outcome)."""


@dataclass(frozen=True)
class ComparisonView:
    """Everything either output shows, in order."""

    header: tuple[str, ...]
    sections: tuple[Section, ...]
    summary: str


def view(comparison: Comparison) -> ComparisonView:
    old, new = comparison.old, comparison.new
    header = (
        f"{old.argument}: {old.path}",
        f"{new.argument}: {new.path}",
        f"threshold {comparison.threshold:.0%}. {RULE}",
        *(f"not compared: {note}" for note in comparison.unpaired_files),
    )
    sections = (
        environment_section(comparison),
        timing_section(comparison),
        status_section(comparison),
        outcome_section(comparison),
        unpaired_section(comparison),
    )
    return ComparisonView(header, sections, summary(comparison))


def summary(comparison: Comparison) -> str:
    return (
        f"{len(comparison.regressions)} regression(s), {len(comparison.improvements)} "
        f"improvement(s), {len(comparison.status_changes)} status change(s), "
        f"{len(comparison.outcome_changes)} verification change(s), {len(comparison.unpaired)} "
        f"entr(ies) in one folder only; exit status {comparison.exit_status}"
    )


def environment_section(comparison: Comparison) -> Section:
    """The ``env`` keys whose values differ: the machines, commits or torch versions compared."""
    old, new = comparison.old.argument, comparison.new.argument
    differing = [row for row in comparison.environment if row.old != row.new]
    return Section(
        f"Environment keys that differ: {len(differing)}",
        ("env key", old, new),
        tuple((row.key, row.old, row.new) for row in differing),
        tuple(False for _ in differing),
    )


def timing_section(comparison: Comparison) -> Section:
    old, new = comparison.old.argument, comparison.new.argument
    timings = comparison.timings
    return Section(
        f"Benchmarks: {len(timings)} case(s) and phase(s) timed in both, "
        f"{len(comparison.regressions)} regression(s), {len(comparison.improvements)} "
        "improvement(s)",
        (
            f"{new}/{old}",
            "verdict",
            "approach",
            "phase",
            f"{old} median ± IQR/2",
            f"{new} median ± IQR/2",
            "case",
            "note",
        ),
        tuple(timing_cells(change, old, new) for change in timings),
        tuple(change.verdict.flagged for change in timings),
    )


def timing_cells(change: TimingChange, old: str, new: str) -> tuple[str, ...]:
    noisy = [argument for argument, t in ((old, change.old), (new, change.new)) if t.noisy]
    return (
        f"{change.ratio:.2f}×",
        change.verdict.value,
        change.approach,
        change.phase,
        spread_text(change.old),
        spread_text(change.new),
        change.case,
        f"marked noisy in {' and '.join(noisy)}" if noisy else "",
    )


def spread_text(timing: Timing) -> str:
    return f"{format_seconds(timing.median_s)} ± {format_seconds(timing.iqr_s / 2)}"


def status_section(comparison: Comparison) -> Section:
    old, new = comparison.old.argument, comparison.new.argument
    changes = comparison.status_changes
    return Section(
        f"Benchmarks whose status changed (timed in one folder only): {len(changes)}",
        ("approach", "phase", old, new, "reason", "case"),
        tuple((c.approach, c.phase, c.old_status, c.new_status, c.reason, c.case) for c in changes),
        tuple(True for _ in changes),
    )


def outcome_section(comparison: Comparison) -> Section:
    old, new = comparison.old.argument, comparison.new.argument
    changes = comparison.outcome_changes
    return Section(
        f"Verification cells whose outcome changed: {len(changes)}",
        ("approach", "scenario", "property", old, new),
        tuple((c.approach, c.scenario, c.property, c.old_outcome, c.new_outcome) for c in changes),
        tuple(True for _ in changes),
    )


def unpaired_section(comparison: Comparison) -> Section:
    entries = comparison.unpaired
    return Section(
        f"In one folder only: {len(entries)}",
        ("file", "only in", "approach", "what"),
        tuple((e.filename, e.only_in, e.approach, e.what) for e in entries),
        tuple(False for _ in entries),
    )


def as_text(comparison_view: ComparisonView) -> str:
    """The view as aligned plain-text tables, for the terminal and CI logs."""
    lines = [*comparison_view.header]
    for section in comparison_view.sections:
        lines += ["", section.title]
        if section.rows:
            lines += aligned((section.columns, *section.rows))
    lines += ["", comparison_view.summary]
    return "\n".join(lines) + "\n"


def aligned(rows: tuple[tuple[str, ...], ...]) -> list[str]:
    """Left-justified columns, each as wide as its widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
