"""What changed from OLD to NEW: time ratios per benchmark case and phase, changed verification
cells, and what only one folder holds.

When a change counts (the rule ``compare`` applies and prints):

- The ratio is NEW's median time over OLD's, for a case and phase measured (status ``ok``) in
  both folders.
- *Within noise* (``~``): the rows of ``results.json`` carry a median and an IQR per case and
  phase, not the per-round times, so no rank test can be run on them. Each side's spread is the
  interval of the IQR's width centred on its median, ``[median − IQR/2, median + IQR/2]`` (the
  interquartile range itself when the rounds are symmetric about the median); a change is within
  noise when OLD's and NEW's intervals overlap.
- A *regression* is a ratio above ``1 + threshold`` that is not within noise, an *improvement* a
  ratio below ``1 − threshold`` that is not within noise. A change outside the noise but inside
  the threshold is shown as ``slower`` or ``faster`` and flags nothing.
- A row that its writer marked ``noisy`` (:mod:`bench.common.load`: the machine was busy, or the
  rounds disagreed) is judged by the same rule and shown with a note, so a flag on a busy
  machine's row can be discounted by whoever reads it.

Rows are paired on :data:`~bench.compare.folders.BENCHMARK_KEY` and verification cells on
``VERIFICATION.key``; a point measured for several sweeps is written once per sweep with the same
times and compared once.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from bench.common.schema import CASE_COLUMNS, ENV_KEYS, OK, RESULTS, VERIFICATION
from bench.compare.folders import BENCHMARK_KEY, ResultFile, ResultFolder
from bench.report.sources import describe_case, is_missing

DEFAULT_THRESHOLD = 0.10
MEASURED = OK


class Verdict(enum.Enum):
    """How one case's time moved, by the rule of the module docstring."""

    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    SLOWER = "slower"
    FASTER = "faster"
    WITHIN_NOISE = "~"

    @property
    def flagged(self) -> bool:
        return self in (Verdict.REGRESSION, Verdict.IMPROVEMENT)


@dataclass(frozen=True)
class Timing:
    """One side's time for a case and phase, and the interval its spread spans."""

    median_s: float
    iqr_s: float
    noisy: bool

    @property
    def low_s(self) -> float:
        return self.median_s - self.iqr_s / 2

    @property
    def high_s(self) -> float:
        return self.median_s + self.iqr_s / 2


def within_noise(old: Timing, new: Timing) -> bool:
    """Whether the two spread intervals overlap."""
    return old.low_s <= new.high_s and new.low_s <= old.high_s


def judge(old: Timing, new: Timing, threshold: float) -> Verdict:
    """The verdict on NEW's time against OLD's (the module docstring's rule)."""
    ratio = new.median_s / old.median_s
    if within_noise(old, new):
        return Verdict.WITHIN_NOISE
    if ratio > 1 + threshold:
        return Verdict.REGRESSION
    if ratio < 1 - threshold:
        return Verdict.IMPROVEMENT
    return Verdict.SLOWER if ratio > 1 else Verdict.FASTER


@dataclass(frozen=True)
class TimingChange:
    """A case and phase timed in both folders."""

    approach: str
    phase: str
    case: str
    """The case columns in words (``cpu, float32, V = 400,000, ...``)."""
    old: Timing
    new: Timing
    verdict: Verdict

    @property
    def ratio(self) -> float:
        return self.new.median_s / self.old.median_s


@dataclass(frozen=True)
class StatusChange:
    """A case and phase in both folders that is not timed in both: measured in one, skipped or
    failed in the other (or skipped in one, failed in the other)."""

    approach: str
    phase: str
    case: str
    old_status: str
    new_status: str
    reason: str
    """Why the side that is not measured is not (NEW's reason when neither is)."""


@dataclass(frozen=True)
class OutcomeChange:
    """A verification cell whose outcome differs."""

    approach: str
    scenario: str
    property: str
    old_outcome: str
    new_outcome: str


@dataclass(frozen=True)
class UnpairedEntry:
    """A benchmark case and phase, or a verification cell, that only one folder holds."""

    filename: str
    only_in: str
    """The argument (OLD or NEW) whose folder holds it."""
    approach: str
    what: str
    """The phase and case, or the scenario and property."""


@dataclass(frozen=True)
class EnvironmentRow:
    """One key of the records' ``env`` in each folder (distinct values joined)."""

    key: str
    old: str
    new: str


