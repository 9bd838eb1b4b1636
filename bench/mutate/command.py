"""Measure the verification's own strength: faulty variants must be killed, correct ones hold.

Every faulty variant of :mod:`bench.mutate.faulty` and every correct implementation of
:mod:`bench.mutate.correct` is named by reference and run through the single-process matrix
(``bench.verify.command.verify_cell``, the cells ``python -m bench verify`` runs, same sampling
profile). A faulty variant runs scenario by scenario, in the matrix's order, until a cell is
violated: it is *killed* there, and the record names that cell, its detail and its shrunk
counterexample. One that holds every cell *survives*: the record says why (a scenario this
machine cannot run, or a blind spot of the suite). A correct implementation runs every cell and
must violate none (a violation is a *false alarm*). Records are written to ``mutation.json`` as
each implementation finishes; a re-run skips those already there. Exit status 1 on a false alarm
or a survivor with no reason, 0 otherwise.
"""

from __future__ import annotations

import argparse
import inspect
import multiprocessing
import sys
from collections import Counter
from dataclasses import dataclass

from tqdm import tqdm

from bench.common.environment import environment
from bench.common.results import ResultsFile
from bench.common.schema import (
    CORRECT,
    FALSE_ALARM,
    FAULTY,
    HOLDS,
    KILLED,
    MUTATION,
    SURVIVED,
    UNSUPPORTED,
    VIOLATED,
    record,
)
from bench.implementations import Implementation, resolve
from bench.mutate.correct import CORRECT as CORRECT_FACTORIES
from bench.mutate.faulty import FAULTY as FAULTY_CLASSES
from bench.report.strength import BLIND_SPOT, Strength
from bench.verify.command import verify_cell
from bench.verify.sampling import SAMPLING_PROFILES, SamplingProfile
from bench.verify.scenarios import DISTRIBUTED, SCENARIOS


@dataclass(frozen=True)
class Candidate:
    """One implementation to run: its reference, role, and for a faulty one what is wrong."""

    reference: str
    role: str
    kind: str | None
    bug: str
    survives_where: str | None = None

    @property
    def implementation(self) -> Implementation:
        return resolve(self.reference)


def _first_paragraph(obj: object) -> str:
    return " ".join(inspect.getdoc(obj).split("\n\n")[0].split())


def candidates() -> list[Candidate]:
    """Every faulty variant, then every correct implementation."""
    faulty = [
        Candidate(
            f"{cls.__module__}:{cls.__qualname__}",
            FAULTY,
            cls.kind,
            _first_paragraph(cls),
            cls.survives_where,
        )
        for cls in FAULTY_CLASSES
    ]
    correct = [
        Candidate(f"{f.__module__}:{f.__qualname__}", CORRECT, None, _first_paragraph(f))
        for f in CORRECT_FACTORIES
    ]
    return faulty + correct


def matrix_scenarios() -> list[str]:
    """The single-process scenarios this machine can run, in the matrix's order."""
    return [n for n, s in SCENARIOS.items() if n not in DISTRIBUTED and not s.available()]


def survival_reason(candidate: Candidate) -> str:
    """Why a faulty variant that held every cell run here was not seen."""
    if candidate.survives_where:
        blocked = {
            s.name: s.available()
            for s in SCENARIOS.values()
            if s.group == candidate.survives_where and s.available()
        }
        if blocked:
            names = ", ".join(f"{n} ({why})" for n, why in blocked.items())
            group = candidate.survives_where
            return f"its bug is on a path only the {group} scenarios take: {names}"
    return BLIND_SPOT


def judge(job: tuple[Candidate, SamplingProfile, tuple[str, ...]]) -> dict:
    """Run one candidate through the matrix; its mutation record."""
    candidate, profile, scenarios = job
    implementation = candidate.implementation
    violated: list[dict] = []
    outcomes: Counter = Counter()
    for name in scenarios:
        records = verify_cell(implementation, name, profile)
        outcomes.update(r["outcome"] for r in records)
        violated += [r for r in records if r["outcome"] == VIOLATED]
        if violated and candidate.role == FAULTY:
            break
    first = violated[0] if violated else {}
    if candidate.role == FAULTY:
        outcome = KILLED if violated else SURVIVED
    else:
        outcome = FALSE_ALARM if violated else HOLDS
    return record(
        MUTATION,
        approach=candidate.reference,
        role=candidate.role,
        kind=candidate.kind,
        bug=candidate.bug,
        outcome=outcome,
        scenario=first.get("scenario"),
        property=first.get("property"),
        detail=first.get("detail"),
        counterexample=first.get("counterexample"),
        cells=outcomes.total() - outcomes[UNSUPPORTED],
        refused_cells=outcomes[UNSUPPORTED],
        violated_cells=[f"{r['scenario']}/{r['property']}" for r in violated],
        survives_because=survival_reason(candidate) if outcome == SURVIVED else None,
        profile=profile_name(profile),
        env=environment(),
    )


def profile_name(profile: SamplingProfile) -> str:
    return next(name for name, p in SAMPLING_PROFILES.items() if p == profile)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=sorted(SAMPLING_PROFILES), default="quick")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        default=None,
        help="run only these variants (class or factory names, e.g. ShiftedMask two_lookups)",
    )
    parser.add_argument("--out", default="reports", help="output directory (default: reports)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default: 2)")


def main(args: argparse.Namespace) -> int:
    profile = SAMPLING_PROFILES[args.profile]
    everything = candidates()
    if args.only:
        known = {c.reference.rpartition(":")[2]: c for c in everything}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            print(
                f"--only: unknown variants {unknown}; expected some of {sorted(known)}",
                file=sys.stderr,
            )
            return 2
        everything = [known[n] for n in args.only]
    with ResultsFile(f"{args.out}/{MUTATION.filename}", key=MUTATION.key) as results:
        done = {approach for (approach,) in results.done(("approach",))}
        scenarios = tuple(matrix_scenarios())
        jobs = [(c, profile, scenarios) for c in everything if c.reference not in done]
        pool = multiprocessing.get_context("spawn").Pool(max(1, args.jobs))
        bar = tqdm(total=len(jobs), desc="mutate", unit="implementation", file=sys.stderr)
        with pool, bar:
            for finished in pool.imap_unordered(judge, jobs):
                results.append(finished)
                bar.update()
    strength = Strength.of(results.records)
    print(
        f"{strength.killed} of {len(strength.faulty)} faulty variants killed "
        f"({strength.kill_rate:.0%}); {len(strength.false_alarms)} false alarms on "
        f"{len(strength.correct)} correct implementations; results in {results.path}"
    )
    for variant in strength.survivors:
        print(f"  survived: {variant.name}: {variant.survives_because}")
    for variant in strength.false_alarms:
        print(f"  false alarm: {variant.name}: {variant.cell}: {variant.detail}")
    return 1 if strength.false_alarms or strength.blind_spots else 0
