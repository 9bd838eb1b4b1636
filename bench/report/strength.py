"""How strong the verification is, from ``mutation.json``: the kill rate, every faulty variant
with the cell that killed it, every survivor with its reason, and the correct implementations'
false alarms. Torch-free, like the rest of the report; ``python -m bench mutate`` prints its
summary through :class:`Strength` too, so the command and the page count the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.common.schema import CORRECT, FALSE_ALARM, FAULTY, KILLED, SURVIVED
from bench.report.matrix import text_of

BLIND_SPOT = "no cell of the matrix shows it: a blind spot of the suite"
"""The reason a survivor gets when nothing about this machine explains it."""
TARGET_KILL_RATE = 0.9
"""The share of faulty variants the matrix is meant to kill."""


@dataclass(frozen=True)
class Variant:
    """One row of the section's tables."""

    name: str
    kind: str
    bug: str
    outcome: str
    cell: str
    detail: str
    cells: int
    refused_cells: int
    survives_because: str


@dataclass(frozen=True)
class Strength:
    """What a set of mutation records says."""

    faulty: list[Variant]
    correct: list[Variant]

    @property
    def killed(self) -> int:
        return sum(v.outcome == KILLED for v in self.faulty)

    @property
    def kill_rate(self) -> float:
        return self.killed / len(self.faulty) if self.faulty else 0.0

    @property
    def survivors(self) -> list[Variant]:
        return [v for v in self.faulty if v.outcome == SURVIVED]

    @property
    def blind_spots(self) -> list[Variant]:
        """Survivors whose bug the matrix should have seen on this machine."""
        return [v for v in self.survivors if v.survives_because == BLIND_SPOT]

    @property
    def false_alarms(self) -> list[Variant]:
        return [v for v in self.correct if v.outcome == FALSE_ALARM]

    @property
    def meets_target(self) -> bool:
        return self.kill_rate >= TARGET_KILL_RATE and not self.false_alarms

    @classmethod
    def of(cls, records: Sequence[Mapping]) -> Strength:
        variants = {FAULTY: [], CORRECT: []}
        for r in records:
            scenario = text_of(r.get("scenario"))
            variants[r["role"]].append(
                Variant(
                    name=str(r["approach"]).rpartition(":")[2],
                    kind=text_of(r.get("kind")),
                    bug=text_of(r.get("bug")),
                    outcome=r["outcome"],
                    cell=f"{r['property']} in {scenario}" if scenario else "",
                    detail=text_of(r.get("detail")),
                    cells=int(r.get("cells") or 0),
                    refused_cells=int(r.get("refused_cells") or 0),
                    survives_because=text_of(r.get("survives_because")),
                )
            )
        return cls(variants[FAULTY], variants[CORRECT])
