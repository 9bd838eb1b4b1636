"""Verify every approach against every training scenario: the approach × scenario × property matrix.

For each (approach, scenario) cell, the worked example of the zero-gradient answer and then
hypothesis-drawn cases are run through the approach and the ideal; every violated property is
then shrunk by hypothesis to a minimal case, written out as Python a user can paste. Distributed
scenarios run 2 gloo ranks on loopback. Records go to ``OUT/verification.json`` (and ``.csv``) as
each cell finishes, so an interrupted run keeps what it finished and a re-run resumes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from hypothesis import assume, find
from hypothesis.errors import NoSuchExample, Unsatisfiable
from tqdm import tqdm

from bench.common.environment import environment
from bench.common.implementations import add_approaches_argument, default_names, resolve
from bench.common.results import ResultsFile
from bench.common.schema import VERIFICATION, record
from bench.verify.counterexample import distributed_reproduction, reproduction
from bench.verify.judge import judge_case
from bench.verify.sampling import SAMPLING_PROFILES, SamplingProfile, search_settings
from bench.verify.scenarios import DISTRIBUTED, SCENARIOS, Scenario
from bench.verify.strategies import probe_case, worked_example
from bench.verify.trajectory import TrainingCase
from bench.verify.truth_table import HOLDS, UNSUPPORTED, VIOLATED, expectation
from impls.base import UnsupportedOption


class _Unsupported(Exception):
    pass


REFUSAL_LIMIT = 50
"""Drawn cases an implementation may refuse before a cell with no accepted case is unsupported."""


def _record(approach: str, scenario: Scenario, prop: str, outcome: str, **fields) -> dict:
    cell = expectation(approach, scenario.name, prop)
    return record(
        VERIFICATION,
        approach=approach,
        origin=resolve(approach).origin,
        scenario=scenario.name,
        group=scenario.group,
        property=prop,
        outcome=outcome,
        expected=cell.outcome,
        explanation=cell.why,
        examples=fields.get("examples", 0),
        counterexample=fields.get("counterexample"),
        max_abs_change=fields.get("max_abs_change", 0.0),
        detail=fields.get("detail"),
        raised=fields.get("raised"),
        weight_decay=scenario.weight_decay,
        sparse_gradients=scenario.sparse_gradients,
        params=scenario.params(),
        env=environment(),
    )


@dataclass
class _Sampling:
    """What the drawn cases of one cell showed.

    Per property, the first case whose violation is the property's own (``silent``) and the
    first whose violation is an exception the implementation raised: a counterexample of the
    property's own kind says more, so it is the one shrunk when there is one.
    """

    approach: str
    scenario: Scenario
    silent: dict[str, TrainingCase] = field(default_factory=dict)
    raised: dict[str, TrainingCase] = field(default_factory=dict)
    refusals: Counter = field(default_factory=Counter)
    tried: int = 0
    worst_change: float = 0.0

    def observe(self, case: TrainingCase) -> bool:
        """Judge ``case``; False if the implementation refused it (so it does not count)."""
        if not self.scenario.usable(case):
            return True
        result = judge_case(self.approach, self.scenario, case, self.scenario.properties)
        if result.unsupported:
            self.refusals[result.unsupported] += 1
            if not self.tried and self.refusals.total() >= REFUSAL_LIMIT:
                raise _Unsupported(self.refusal_note())
            return False
        self.tried += 1
        for prop, verdict in result.verdicts.items():
            if not verdict:
                (self.raised if verdict.raised else self.silent).setdefault(prop, case)
            self.worst_change = max(self.worst_change, verdict.max_abs_change)
        return True

    def refusal_note(self) -> str | None:
        if not self.refusals:
            return None
        reason, _ = self.refusals.most_common(1)[0]
        count = self.refusals.total()
        return f"{count} drawn case(s) refused by the implementation, e.g. {reason}"


def verify_cell(approach: str, scenario_name: str, profile: SamplingProfile) -> list[dict]:
    """Sample, then shrink every violated property; one record per property.

    The cell is unsupported when the implementation refuses the simplest case the scenario
    allows, or every drawn case. A drawn case it refuses (a mask it cannot express, an option a
    case draws) is skipped and another drawn; the record's ``detail`` says how many.
    """
    scenario = SCENARIOS[scenario_name]
    props = scenario.properties
    probe = judge_case(approach, scenario, probe_case(scenario.padding), ("P1",))
    if probe.unsupported:
        return _unsupported(approach, scenario, probe.unsupported)
    sampling = _Sampling(approach, scenario)

    def never_found(case: TrainingCase) -> bool:
        assume(sampling.observe(case))
        return False

    try:
        sampling.observe(worked_example())
        for witness in scenario.witnesses():
            sampling.observe(witness)
        examples = min(profile.examples, scenario.max_examples or profile.examples)
        find(scenario.cases(), never_found, settings=search_settings(examples, shrink=False))
    except (NoSuchExample, Unsatisfiable):
        pass
    except _Unsupported as refusal:
        return _unsupported(approach, scenario, str(refusal))
    if not sampling.tried:
        return _unsupported(approach, scenario, sampling.refusal_note())

    records = []
    common = {"examples": sampling.tried, "max_abs_change": sampling.worst_change}
    for prop in props:
        first = sampling.silent.get(prop) or sampling.raised.get(prop)
        if first is None:
            records.append(
                _record(approach, scenario, prop, HOLDS, detail=sampling.refusal_note(), **common)
            )
            continue
        silent = prop in sampling.silent
        minimal = _shrink(approach, scenario, prop, profile, silent) or first
        verdict = judge_case(approach, scenario, minimal, (prop,)).verdicts[prop]
        notes = [verdict.message, sampling.refusal_note()]
        records.append(
            _record(
                approach,
                scenario,
                prop,
                VIOLATED,
                counterexample=reproduction(approach, scenario, minimal, prop),
                detail="; ".join(n for n in notes if n),
                raised=verdict.raised,
                **common,
            )
        )
    return records


def _unsupported(approach: str, scenario: Scenario, detail: str | None) -> list[dict]:
    return [_record(approach, scenario, p, UNSUPPORTED, detail=detail) for p in scenario.properties]


def _shrink(
    approach: str, scenario: Scenario, prop: str, profile: SamplingProfile, silent: bool
) -> TrainingCase | None:
    """A small case violating ``prop``; only by the property's own failure when ``silent``."""

    def violates(case: TrainingCase) -> bool:
        if not scenario.usable(case):
            return False
        result = judge_case(approach, scenario, case, (prop,))
        assume(result.unsupported is None)
        verdict = result.verdicts[prop]
        return not verdict.holds and not (silent and verdict.raised)

    try:
        return find(
            scenario.cases(),
            violates,
            settings=search_settings(profile.shrink_examples, shrink=True),
        )
    except (NoSuchExample, Unsatisfiable):
        return None


