"""Properties P0–P6 (docs/design.md), judged on recorded trajectories.

Each check returns a :class:`Verdict`; a violated verdict's ``message`` names the approach, the
scenario, the property, the step and the offending row with its values, so a failing test or a
report cell says exactly what went wrong without re-running anything.

An exception is P0's finding and no other property's: a run that raised is judged on P0 alone
(:func:`runs`), except that a change to the caller's tensors made before it raised is still a
P5 violation. Comparisons are NaN-aware where NaN can be the ideal's correct value (a float16
Adam step with an eps that underflows), so such a cell still tells a correct implementation
from a broken one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bench.common.frozen_rows import bits, changed_frozen_rows
from bench.common.schema import PROPERTIES, RUNS
from bench.verify.trajectory import Trajectory


@dataclass(frozen=True)
class Verdict:
    property: str
    holds: bool
    message: str = ""
    max_abs_change: float = 0.0
    raised: str | None = None
    """For a violation that is an exception the implementation raised: the exception."""

    def __bool__(self) -> bool:
        return self.holds


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    """Closeness for trajectories that sum the same gradients in a different order."""
    if dtype == torch.float64:
        return {"rtol": 1e-7, "atol": 1e-10}
    if dtype == torch.float32:
        return {"rtol": 1e-4, "atol": 1e-6}
    return {"rtol": 2e-2, "atol": 1e-3}


def _where(approach_name: str, scenario_name: str, prop: str) -> str:
    return (
        f"{prop} ({PROPERTIES[prop]}) violated by approach {approach_name!r} in scenario "
        f"{scenario_name!r}"
    )


def frozen_rows_stay(
    run: Trajectory, weight: Tensor, mask: Tensor, approach_name: str, scenario_name: str
) -> Verdict:
    """P1: every frozen row equals the caller's ``weight``, bit for bit, before the first step
    and after every step (:func:`bench.common.frozen_rows.changed_frozen_rows`).

    The baseline is the weight given, not the implementation's own first table: a copy that
    lost precision or a row it overwrote at construction is already a changed frozen row.
    """
    worst = 0.0
    first = ""
    for step, table in enumerate(run.tables):
        if table.shape != weight.shape or table.dtype != weight.dtype:
            return Verdict(
                "P1",
                False,
                f"{_where(approach_name, scenario_name, 'P1')}: the table read {_when(step)} is "
                f"{tuple(table.shape)} {table.dtype}, the weight given {tuple(weight.shape)} "
                f"{weight.dtype}",
            )
        changed = changed_frozen_rows(weight, table, mask)
        if changed.numel():
            delta = (table[changed] - weight[changed]).abs().nan_to_num(float("inf")).max()
            worst = max(worst, delta.item())
            if not first:
                row = int(changed[0])
                first = (
                    f"{_where(approach_name, scenario_name, 'P1')}: {_when(step)} frozen row "
                    f"{row} is {table[row].tolist()}, but the weight given has "
                    f"{weight[row].tolist()}"
                )
    if first:
        return Verdict("P1", False, f"{first} (largest change {worst:.3g})", worst)
    return Verdict("P1", True)


def _when(step: int) -> str:
    return "before the first step" if step == 0 else f"after step {step}"


def touched_rows_changed(
    run: Trajectory, ideal: Trajectory, mask: Tensor, approach_name: str, scenario_name: str
) -> Verdict:
    """P2: rows the ideal run gave a non-zero gradient must differ from their start."""
    received = ideal.received_gradient & mask
    unchanged = (run.tables[-1] == run.tables[0]).all(dim=1) & received
    if unchanged.any():
        row = int(unchanged.nonzero()[0, 0])
        return Verdict(
            "P2",
            False,
            f"{_where(approach_name, scenario_name, 'P2')}: trainable row {row} received a "
            f"non-zero gradient but is still {run.tables[-1][row].tolist()} after "
            f"{len(run.tables) - 1} steps",
        )
    return Verdict("P2", True)


def follows_ideal(
    run: Trajectory, ideal: Trajectory, mask: Tensor, approach_name: str, scenario_name: str
) -> Verdict:
    """P3: after every step, trainable rows are close to the ideal run's."""
    trainable = mask.nonzero().squeeze(1)
    for step, (got, want) in enumerate(zip(run.tables, ideal.tables, strict=True)):
        tol = tolerance(got.dtype)
        a, b = got[trainable].double(), want[trainable].double()
        far = ~torch.isclose(a, b, **tol, equal_nan=True).all(dim=1)
        if far.any():
            row = int(trainable[far.nonzero()[0, 0]])
            return Verdict(
                "P3",
                False,
                f"{_where(approach_name, scenario_name, 'P3')}: after step {step} trainable "
                f"row {row} is {got[row].tolist()} but the ideal run has {want[row].tolist()}",
            )
    return Verdict("P3", True)


def forward_matches_table(run: Trajectory, approach_name: str, scenario_name: str) -> Verdict:
    """P4: each output equals ``F.embedding`` on the merged table as it was before that step,
    and so does the last batch looked up again in ``eval()`` mode after the last step."""
    pairs = [
        (f"at step {step}", got, want)
        for step, (got, want) in enumerate(zip(run.outputs, run.expected_outputs, strict=True))
    ]
    if run.eval_output is not None:
        pairs.append(("in eval() mode after the last step", run.eval_output, run.eval_expected))
    for when, got, want in pairs:
        tol = tolerance(got.dtype)
        if got.shape != want.shape or not torch.allclose(got, want, **tol, equal_nan=True):
            return Verdict(
                "P4",
                False,
                f"{_where(approach_name, scenario_name, 'P4')}: {when} the output "
                f"{got.tolist()} differs from F.embedding(ids, merged_weight()) = "
                f"{want.tolist()}",
            )
    return Verdict("P4", True)


def runs(run: Trajectory, approach_name: str, scenario_name: str) -> Verdict:
    """P0: building, training and reading the table raised nothing."""
    if run.error:
        return Verdict(
            RUNS,
            False,
            f"{_where(approach_name, scenario_name, RUNS)}: {run.error}",
            raised=run.error,
        )
    return Verdict(RUNS, True)


def inputs_untouched(run: Trajectory, approach_name: str, scenario_name: str) -> Verdict:
    """P5."""
    if run.mutated_inputs:
        return Verdict(
            "P5",
            False,
            f"{_where(approach_name, scenario_name, 'P5')}: the caller's "
            f"{', '.join(run.mutated_inputs)} changed",
        )
    return Verdict("P5", True)


def resume_matches(
    resumed: Trajectory, uninterrupted: Trajectory, approach_name: str, scenario_name: str
) -> Verdict:
    """P6: bit-identical tables after a save/load in the middle of the run (NaN included)."""
    for step, (got, want) in enumerate(zip(resumed.tables, uninterrupted.tables, strict=True)):
        differs = (bits(got) != bits(want)).flatten(1).any(dim=1)
        if differs.any():
            row = int(differs.nonzero()[0, 0])
            return Verdict(
                "P6",
                False,
                f"{_where(approach_name, scenario_name, 'P6')}: after step {step} row {row} is "
                f"{got[row].tolist()} after save/load but {want[row].tolist()} without",
            )
    return Verdict("P6", True)
