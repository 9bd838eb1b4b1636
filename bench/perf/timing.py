"""pytest-benchmark as the timer, driven directly, and its JSON file.

Why drive ``BenchmarkFixture`` instead of generating a pytest session: every case runs in a fresh
process (for an honest peak memory), and a pytest session per case would cost seconds of
collection; the fixture is the same code ``benchmark.pedantic`` runs under pytest, so the
statistics (median, IQR, rounds) and the JSON entries are pytest-benchmark's own.

Rounds come from one probe call: a phase gets as many rounds as fit in the policy's time budget,
clamped to ``[min_rounds, max_rounds]``, so a one-second step is timed a few times and a
millisecond lookup many times. The probe also does the first-touch work (optimizer state, page
faults) that no round should see; ``warmup_rounds`` more untimed calls follow inside ``pedantic``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pytest_benchmark import __version__ as pytest_benchmark_version
from pytest_benchmark.fixture import BenchmarkFixture
from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
from pytest_benchmark.utils import NameWrapper, get_commit_info

from bench.common.results import write_atomic
from bench.common.stats import time_summary


@dataclass(frozen=True)
class RoundsPolicy:
    phase_budget_s: float
    min_rounds: int
    max_rounds: int
    warmup_rounds: int

    def __post_init__(self):
        if not 1 <= self.min_rounds <= self.max_rounds:
            raise ValueError(
                f"min_rounds, max_rounds: expected 1 <= min_rounds <= max_rounds, got "
                f"{self.min_rounds}, {self.max_rounds}"
            )

    def rounds_for(self, probe_s: float) -> int:
        """Rounds that fit the budget when one call takes ``probe_s`` seconds."""
        fitting = int(self.phase_budget_s / probe_s) if probe_s > 0 else self.max_rounds
        return max(self.min_rounds, min(self.max_rounds, fitting))


@dataclass(frozen=True)
class _Node:
    """The two attributes of a pytest item that ``BenchmarkFixture`` reads."""

    name: str
    nodeid: str


def time_phase(
    target: Callable[[], object],
    *,
    name: str,
    group: str,
    extra_info: dict,
    policy: RoundsPolicy,
    setup: Callable[[], None] | None = None,
    synchronize: Callable[[], None] | None = None,
) -> dict:
    """Time ``target`` with ``BenchmarkFixture.pedantic``; pytest-benchmark's JSON entry.

    ``setup`` runs untimed before every call (e.g. ``zero_grad``); ``synchronize`` (e.g.
    ``torch.cuda.synchronize``) runs inside the timed call so queued GPU work is counted.
    """

    def timed() -> None:
        target()
        if synchronize is not None:
            synchronize()

    if setup is not None:
        setup()
    start = time.perf_counter()
    timed()
    rounds = policy.rounds_for(time.perf_counter() - start)

    collected = []
    fixture = BenchmarkFixture(
        _Node(name, f"bench/perf/command.py::{name}"),
        disable_gc=False,
        timer=NameWrapper(time.perf_counter),
        min_rounds=rounds,
        min_time=0,
        max_time=policy.phase_budget_s,
        precision=None,
        confidence=None,
        warmup=False,
        warmup_iterations=0,
        calibration_precision=10,
        add_stats=collected.append,
        logger=None,
        warner=None,
        disabled=False,
        cprofile=False,
        cprofile_loops=None,
        cprofile_dump=False,
        group=group,
    )
    fixture.extra_info.update(extra_info)
    fixture.pedantic(timed, setup=setup, rounds=rounds, warmup_rounds=policy.warmup_rounds)
    return collected[0].as_dict(include_data=True)


def summary(entry: dict) -> dict:
    """Median, IQR and rounds of a pytest-benchmark entry, as a result row names them."""
    return time_summary(entry["stats"]["data"])


class PytestBenchmarkJson:
    """A file in ``pytest --benchmark-json`` layout, rewritten after every case.

    Entries are keyed by ``fullname``; a resumed run loads the file and replaces or adds entries,
    so the file always matches the result rows beside it.
    """

    def __init__(self, path: str | Path, resume: bool = True):
        self.path = Path(path)
        self.entries: dict[str, dict] = {}
        if resume and self.path.exists():
            self.entries = {
                b["fullname"]: b for b in json.loads(self.path.read_text())["benchmarks"]
            }
        self.header = {
            "machine_info": pytest_benchmark_generate_machine_info(),
            "commit_info": get_commit_info(),
        }

    def add(self, entries: Iterable[dict]) -> None:
        for entry in entries:
            self.entries[entry["fullname"]] = entry
        document = {
            **self.header,
            "benchmarks": list(self.entries.values()),
            "datetime": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "version": pytest_benchmark_version,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(document, indent=1, default=str))