@dataclass(frozen=True)
class Comparison:
    """What changed from ``old`` to ``new``: what both outputs show, and the exit status."""

    old: ResultFolder
    new: ResultFolder
    threshold: float
    timings: tuple[TimingChange, ...]
    """Regressions first (largest ratio first), then improvements (smallest first), then the
    rest in NEW's order."""
    status_changes: tuple[StatusChange, ...]
    outcome_changes: tuple[OutcomeChange, ...]
    unpaired: tuple[UnpairedEntry, ...]
    unpaired_files: tuple[str, ...]
    """Compared files only one folder holds, in words (nothing of them is compared)."""
    environment: tuple[EnvironmentRow, ...]

    @property
    def regressions(self) -> tuple[TimingChange, ...]:
        return tuple(t for t in self.timings if t.verdict is Verdict.REGRESSION)

    @property
    def improvements(self) -> tuple[TimingChange, ...]:
        return tuple(t for t in self.timings if t.verdict is Verdict.IMPROVEMENT)

    @property
    def exit_status(self) -> int:
        """1 when anything regressed, so a CI job fails; 0 otherwise."""
        return 1 if self.regressions else 0


def compare(
    old: ResultFolder, new: ResultFolder, threshold: float = DEFAULT_THRESHOLD
) -> Comparison:
    """Everything that changed from ``old`` to ``new``; see the module docstring."""
    benchmarks = paired(old, new, RESULTS.name, BENCHMARK_KEY)
    cells = paired(old, new, VERIFICATION.name, VERIFICATION.key)
    timings, status_changes = benchmark_changes(benchmarks, threshold)
    return Comparison(
        old=old,
        new=new,
        threshold=threshold,
        timings=timings,
        status_changes=status_changes,
        outcome_changes=outcome_changes(cells),
        unpaired=(
            *unpaired(benchmarks, old, new, RESULTS.filename, describe_phase_and_case),
            *unpaired(cells, old, new, VERIFICATION.filename, describe_cell),
        ),
        unpaired_files=unpaired_files(old, new),
        environment=environment_rows(old, new),
    )


def paired(old: ResultFolder, new: ResultFolder, name: str, key: Sequence[str]) -> pd.DataFrame:
    """Both folders' records of file ``name`` joined on ``key``: columns ``COLUMN_old``,
    ``COLUMN_new`` and ``_merge`` (``left_only``: OLD only), in NEW's order, then OLD's for what
    NEW lacks. Empty unless both hold the file."""
    if name not in old.files or name not in new.files:
        return pd.DataFrame(columns=["_merge"])
    sides = [keyed(folder.files[name], key) for folder in (old, new)]
    joined = pd.merge(*sides, on="identity", how="outer", suffixes=("_old", "_new"), indicator=True)
    return joined.sort_values(["position_new", "position_old"], na_position="last")


def keyed(file: ResultFile, key: Sequence[str]) -> pd.DataFrame:
    """``file``'s records with an ``identity`` column made of ``key``, one row per identity.

    The identity is the key values as JSON (as :class:`bench.common.results.ResultsFile` keys
    records), so a null ``compile`` pairs with a null and nothing is lost to pandas dropping null
    keys; a null is null whether pandas read it as None or NaN, or the file lacked the column.
    """
    frame = file.frame.copy()
    values = zip(*(frame[column].tolist() for column in key), strict=True)
    frame["identity"] = [
        json.dumps([None if is_missing(v) else v for v in row], sort_keys=True, default=str)
        for row in values
    ]
    frame["position"] = range(len(frame))
    return frame.drop_duplicates("identity", keep="first")


def side(row: pd.Series, column: str, suffix: str) -> object:
    value = row[f"{column}_{suffix}"]
    return None if is_missing(value) else value


def either_side(row: pd.Series, column: str) -> object:
    """``column`` from NEW where present, else from OLD (key columns are the same on both)."""
    value = side(row, column, "new")
    return side(row, column, "old") if value is None else value


def describe_benchmark(row: pd.Series) -> str:
    return describe_case({column: either_side(row, column) for column in CASE_COLUMNS})


def describe_phase_and_case(row: pd.Series) -> str:
    return f"{either_side(row, 'phase')}: {describe_benchmark(row)}"


def describe_cell(row: pd.Series) -> str:
    return f"{either_side(row, 'scenario')} / {either_side(row, 'property')}"


