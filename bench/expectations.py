"""The truth table: which (approach, scenario, property) cells hold, break, or cannot run — and why.

Every cell holds unless a rule below says otherwise. Each rule carries the one sentence that
explains it; the tests assert every cell both ways (a "holds" cell on every example, a "violated"
cell by a concrete example) and ``python -m bench verify`` writes the sentence beside the measured
outcome, so the report can show the reason next to the evidence.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

HOLDS, VIOLATED, UNSUPPORTED = "holds", "violated", "unsupported"

ANY = None  # a rule field that matches everything

WEIGHT_DECAY = frozenset({"sgd_weight_decay", "adam_weight_decay", "adamw"})
FACTORED = frozenset({"adafactor"})
SPARSE = frozenset({"sparse_adam"})

ZERO_GRADIENT = frozenset({"grad_zero", "grad_hook", "detach_mask"})
WHOLE_TABLE_IN_OPTIMIZER = ZERO_GRADIENT | {"parametrize", "restore", "full"}
DENSE_REBUILD = frozenset({"concat", "index_copy", "parametrize", "detach_mask"})


@dataclass(frozen=True)
class Rule:
    approaches: Collection[str] | None
    scenarios: Collection[str] | None
    properties: Collection[str] | None
    outcome: str
    why: str

    def matches(self, approach: str, scenario: str, prop: str) -> bool:
        return all(
            field is None or value in field
            for field, value in (
                (self.approaches, approach),
                (self.scenarios, scenario),
                (self.properties, prop),
            )
        )


@dataclass(frozen=True)
class Expectation:
    outcome: str
    why: str = ""


RULES: tuple[Rule, ...] = (
    Rule(
        DENSE_REBUILD | {"grad_zero"},
        SPARSE,
        ANY,
        UNSUPPORTED,
        "sparse=True is refused: a sparse gradient cannot flow back through a table rebuilt "
        "every forward, nor be index-assigned as the zero-gradient answer needs",
    ),
    Rule(
        {"full"},
        ANY,
        {"P1"},
        VIOLATED,
        "control: every row is a parameter, so the frozen rows train like the others",
    ),
    Rule(
        {"freeze_all"},
        ANY,
        {"P2", "P3"},
        VIOLATED,
        "control: no row requires a gradient, so the new rows never move",
    ),
    Rule(
        ZERO_GRADIENT,
        WEIGHT_DECAY,
        {"P1"},
        VIOLATED,
        "a zero gradient is not 'no update': weight decay still shrinks the frozen rows "
        "(AdamW decays by lr·wd·w every step, SGD/Adam add wd·w to the zero gradient)",
    ),
    Rule(
        WHOLE_TABLE_IN_OPTIMIZER,
        FACTORED,
        {"P3"},
        VIOLATED,
        "Adafactor factors the second moment of the whole V×D parameter into row and column "
        "means, so the frozen rows' gradients (zero or not) change every trainable row's step",
    ),
)


def expectation(approach: str, scenario: str, prop: str) -> Expectation:
    """The recorded outcome of one cell (the first matching rule, else ``holds``)."""
    for rule in RULES:
        if rule.matches(approach, scenario, prop):
            return Expectation(rule.outcome, rule.why)
    return Expectation(HOLDS)

