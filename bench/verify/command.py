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
from collections.abc import Iterator

from hypothesis import find
from hypothesis.errors import NoSuchExample
from tqdm import tqdm

import impls
from bench.common.environment import environment
from bench.common.results import ResultsFile
from bench.common.schema import VERIFICATION, record
from bench.verify.counterexample import distributed_reproduction, reproduction
from bench.verify.judge import judge_case
from bench.verify.sampling import SAMPLING_PROFILES, SamplingProfile, search_settings
from bench.verify.scenarios import DISTRIBUTED, SCENARIOS, Scenario
from bench.verify.strategies import worked_example
from bench.verify.trajectory import TrainingCase
from bench.verify.truth_table import HOLDS, UNSUPPORTED, VIOLATED, expectation


class _Unsupported(Exception):
    pass


def _record(approach: str, scenario: Scenario, prop: str, outcome: str, **fields) -> dict:
    cell = expectation(approach, scenario.name, prop)
    return record(
        VERIFICATION,
        approach=approach,
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
        weight_decay=scenario.weight_decay,
        sparse_gradients=scenario.sparse_gradients,
        params=scenario.params(),
        env=environment(),
    )


def verify_cell(approach: str, scenario_name: str, profile: SamplingProfile) -> list[dict]:
    """Sample, then shrink every violated property; one record per property."""
    scenario = SCENARIOS[scenario_name]
    props = scenario.properties
    first_violation: dict[str, TrainingCase] = {}
    worst = {"change": 0.0, "tried": 0}

    def observe(case: TrainingCase) -> bool:
        if not scenario.usable(case):
            return False
        result = judge_case(approach, scenario, case, props)
        if result.unsupported:
            raise _Unsupported(result.unsupported)
        worst["tried"] += 1
        for prop, verdict in result.verdicts.items():
            if not verdict:
                first_violation.setdefault(prop, case)
            worst["change"] = max(worst["change"], verdict.max_abs_change)
        return False

    try:
        observe(worked_example())
        examples = min(profile.examples, scenario.max_examples or profile.examples)
        find(scenario.cases(), observe, settings=search_settings(examples, shrink=False))
    except NoSuchExample:
        pass
    except _Unsupported as refusal:
        return [_record(approach, scenario, p, UNSUPPORTED, detail=str(refusal)) for p in props]

    records = []
    for prop in props:
        if prop not in first_violation:
            records.append(
                _record(
                    approach,
                    scenario,
                    prop,
                    HOLDS,
                    examples=worst["tried"],
                    max_abs_change=worst["change"],
                )
            )
            continue
        minimal = _shrink(approach, scenario, prop, profile) or first_violation[prop]
        records.append(
            _record(
                approach,
                scenario,
                prop,
                VIOLATED,
                examples=worst["tried"],
                max_abs_change=worst["change"],
                counterexample=reproduction(approach, scenario, minimal, prop),
            )
        )
    return records


def _shrink(
    approach: str, scenario: Scenario, prop: str, profile: SamplingProfile
) -> TrainingCase | None:
    def violates(case: TrainingCase) -> bool:
        if not scenario.usable(case):
            return False
        return not judge_case(approach, scenario, case, (prop,)).verdicts[prop].holds

    try:
        return find(
            scenario.cases(),
            violates,
            settings=search_settings(profile.shrink_examples, shrink=True),
        )
    except NoSuchExample:
        return None


def verify_distributed(approaches: list[str], scenario_names: list[str]) -> Iterator[dict]:
    """P1 and P7 per (approach, wrapper), from 2-rank runs (one process pair for all cases)."""
    from bench.distributed.runs import frozen_row_changes, ranks_agree, run_distributed_matrix

    for name in scenario_names:
        scenario = SCENARIOS[name]
        for outcome in run_distributed_matrix(approaches, (name,), optimizer=scenario.optimizer):
            notes = "; ".join(outcome.notes) or None
            if outcome.error:
                for prop in scenario.properties:
                    yield _record(
                        outcome.approach,
                        scenario,
                        prop,
                        UNSUPPORTED,
                        detail=outcome.error,
                        examples=1,
                    )
                continue
            changes = frozen_row_changes(outcome)
            biggest = max(((c.after - c.before).abs().max().item() for c in changes), default=0.0)
            agree, disagreement = ranks_agree(outcome)
            source = distributed_reproduction(outcome.approach, name, scenario.optimizer)
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
    parser.add_argument(
        "--approaches",
        nargs="+",
        choices=sorted(impls.APPROACHES),
        default=None,
        help="approaches to verify (default: all registered)",
    )
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
    approaches = args.approaches or list(impls.APPROACHES)
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
    count = len(results.records)
    print(f"{count} records in {results.path}; {len(surprises)} differ from the truth table")
    for r in surprises[:20]:
        print(
            f"  {r['approach']} / {r['scenario']} / {r['property']}: "
            f"measured {r['outcome']}, expected {r['expected']}"
        )
    return 0
