"""Properties P1–P6 of DESIGN.md, judged on recorded trajectories.

Each check returns a :class:`Verdict`; a violated verdict's ``message`` names the approach, the
scenario, the property, the step and the offending row with its values, so a failing test or a
report cell says exactly what went wrong without re-running anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bench.common.frozen_rows import changed_frozen_rows
from bench.common.schema import PROPERTIES
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


def _where(approach: str, scenario: str, prop: str) -> str:
    return f"{prop} ({PROPERTIES[prop]}) violated by approach {approach!r} in scenario {scenario!r}"


def frozen_rows_stay(run: Trajectory, mask: Tensor, approach: str, scenario: str) -> Verdict:
    """P1: bit-identical, not close (:func:`bench.common.frozen_rows.changed_frozen_rows`)."""
    initial = run.tables[0]
    worst = 0.0
    first = ""
    for step, table in enumerate(run.tables[1:], start=1):
        changed = changed_frozen_rows(initial, table, mask)
        if changed.numel():
            delta = (table[changed] - initial[changed]).abs().nan_to_num(float("inf")).max()
            worst = max(worst, delta.item())
            if not first:
                row = int(changed[0])
                first = (
                    f"{_where(approach, scenario, 'P1')}: after step {step} frozen row {row} "
                    f"changed from {initial[row].tolist()} to {table[row].tolist()}"
                )
    if first:
        return Verdict("P1", False, f"{first} (largest change {worst:.3g})", worst)
    return Verdict("P1", True)


def touched_rows_changed(
    run: Trajectory, ideal: Trajectory, mask: Tensor, approach: str, scenario: str
) -> Verdict:
    """P2: rows the ideal run gave a non-zero gradient must differ from their start."""
    received = ideal.received_gradient & mask
    unchanged = (run.tables[-1] == run.tables[0]).all(dim=1) & received
    if unchanged.any():
        row = int(unchanged.nonzero()[0, 0])
        return Verdict(
            "P2",
            False,
            f"{_where(approach, scenario, 'P2')}: trainable row {row} received a non-zero "
            f"gradient but is still {run.tables[-1][row].tolist()} after "
            f"{len(run.tables) - 1} steps",
        )
    return Verdict("P2", True)


def follows_ideal(
    run: Trajectory, ideal: Trajectory, mask: Tensor, approach: str, scenario: str
) -> Verdict:
    """P3: after every step, trainable rows are close to the ideal run's."""
    trainable = mask.nonzero().squeeze(1)
    for step, (got, want) in enumerate(zip(run.tables, ideal.tables, strict=True)):
        tol = tolerance(got.dtype)
        a, b = got[trainable].double(), want[trainable].double()
        far = ~torch.isclose(a, b, **tol).all(dim=1)
        if far.any():
            row = int(trainable[far.nonzero()[0, 0]])
            return Verdict(
                "P3",
                False,
                f"{_where(approach, scenario, 'P3')}: after step {step} trainable row {row} is "
                f"{got[row].tolist()} but the ideal run has {want[row].tolist()}",
            )
    return Verdict("P3", True)


def forward_matches_table(run: Trajectory, approach: str, scenario: str) -> Verdict:
    """P4: each output equals ``F.embedding`` on the merged table as it was before that step."""
    for step, (got, want) in enumerate(zip(run.outputs, run.expected_outputs, strict=True)):
        tol = tolerance(got.dtype)
        if got.shape != want.shape or not torch.allclose(got, want, **tol):
            return Verdict(
                "P4",
                False,
                f"{_where(approach, scenario, 'P4')}: at step {step} the output "
                f"{got.tolist()} differs from F.embedding(ids, merged_weight()) = "
                f"{want.tolist()}",
            )
    return Verdict("P4", True)


def raised(run: Trajectory, prop: str, approach: str, scenario: str) -> Verdict:
    """Any property of a run that raised: an error while training is a violation of it."""
    return Verdict(
        prop, False, f"{_where(approach, scenario, prop)}: it raised {run.error}", raised=run.error
    )


def inputs_untouched(run: Trajectory, approach: str, scenario: str) -> Verdict:
    """P5."""
    if run.mutated_inputs:
        return Verdict(
            "P5",
            False,
            f"{_where(approach, scenario, 'P5')}: the caller's {', '.join(run.mutated_inputs)} "
            "changed",
        )
    return Verdict("P5", True)


def resume_matches(
    resumed: Trajectory, uninterrupted: Trajectory, approach: str, scenario: str
) -> Verdict:
    """P6: identical tables after a save/load in the middle of the run."""
    for step, (got, want) in enumerate(zip(resumed.tables, uninterrupted.tables, strict=True)):
        if not torch.equal(got, want):
            row = int((got != want).any(dim=1).nonzero()[0, 0])
            return Verdict(
                "P6",
                False,
                f"{_where(approach, scenario, 'P6')}: after step {step} row {row} is "
                f"{got[row].tolist()} after save/load but {want[row].tolist()} without",
            )
    return Verdict("P6", True)