def verify_distributed(approaches: list[str], scenario_names: list[str]) -> Iterator[dict]:
    """P1 and P7 per (approach, wrapper), from 2-rank runs (one process pair for all cases)."""
    from bench.distributed.runs import frozen_row_changes, ranks_agree, run_distributed_matrix

    for name in scenario_names:
        scenario = SCENARIOS[name]
        for outcome in run_distributed_matrix(approaches, (name,), optimizer=scenario.optimizer):
            notes = "; ".join(outcome.notes) or None
            source = distributed_reproduction(outcome.approach, name, scenario.optimizer)
            if outcome.error:
                # A black box's error while training is a violation; a refusal, or any error of
                # a reference approach, means the wrapper cannot run it.
                refused = f"{UnsupportedOption.__name__}:" in outcome.error
                raised = resolve(outcome.approach).black_box and not refused
                for prop in scenario.properties:
                    yield _record(
                        outcome.approach,
                        scenario,
                        prop,
                        VIOLATED if raised else UNSUPPORTED,
                        detail=outcome.error,
                        raised=outcome.error if raised else None,
                        counterexample=source if raised else None,
                        examples=1,
                    )
                continue
            changes = frozen_row_changes(outcome)
            biggest = max(((c.after - c.before).abs().max().item() for c in changes), default=0.0)
            agree, disagreement = ranks_agree(outcome)
            verdicts = {"P1": not changes, "P7": agree and not changes}
            for prop in scenario.properties:
                held = verdicts[prop]
                yield _record(
                    outcome.approach,
                    scenario,
                    prop,
                    HOLDS if held else VIOLATED,
                    examples=1,
                    max_abs_change=biggest,
                    counterexample=None if held else source,
                    detail=notes if held else (disagreement or notes),
                )


def _cell_job(job: tuple[str, str, SamplingProfile]) -> list[dict]:
    return verify_cell(*job)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=sorted(SAMPLING_PROFILES), default="quick")
    add_approaches_argument(parser, "approaches to verify")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=sorted(SCENARIOS),
        default=None,
        help="scenarios to run (default: all that this machine can run)",
    )
    parser.add_argument("--out", default="reports", help="output directory (default: reports)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default: 2)")


def main(args: argparse.Namespace) -> int:
    profile = SAMPLING_PROFILES[args.profile]
    approaches = args.approaches or default_names()
    names = args.scenarios or list(SCENARIOS)
    for name in names:
        if reason := SCENARIOS[name].available():
            print(f"skipping scenario {name}: {reason}", file=sys.stderr)
    names = [n for n in names if not SCENARIOS[n].available()]
    results = ResultsFile(f"{args.out}/{VERIFICATION.filename}", key=VERIFICATION.key)
    done = {(r["approach"], r["scenario"]) for r in results.records}
    local = [n for n in names if n not in DISTRIBUTED]
    jobs = [(a, n, profile) for n in local for a in approaches if (a, n) not in done]
    distributed = [
        n for n in names if n in DISTRIBUTED and any((a, n) not in done for a in approaches)
    ]
    total = len(jobs) + len(distributed) * len(approaches)
    with tqdm(total=total, desc="verify", unit="cell", file=sys.stderr) as progress:
        with multiprocessing.get_context("spawn").Pool(max(1, args.jobs)) as pool:
            for records in pool.imap_unordered(_cell_job, jobs):
                for record in records:
                    results.append(record)
                progress.update()
        for record in verify_distributed(approaches, distributed):
            results.append(record)
            if record["property"] == SCENARIOS[record["scenario"]].properties[-1]:
                progress.update()
    surprises = [r for r in results.records if r["outcome"] != r["expected"]]
    surprises.sort(key=lambda r: r["outcome"] != VIOLATED)  # violations first, then refusals
    count = len(results.records)
    print(f"{count} records in {results.path}; {len(surprises)} differ from the truth table")
    for r in surprises[:20]:
        print(
            f"  {r['approach']} / {r['scenario']} / {r['property']}: "
            f"measured {r['outcome']}, expected {r['expected']}"
        )
    return 0
