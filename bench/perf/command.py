"""Benchmark every approach and peer: time, memory and the bound per case and phase.

Writes ``results.json`` / ``results.csv`` (one row per case and phase: the case, median, IQR,
rounds, tokens/s, persistent and peak bytes, the bound and the environment) and
``pytest-benchmark.json`` to ``--out``. Each case is measured in
a fresh process and written as soon as it finishes; running again with the same ``--out``
resumes: finished cases (``ok`` or ``skipped``) are kept, ``failed`` ones are tried again.
A case whose estimated memory exceeds what is available is skipped with the estimate as reason;
an approach that refuses the case's options is skipped with its refusal; anything that goes
wrong while measuring (out of memory included) is recorded as ``failed`` and the run goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from bench.common import cli
from bench.common.load import ATTEMPTS, busy_cores, is_noisy, spread
from bench.common.processes import IsolatedFailure, run_isolated
from bench.common.results import ResultsFile
from bench.common.schema import (
    FAILED,
    FINISHED,
    HEADLINE_SWEEP,
    LONG_LIVED_SWEEP,
    PRIMITIVES,
    RESULTS,
    SKIPPED,
    STEP_PHASE,
)
from bench.common.text import error_text, positive_int
from bench.implementations import (
    Implementation,
    add_approaches_argument,
    chosen,
)
from bench.perf.bound import bandwidth_copy_bytes, measure_bandwidth
from bench.perf.cases import (
    PHASES,
    PROFILES,
    SWEEPS,
    BenchmarkCase,
    BenchmarkProfile,
    long_lived_cases,
    measurement_groups,
    profile_cases,
    side_by_side_cases,
)
from bench.perf.ddp import PHASE as DDP_PHASE
from bench.perf.ddp import ddp_cases, ddp_rows
from bench.perf.longlived import long_lived_rows
from bench.perf.measure import CaseMeasurement, estimate_memory, measure_case
from bench.perf.memory import over_budget
from bench.perf.primitives import PRIMITIVE_LIST, primitive_record, primitive_rows
from bench.perf.rows import result_row, timed_fields, unmeasured_rows
from bench.perf.tables import TableFiles
from bench.perf.timing import PytestBenchmarkJson
from impls.base import UnsupportedOption

BANDWIDTH_TIMEOUT_S = 300


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        default="quick",
        choices=sorted(PROFILES),
        metavar="{quick,full}",
        help="quick (default): minutes on 2 cores; full: every sweep point, hours",
    )
    cli.add_device_argument(parser, "measure")
    add_approaches_argument(parser, "approaches to benchmark")
    parser.add_argument(
        "--sweeps",
        nargs="+",
        default=None,
        choices=SWEEPS,
        metavar="SWEEP",
        help=f"only these sweeps of the profile ({', '.join(SWEEPS)})",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="intra-op threads for every case (default: torch's, the core count); recorded in "
        "each row as threads",
    )
    parser.add_argument("--out", default="reports", help="output directory (default: reports)")
    cli.add_memory_budget_argument(parser, None, "the memory available at each case")


def main(args: argparse.Namespace) -> int:
    profile = cli.restricted(PROFILES[args.profile], args.sweeps)
    if profile is None:
        return 2
    with cli.sigterm_unwinds():
        run = run_benchmarks(
            profile,
            chosen(args.approaches),
            cli.chosen_devices(args.device),
            Path(args.out),
            cli.budget_bytes(args.memory_budget),
            args.threads,
        )
    print(run.describe())
    return 0


@dataclass
class RunSummary:
    """What a run did, case by case: ``ok``, ``skipped``, ``failed`` or ``resumed``."""

    out: Path
    outcomes: dict[str, list[str]] = field(default_factory=dict)

    def add(self, outcome: str, label: str) -> None:
        self.outcomes.setdefault(outcome, []).append(label)

    def describe(self) -> str:
        counts = Counter({k: len(v) for k, v in self.outcomes.items()})
        return (
            f"bench run: {counts['ok']} measured, {counts['resumed']} already done, "
            f"{counts['skipped']} skipped, {counts['failed']} failed -> {self.out / 'results.csv'}"
        )


def run_benchmarks(
    profile: BenchmarkProfile,
    implementations: Sequence[Implementation],
    devices: Sequence[str],
    out: Path,
    memory_budget: int | None = None,
    threads: int | None = None,
) -> RunSummary:
    """Measure every case of ``profile`` not already finished in ``out``; see the module doc."""
    with (
        ResultsFile(out / RESULTS.filename, key=RESULTS.key) as results,
        tempfile.TemporaryDirectory(prefix="rowfreeze-tables-") as folder,
    ):
        tables = TableFiles(Path(folder))
        benchmarks = PytestBenchmarkJson(out / "pytest-benchmark.json")
        finished = results.done(where=lambda r: r["status"] in FINISHED)

        def result_keys(case: BenchmarkCase) -> set:
            return {results.key_of(result_row(case, phase)) for phase in PHASES}

        by_name = {implementation.name: implementation for implementation in implementations}
        groups = measurement_groups(profile_cases(profile, list(by_name), devices))
        ddp = ddp_cases(profile, list(by_name)) if "cpu" in devices else []
        ddp_todo = [c for c in ddp if results.key_of(result_row(c, DDP_PHASE)) not in finished]
        shared = [
            *(
                (cases, profile.long_lived_rounds)
                for cases in long_lived_cases(profile, list(by_name), devices)
            ),
            *(
                (cases, profile.side_by_side_rounds)
                for cases in side_by_side_cases(profile, list(by_name), devices)
            ),
        ]
        run = RunSummary(out)
        bandwidths: dict[str, float | None] = {}  # measured when a device's first case runs
        progress = tqdm(
            total=len(groups) + len(shared) + bool(ddp) + len(headline_cases(profile, devices)),
            desc=f"bench run {profile.name}",
            unit="case",
        )
        for group in groups:
            case = group[0]
            progress.set_postfix_str(case.label(), refresh=True)
            if {key for c in group for key in result_keys(c)} <= finished:
                run.add("resumed", case.label())
            else:
                if case.device not in bandwidths:
                    bandwidths[case.device] = _bandwidth(case.device)
                measurer = CaseMeasurer(
                    by_name[case.approach], profile, bandwidths[case.device], tables, threads
                )
                rows, entries = measurer.measure(group, memory_budget)
                run.add(rows[0]["status"], case.label())
                for row in rows:
                    results.append(row)
                benchmarks.add(entries)
            progress.update()
        for cases, rounds in shared:
            progress.set_postfix_str(
                f"{cases[0].sweep} in one process {cases[0].device}", refresh=True
            )
            todo = [c for c in cases if not result_keys(c) <= finished]
            for case in cases:
                if case not in todo:
                    run.add("resumed", case.label())
            if todo:
                if todo[0].device not in bandwidths:
                    bandwidths[todo[0].device] = _bandwidth(todo[0].device)
                rows, entries = long_lived_rows(
                    implementations,
                    todo,
                    rounds,
                    bandwidth=bandwidths[todo[0].device],
                    memory_budget=memory_budget,
                    timeout_s=profile.case_timeout_s * len(todo),
                    threads=threads,
                    tables=tables,
                )
                for row in rows:
                    results.append(row)
                    if row["phase"] == STEP_PHASE:
                        run.add(row["status"], _one_process_label(row))
                benchmarks.add(entries)
            progress.update()
        for case in headline_cases(profile, devices):
            progress.set_postfix_str(f"primitives {case.device}", refresh=True)
            _measure_primitives(out, case, memory_budget, profile.case_timeout_s, run)
            progress.update()
        if ddp:
            progress.set_postfix_str(f"ddp {len(ddp_todo)} approaches", refresh=True)
            for case in ddp:
                if case not in ddp_todo:
                    run.add("resumed", case.label())
            for row in ddp_rows(
                ddp_todo, by_name, profile.ddp_steps, profile.case_timeout_s, memory_budget
            ):
                run.add(row["status"], f"ddp {row['approach']}")
                results.append(row)
            progress.update()
        progress.close()
    return run


def headline_cases(profile: BenchmarkProfile, devices: Sequence[str]) -> list[BenchmarkCase]:
    """The headline case on each device the run measures, if the run has the headline sweep:
    the shapes :mod:`bench.perf.primitives` times torch's kernels on."""
    points = [p for p in profile.points if p.sweep == HEADLINE_SWEEP and not p.sparse]
    if not points:
        return []
    return [points[0].case("", device, profile.name) for device in devices]


