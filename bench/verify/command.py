"""Verify every approach against every training scenario: the approach × scenario × property matrix.

For each (approach, scenario) cell, the scenario's fixed witnesses (the worked example of the
zero-gradient answer among them) and then hypothesis-drawn cases are run through the approach
and the ideal; every violated property is then shrunk by hypothesis to a minimal case, written
out as Python a user can paste. Distributed scenarios run 2 gloo ranks on loopback. Records go
to ``OUT/verification.json`` (and ``.csv``) as each cell finishes, so an interrupted run keeps
what it finished and a re-run resumes.
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
from bench.common.results import ResultsFile
from bench.common.schema import (
    HOLDS,
    NOT_JUDGED,
    RUNS,
    UNSUPPORTED,
    VERIFICATION,
    VIOLATED,
    record,
)
from bench.implementations import (
    Implementation,
    add_approaches_argument,
    chosen,
)
from bench.verify.counterexample import distributed_reproduction, reproduction
from bench.verify.judge import judge_case
from bench.verify.sampling import SAMPLING_PROFILES, SamplingProfile, search_settings
from bench.verify.scenarios import DISTRIBUTED, SCENARIOS, Scenario
from bench.verify.strategies import probe_case
from bench.verify.trajectory import TrainingCase
from bench.verify.truth_table import expectation
from impls.base import UnsupportedOption


class _Unsupported(Exception):
    pass


REFUSAL_LIMIT = 50
"""Drawn cases an implementation may refuse before a cell with no accepted case is unsupported."""


def _record(
    implementation: Implementation, scenario: Scenario, prop: str, outcome: str, **fields
) -> dict:
    cell = expectation(implementation.name, scenario.name, prop)
    return record(
        VERIFICATION,
        approach=implementation.name,
        origin=implementation.origin,
        scenario=scenario.name,
        group=scenario.group,
        property=prop,
        outcome=outcome,
        expected=cell.outcome,
        explanation=cell.why,
        examples=fields.pop("examples", 0),
        max_abs_change=fields.pop("max_abs_change", 0.0),
        weight_decay=scenario.weight_decay,
        sparse_gradients=scenario.sparse_gradients,
        params=scenario.params(),
        env=environment(),
        **fields,
    )


@dataclass
class _Sampling:
    """What the drawn cases of one cell showed: per property, how many cases judged it and the
    first that violated it; how many cases the implementation refused or raised on."""

    implementation: Implementation
    scenario: Scenario
    violations: dict[str, TrainingCase] = field(default_factory=dict)
    judged: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)
    tried: int = 0
    worst_change: float = 0.0

    def observe(self, case: TrainingCase) -> bool:
        """Judge ``case``; False if the implementation refused it (so it does not count)."""
        if not self.scenario.usable(case):
            return True
        result = judge_case(self.implementation, self.scenario, case, self.scenario.properties)
        if result.unsupported:
            self.refusals[result.unsupported] += 1
            if not self.tried and self.refusals.total() >= REFUSAL_LIMIT:
                raise _Unsupported(self.refusal_note())
            return False
        self.tried += 1
        for prop, verdict in result.verdicts.items():
            self.judged[prop] += 1
            if not verdict:
                self.violations.setdefault(prop, case)
            self.worst_change = max(self.worst_change, verdict.max_abs_change)
        return True

    def outcome(self, prop: str) -> str:
        if prop in self.violations:
            return VIOLATED
        return HOLDS if self.judged[prop] else NOT_JUDGED

    def note(self, prop: str) -> str | None:
        """How many cases the verdict rests on where that is not every case tried, and how many
        the implementation refused."""
        notes = []
        if prop != RUNS and self.judged[prop] < self.tried:
            notes.append(
                f"judged on {self.judged[prop]} of {self.tried} cases; the others raised "
                f"(see {RUNS})"
            )
        notes.append(self.refusal_note())
        return "; ".join(n for n in notes if n) or None

    def refusal_note(self) -> str | None:
        if not self.refusals:
            return None
        reason, _ = self.refusals.most_common(1)[0]
        count = self.refusals.total()
        return f"{count} drawn case(s) refused by the implementation, e.g. {reason}"


def verify_cell(
    implementation: Implementation, scenario_name: str, profile: SamplingProfile
) -> list[dict]:
    """Sample, then shrink every violated property; one record per property.

    The cell is unsupported when the implementation refuses the simplest case the scenario
    allows, or every drawn case. A drawn case it refuses (a mask it cannot express, an option a
    case draws) is skipped and another drawn; the record's ``detail`` says how many. A property
    no case could be judged on (every case raised: P0) is ``not judged``.
    """
    scenario = SCENARIOS[scenario_name]
    probe = judge_case(implementation, scenario, probe_case(scenario.padding), (RUNS,))
    if probe.unsupported:
        return _unsupported(implementation, scenario, probe.unsupported)
    sampling = _Sampling(implementation, scenario)

    def never_found(case: TrainingCase) -> bool:
        assume(sampling.observe(case))
        return False

    try:
        for witness in scenario.witnesses():
            sampling.observe(witness)
        examples = min(profile.examples, scenario.max_examples or profile.examples)
        find(scenario.cases(), never_found, settings=search_settings(examples, shrink=False))
    except (NoSuchExample, Unsatisfiable):
        pass
    except _Unsupported as refusal:
        return _unsupported(implementation, scenario, str(refusal))
    if not sampling.tried:
        return _unsupported(implementation, scenario, sampling.refusal_note())

    records = []
    for prop in scenario.properties:
        outcome = sampling.outcome(prop)
        common = {
            "examples": sampling.judged[prop],
            "max_abs_change": sampling.worst_change,
            "detail": sampling.note(prop),
        }
        if outcome != VIOLATED:
            records.append(_record(implementation, scenario, prop, outcome, **common))
            continue
        minimal = _shrink(implementation, scenario, prop, profile) or sampling.violations[prop]
        verdict = judge_case(implementation, scenario, minimal, (prop,)).verdicts[prop]
        notes = [verdict.message, common.pop("detail")]
        records.append(
            _record(
                implementation,
                scenario,
                prop,
                VIOLATED,
                counterexample=reproduction(implementation, scenario, minimal, prop),
                detail="; ".join(n for n in notes if n),
                raised=verdict.raised,
                **common,
            )
        )
    return records


def _unsupported(implementation: Implementation, scenario: Scenario, detail: str | None):
    return [
        _record(implementation, scenario, p, UNSUPPORTED, detail=detail)
        for p in scenario.properties
    ]


def _shrink(
    implementation: Implementation, scenario: Scenario, prop: str, profile: SamplingProfile
) -> TrainingCase | None:
    """A small case violating ``prop``."""

    def violates(case: TrainingCase) -> bool:
        if not scenario.usable(case):
            return False
        result = judge_case(implementation, scenario, case, (prop,))
        assume(result.unsupported is None)
        verdict = result.verdicts.get(prop)
        return verdict is not None and not verdict.holds

    try:
        return find(
            scenario.cases(),
            violates,
            settings=search_settings(profile.shrink_examples, shrink=True),
        )
    except (NoSuchExample, Unsatisfiable):
        return None


def verify_distributed(
    implementations: list[Implementation], scenario_names: list[str]
) -> Iterator[dict]:
    """P0, P1 and P7 per (implementation, wrapper), from 2-rank runs (one process pair for all
    cases)."""
    from bench.distributed.runs import frozen_row_changes, ranks_agree, run_distributed_matrix

    by_name = {i.name: i for i in implementations}
    for name in scenario_names:
        scenario = SCENARIOS[name]
        for outcome in run_distributed_matrix(
            implementations, (name,), optimizer=scenario.optimizer
        ):
            implementation = by_name[outcome.approach]
            notes = "; ".join(outcome.notes) or None
            source = distributed_reproduction(outcome.approach, name, scenario.optimizer)
            if outcome.error:
                # A black box's error while training is P0's violation (the other properties
                # are not judged); a refusal, or any error of a reference approach, means the
                # wrapper cannot run it.
                refused = f"{UnsupportedOption.__name__}:" in outcome.error
                if refused or not implementation.black_box:
                    for prop in scenario.properties:
                        yield _record(
                            implementation, scenario, prop, UNSUPPORTED, detail=outcome.error
                        )
                    continue
                for prop in scenario.properties:
                    crashed = prop == RUNS
                    yield _record(
                        implementation,
                        scenario,
                        prop,
                        VIOLATED if crashed else NOT_JUDGED,
                        detail=outcome.error,
                        raised=outcome.error if crashed else None,
                        counterexample=source if crashed else None,
                        examples=int(crashed),
                    )
                continue
            changes = frozen_row_changes(outcome)
            biggest = max(((c.after - c.before).abs().max().item() for c in changes), default=0.0)
            agree, disagreement = ranks_agree(outcome)
            verdicts = {RUNS: True, "P1": not changes, "P7": agree and not changes}
            for prop in scenario.properties:
                held = verdicts[prop]
                yield _record(
                    implementation,
                    scenario,
                    prop,
                    HOLDS if held else VIOLATED,
                    examples=1,
                    max_abs_change=biggest,
                    counterexample=None if held else source,
                    detail=notes if held else (disagreement or notes),
                )


def _cell_job(job: tuple[Implementation, str, SamplingProfile]) -> list[dict]:
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


def _verify_unfinished(
    implementations: list[Implementation],
    names: list[str],
    profile: SamplingProfile,
    jobs: int,
    results: ResultsFile,
) -> None:
    """Every (implementation, scenario) cell ``results`` does not hold yet, written as each
    cell finishes."""
    done = results.done(("approach", "scenario"))
    local = [n for n in names if n not in DISTRIBUTED]
    cells = [(i, n, profile) for n in local for i in implementations if (i.name, n) not in done]
    unfinished = {n for n in names for i in implementations if (i.name, n) not in done}
    distributed = [n for n in names if n in DISTRIBUTED and n in unfinished]
    total = len(cells) + len(distributed) * len(implementations)
    with tqdm(total=total, desc="verify", unit="cell", file=sys.stderr) as progress:
        with multiprocessing.get_context("spawn").Pool(max(1, jobs)) as pool:
            for records in pool.imap_unordered(_cell_job, cells):
                results.extend(records)
                progress.update()
        cell: list[dict] = []
        for record in verify_distributed(implementations, distributed):
            cell.append(record)
            if record["property"] == SCENARIOS[record["scenario"]].properties[-1]:
                results.extend(cell)
                cell = []
                progress.update()


def main(args: argparse.Namespace) -> int:
    profile = SAMPLING_PROFILES[args.profile]
    implementations = chosen(args.approaches)
    names = args.scenarios or list(SCENARIOS)
    for name in names:
        if reason := SCENARIOS[name].available():
            print(f"skipping scenario {name}: {reason}", file=sys.stderr)
    names = [n for n in names if not SCENARIOS[n].available()]
    with ResultsFile(f"{args.out}/{VERIFICATION.filename}", key=VERIFICATION.key) as results:
        _verify_unfinished(implementations, names, profile, args.jobs, results)
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