def timing(row: pd.Series, suffix: str) -> Timing | None:
    """One side's timing, or None where the row holds no usable time."""
    median_s, iqr_s = side(row, "median_s", suffix), side(row, "iqr_s", suffix)
    if side(row, "status", suffix) != MEASURED or median_s is None:
        return None
    median_s = float(median_s)
    if not math.isfinite(median_s) or median_s <= 0:
        return None
    noisy = side(row, "noisy", suffix)
    return Timing(median_s, float(iqr_s or 0.0), noisy is not None and bool(noisy))


def benchmark_changes(
    benchmarks: pd.DataFrame, threshold: float
) -> tuple[tuple[TimingChange, ...], tuple[StatusChange, ...]]:
    """Timing changes (ordered as ``Comparison.timings``) and status changes of the cases both
    folders hold."""
    timings, status_changes = [], []
    for _, row in benchmarks[benchmarks["_merge"] == "both"].iterrows():
        approach, phase = str(either_side(row, "approach")), str(either_side(row, "phase"))
        old, new = timing(row, "old"), timing(row, "new")
        if old is not None and new is not None:
            verdict = judge(old, new, threshold)
            timings.append(
                TimingChange(approach, phase, describe_benchmark(row), old, new, verdict)
            )
            continue
        old_status, new_status = str(side(row, "status", "old")), str(side(row, "status", "new"))
        if old_status != new_status:
            unmeasured = "old" if new_status == MEASURED else "new"
            reason = side(row, "reason", unmeasured) or ""
            status_changes.append(
                StatusChange(
                    approach, phase, describe_benchmark(row), old_status, new_status, str(reason)
                )
            )
    timings.sort(key=flagged_first)  # stable: the unflagged keep NEW's order
    return tuple(timings), tuple(status_changes)


def flagged_first(change: TimingChange) -> tuple[int, float]:
    """Regressions, the largest ratio first, then improvements, the smallest first, then the
    rest."""
    if change.verdict is Verdict.REGRESSION:
        return 0, -change.ratio
    if change.verdict is Verdict.IMPROVEMENT:
        return 1, change.ratio
    return 2, 0.0


def outcome_changes(cells: pd.DataFrame) -> tuple[OutcomeChange, ...]:
    both = cells[cells["_merge"] == "both"]
    return tuple(
        OutcomeChange(
            str(either_side(row, "approach")),
            str(either_side(row, "scenario")),
            str(either_side(row, "property")),
            str(side(row, "outcome", "old")),
            str(side(row, "outcome", "new")),
        )
        for _, row in both.iterrows()
        if side(row, "outcome", "old") != side(row, "outcome", "new")
    )


def unpaired(
    joined: pd.DataFrame,
    old: ResultFolder,
    new: ResultFolder,
    filename: str,
    describe: Callable[[pd.Series], str],
) -> list[UnpairedEntry]:
    """Entries of ``joined`` only one folder holds; ``describe`` puts a row's key in words."""
    entries = []
    for merge, folder in (("left_only", old), ("right_only", new)):
        for _, row in joined[joined["_merge"] == merge].iterrows():
            approach = str(either_side(row, "approach"))
            entries.append(UnpairedEntry(filename, folder.argument, approach, describe(row)))
    return entries


def unpaired_files(old: ResultFolder, new: ResultFolder) -> tuple[str, ...]:
    notes = []
    for name in sorted(old.files.keys() ^ new.files.keys()):
        holder = old if name in old.files else new
        file = holder.files[name]
        notes.append(f"{file.schema.filename} is only in {holder.argument} ({file.path})")
    return tuple(notes)


def environment_rows(old: ResultFolder, new: ResultFolder) -> tuple[EnvironmentRow, ...]:
    """Each ``env`` key's values in the two folders: what differs between the machines, commits
    or torch versions compared."""
    values = [environment_values(folder) for folder in (old, new)]
    return tuple(EnvironmentRow(key, values[0][key], values[1][key]) for key in ENV_KEYS)


def environment_values(folder: ResultFolder) -> dict[str, str]:
    envs = [
        env for file in folder.files.values() for env in file.frame["env"] if isinstance(env, dict)
    ]
    return {
        key: ", ".join(dict.fromkeys(str(env.get(key)) for env in envs)) or "–" for key in ENV_KEYS
    }