def _measure_primitives(
    out: Path, case: BenchmarkCase, memory_budget: int | None, timeout_s: float, run: RunSummary
) -> None:
    """Time the primitives of ``case`` into ``out``'s ``primitives.json`` unless a finished
    record of them is there already (a resumed run keeps them)."""
    with ResultsFile(out / PRIMITIVES.filename, key=PRIMITIVES.key) as primitives:
        done = primitives.done(where=lambda r: r["status"] in FINISHED)
        label = f"primitives {case.device}"
        rows = [primitive_record(case, p) for p in PRIMITIVE_LIST]
        if {primitives.key_of(row) for row in rows} <= done:
            run.add("resumed", label)
            return
        rows = primitive_rows(case, memory_budget, timeout_s)
        primitives.extend(rows)
        run.add(rows[0]["status"], label)


def _one_process_label(row: dict) -> str:
    """``long-lived fused``; a side-by-side row adds its sweep and how it ran (eager or the
    compile mode, and a given gradient if it had one)."""
    label = f"long-lived {row['approach']}"
    if row["sweep"] == LONG_LIVED_SWEEP:
        return label
    return f"{label} {row['sweep']} {row['compile'] or 'eager'}" + (
        f" {row['loss']}" if row["loss"] else ""
    )


def _bandwidth(device: str) -> float | None:
    try:
        return run_isolated(
            measure_bandwidth,
            device,
            bandwidth_copy_bytes(device),
            timeout_s=BANDWIDTH_TIMEOUT_S,
        )
    except IsolatedFailure as failure:
        print(f"bench run: bandwidth on {device} not measured: {failure}", file=sys.stderr)
        return None


