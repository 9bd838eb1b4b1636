"""pytest-benchmark as the timer, driven directly, and its JSON file.

Why drive ``BenchmarkFixture`` instead of generating a pytest session: every case runs in a fresh
process (for an honest peak memory), and a pytest session per case would cost seconds of
collection; the fixture is the same code ``benchmark.pedantic`` runs under pytest, so the
statistics (median, IQR, rounds) and the JSON entries are pytest-benchmark's own.

A first untimed call (the probe) does the first-touch work (optimizer state, page faults) that
no round should see; untimed warm-up calls follow, at least ``warmup_rounds`` of them and at
least ``warmup_s`` seconds of them. A phase then gets as many rounds as fit in the policy's time
budget at the warm-up's median call, clamped to ``[min_rounds, max_rounds]``, so a one-second step
is timed a few times and a millisecond lookup many times. Why warm up by time and count from the
warm-up, not the probe: a fast step's first calls in a fresh process are several times slower
than its later ones (the allocator still growing its heap; measured at the headline case on 2
cores: ``fused``'s steps 2-21 had a median of 4.7 ms, steps 22-50 of 3.7 ms), so a round count set
by the probe, or rounds started after one warm-up call, timed that transient.

A timed call may mark where its own phases end (:class:`Marks`); :func:`phase_entry` turns the
spans between two marks of the timed rounds into an entry of the same layout, so one series of
training steps times the forward and the backward too.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_benchmark import __version__ as pytest_benchmark_version
from pytest_benchmark.fixture import BenchmarkFixture
from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
from pytest_benchmark.utils import NameWrapper, get_commit_info

from bench.common.results import write_atomic
from bench.common.stats import time_stats, time_summary


@dataclass(frozen=True)
class RoundsPolicy:
    phase_budget_s: float
    min_rounds: int
    max_rounds: int
    warmup_rounds: int
    warmup_s: float = 0.0
    """Untimed warm-up lasts at least this long (and at least ``warmup_rounds`` calls)."""

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


FULLNAME_PREFIX = "bench/perf/command.py::"
"""What a pytest node id would hold before the benchmark's name."""


@dataclass(frozen=True)
class _Node:
    """The two attributes of a pytest item that ``BenchmarkFixture`` reads."""

    name: str
    nodeid: str


class Marks:
    """Times marked inside each timed call: ``mark()`` at every boundary between its phases.

    ``synchronize`` (e.g. ``torch.cuda.synchronize``) runs before each mark, so a span counts the
    GPU work queued in it.
    """

    def __init__(self, synchronize: Callable[[], None] | None = None):
        self.synchronize = synchronize
        self.calls: list[list[float]] = []

    def start_call(self) -> None:
        self.calls.append([])

    def mark(self) -> None:
        if self.synchronize is not None:
            self.synchronize()
        self.calls[-1].append(time.perf_counter())

    def spans(self, first: int, last: int, *, calls: int) -> list[float]:
        """Seconds from mark ``first`` to mark ``last`` in each of the last ``calls`` calls (the
        timed rounds: the probe and the warm-up calls come before them)."""
        if not 0 < calls <= len(self.calls):
            raise ValueError(f"calls: expected 1 to {len(self.calls)} marked calls, got {calls}")
        timed = self.calls[-calls:]
        if any(len(marks) <= max(first, last) for marks in timed):
            raise ValueError(
                f"first, last: expected marks a timed call made, got {first}, {last} "
                f"(calls made {sorted({len(marks) for marks in timed})} marks)"
            )
        return [marks[last] - marks[first] for marks in timed]


def time_phase(
    target: Callable[[], object],
    *,
    name: str,
    group: str,
    extra_info: dict,
    policy: RoundsPolicy,
    setup: Callable[[], None] | None = None,
    synchronize: Callable[[], None] | None = None,
    marks: Marks | None = None,
) -> dict:
    """Time ``target`` with ``BenchmarkFixture.pedantic``; pytest-benchmark's JSON entry.

    ``setup`` runs untimed before every call (e.g. ``zero_grad``); ``synchronize`` (e.g.
    ``torch.cuda.synchronize``) runs inside the timed call so queued GPU work is counted;
    ``marks``: where ``target`` marks its phases, started anew for every call.
    """

    def timed() -> None:
        if marks is not None:
            marks.start_call()
        target()
        if synchronize is not None:
            synchronize()

    def untimed_call() -> float:
        if setup is not None:
            setup()
        start = time.perf_counter()
        timed()
        return time.perf_counter() - start

    probe_s = untimed_call()
    warmup_seconds: list[float] = []
    while len(warmup_seconds) < policy.warmup_rounds or sum(warmup_seconds) < policy.warmup_s:
        warmup_seconds.append(untimed_call())
    rounds = policy.rounds_for(statistics.median(warmup_seconds) if warmup_seconds else probe_s)

    collected = []
    fixture = BenchmarkFixture(
        _Node(name, f"{FULLNAME_PREFIX}{name}"),
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
    fixture.pedantic(timed, setup=setup, rounds=rounds, warmup_rounds=0)
    return collected[0].as_dict(include_data=True)


def phase_entry(
    timed: dict, seconds: Sequence[float], *, name: str, group: str, extra_info: dict
) -> dict:
    """An entry like ``timed`` (from :func:`time_phase`) for a phase inside its calls:
    pytest-benchmark's statistics of ``seconds``, one span per timed round."""
    stats = time_stats(seconds)
    return {
        **timed,
        "name": name,
        "fullname": f"{FULLNAME_PREFIX}{name}",
        "group": group,
        "extra_info": extra_info,
        "stats": {**stats.as_dict(), "data": list(seconds), "iterations": 1},
    }


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