@dataclass
class CaseMeasurer:
    """Measures one group of identical cases (one point shared by several sweeps)."""

    implementation: Implementation
    profile: BenchmarkProfile
    bandwidth: float | None
    tables: TableFiles
    threads: int | None = None

    def measure(self, group: Sequence[BenchmarkCase], memory_budget: int | None):
        """Rows for every case of ``group`` and phase, and the pytest-benchmark entries."""
        case = group[0]
        try:
            estimate = estimate_memory(self.implementation, case)
        except UnsupportedOption as refusal:
            return self.rows(group, SKIPPED, str(refusal)), []
        except Exception as error:
            reason = f"while estimating memory: {error_text(error)}"
            return self.rows(group, FAILED, reason), []
        reason = over_budget(estimate.total_bytes, memory_budget, case.device)
        if reason is not None:
            return self.rows(group, SKIPPED, reason, estimated_bytes=estimate.total_bytes), []
        try:
            self.tables.ensure(case)
            measured = self.quietest_measurement(case)
        except Exception as error:  # IsolatedFailure, or the process could not even start
            reason = str(error) if isinstance(error, IsolatedFailure) else repr(error)
            return self.rows(group, FAILED, reason, estimated_bytes=estimate.total_bytes), []
        common = measured.row_fields(estimate.total_bytes)
        rows, entries = [], []
        for phase, entry in measured.benchmarks.items():
            entry["extra_info"]["sweeps"] = [member.sweep for member in group]
            entries.append(entry)
            bandwidth = measured.bandwidth_bytes_per_s or self.bandwidth
            timed = timed_fields(case, phase, entry, bandwidth, measured.load_before)
            rows += [result_row(member, phase, **common, **timed) for member in group]
        return rows, entries

    def quietest_measurement(self, case: BenchmarkCase) -> CaseMeasurement:
        """:func:`measure_case` in a fresh process, again while its full step comes out noisy
        (at most ``ATTEMPTS`` times; the step is what the answer ranks); the attempt with the
        smallest step spread, with the load before it. Each row is then judged on its own
        phase (:func:`bench.common.load.is_noisy`)."""
        attempts = []
        for _ in range(ATTEMPTS):
            load = busy_cores()
            measured = run_isolated(
                measure_case,
                self.implementation,
                case,
                self.profile.rounds,
                self.threads,
                self.tables,
                timeout_s=self.profile.case_timeout_s,
            )
            stats = measured.benchmarks[STEP_PHASE]["stats"]
            step_spread = spread(stats["median"], stats["iqr"])
            noisy = is_noisy(load, [step_spread])
            attempts.append(
                (noisy, step_spread or 0.0, dataclasses.replace(measured, load_before=load))
            )
            if not noisy:
                break
        quietest = min(attempts, key=lambda attempt: attempt[:2])[2]
        return dataclasses.replace(quietest, attempts=len(attempts))

    def rows(
        self, group: Sequence[BenchmarkCase], status: str, reason: str, **fields
    ) -> list[dict]:
        """Unmeasured rows of ``group``."""
        return unmeasured_rows(group, status, reason, self.bandwidth, **fields)
