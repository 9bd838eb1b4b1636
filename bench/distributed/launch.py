"""Run a list of cases on a pair of gloo processes over loopback; a hang fails instead of stalling.

Why a process pair per *list* of cases and not per case: starting a rank costs a torch import
(seconds on a small machine), while a case costs milliseconds, so many cases share one pair and
one process group. After a case that failed on any rank, or timed out, the process group may be
unusable, so that pair ends and a fresh one runs the remaining cases.

Why the parent hosts the rendezvous store: ``TCPStore`` on port 0 lets the kernel pick a free port
that is bound from the start, so no other process can take it between "find a free port" and
"listen on it". Gloo's own connections also stay on loopback (``GLOO_SOCKET_IFNAME=lo``).

Timeouts, each with its own message: a pair must be ready within ``startup_timeout_s``; every case
must finish within ``timeout_s`` (the parent's watchdog; the ranks' collectives and their status
hand-shake time out after the same span); a killed process is joined within a few seconds. On a
timeout the parent asks every live rank for its Python stack (``faulthandler`` on SIGUSR1) so the
message says where each rank was waiting.
"""

from __future__ import annotations

import datetime
import faulthandler
import os
import signal
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from bench.common.processes import fork_context
from bench.common.text import error_text
from impls.base import UnsupportedOption

WORLD_SIZE = 2
POLL_S = 0.02
JOIN_TIMEOUT_S = 5.0
STACK_WAIT_S = 0.5
STACK_FRAMES = 4

Task = Callable[[Any, int, int], Any]
"""``task(case, rank, world_size) -> value``: a module-level function run on every rank."""


@dataclass
class RankResult:
    """What one rank returned for one case: a value, or the exception's text and traceback."""

    value: Any = None
    error: str | None = None
    traceback: str | None = None
    refused: bool = False
    """The exception was the approach's ``UnsupportedOption``: a refusal, not a failure."""


@dataclass
class RanksResult:
    """One case on every rank; ``failure`` says why some rank did not return (timeout, crash)."""

    label: str
    ranks: list[RankResult | None] = field(default_factory=list)
    failure: str | None = None

    @property
    def error(self) -> str | None:
        """The failure, or the first rank's exception as ``rank r: Type: message``."""
        if self.failure:
            return self.failure
        for rank, result in enumerate(self.ranks):
            if result is not None and result.error is not None:
                return f"rank {rank}: {result.error}"
        return None

    @property
    def refused(self) -> bool:
        """Whether the first rank that raised refused the case (``UnsupportedOption``)."""
        if self.failure:
            return False
        return next((r.refused for r in self.ranks if r is not None and r.error), False)


def run_cases(
    task: Task,
    cases: Sequence[Any],
    labels: Sequence[str],
    timeout_s: float,
    startup_timeout_s: float = 60.0,
) -> list[RanksResult]:
    """Run ``task`` on every case, on ``WORLD_SIZE`` ranks, reusing a pair while it stays healthy.

    ``labels`` name the cases in messages (e.g. ``"approach 'split' under 'ddp'"``).
    """
    if len(labels) != len(cases):
        raise ValueError(f"labels: expected {len(cases)} (one per case), got {len(labels)}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s: expected a positive number of seconds, got {timeout_s!r}")
    results: list[RanksResult] = []
    while len(results) < len(cases):
        start = len(results)
        with tempfile.TemporaryDirectory(prefix="rowfreeze-dist-") as workdir:
            pair = _Pair(task, cases[start:], labels[start:], Path(workdir), timeout_s)
            results.extend(pair.run(startup_timeout_s))
    return results


class _Pair:
    """One set of rank processes working through ``cases`` in order."""

    def __init__(self, task, cases, labels, workdir: Path, timeout_s: float):
        self.task, self.cases, self.labels = task, list(cases), list(labels)
        self.workdir, self.timeout_s = workdir, timeout_s

    def run(self, startup_timeout_s: float) -> list[RanksResult]:
        """Results for a prefix of the cases (at least one); the rest need a fresh pair."""
        store = dist.TCPStore(
            "127.0.0.1",
            0,
            None,
            is_master=True,
            wait_for_workers=False,
            timeout=datetime.timedelta(seconds=self.timeout_s),
        )
        ctx = fork_context()
        procs = [
            ctx.Process(
                target=_rank_main,
                args=(rank, store.port, self.task, self.cases, self.workdir, self.timeout_s),
                daemon=True,
            )
            for rank in range(WORLD_SIZE)
        ]
        try:
            for proc in procs:
                proc.start()
            results = self._watch(procs, startup_timeout_s)
            if results[-1].failure is None:  # the ranks are leaving on their own
                for proc in procs:
                    proc.join(JOIN_TIMEOUT_S)
            return results
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
                proc.join(JOIN_TIMEOUT_S)

    def _watch(self, procs, startup_timeout_s: float) -> list[RanksResult]:
        """Collect results case by case; stop at a disagreement, a dead rank or a timeout."""
        last_progress = time.monotonic()
        done: list[RanksResult] = []
        while len(done) < len(self.cases):
            index = len(done)
            exited = [not p.is_alive() for p in procs]  # before reading: results come first
            ranks = [_read_result(self.workdir, index, r) for r in range(WORLD_SIZE)]
            if all(r is not None for r in ranks):
                done.append(RanksResult(self.labels[index], ranks))
                last_progress = time.monotonic()
                if any(r.error for r in ranks):
                    return done  # the ranks are leaving (see _rank_main); a fresh pair goes on
                continue
            started = _started_at(self.workdir, index)
            if started is not None:
                since, limit, what = started, self.timeout_s, "running"
            elif index == 0:
                since, limit, what = last_progress, startup_timeout_s, "waiting for the ranks"
            else:
                since, limit, what = last_progress, self.timeout_s, "before the case started"
            dead = [r for r in range(WORLD_SIZE) if exited[r] and ranks[r] is None]
            if dead or time.monotonic() - since > limit:
                reason = (
                    f"rank {dead[0]} exited with code {procs[dead[0]].exitcode}"
                    if dead
                    else f"timed out after {limit:g} s {what}"
                )
                done.append(self._failure(index, ranks, procs, reason))
                return done
            time.sleep(POLL_S)
        return done

    def _failure(self, index: int, ranks, procs, reason: str) -> RanksResult:
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(STACK_WAIT_S)
        lines = [f"{self.labels[index]}: {reason}"]
        for rank, result in enumerate(ranks):
            if result is not None:
                lines.append(f"  rank {rank} finished: {result.error or 'ok'}")
                continue
            lines.append(f"  rank {rank} did not finish; its stack, innermost first:")
            stack = _text_if_written(self.workdir / f"stack.{rank}")
            frames = [f.strip() for f in stack.splitlines() if f.strip().startswith("File")]
            lines.extend("    " + f for f in frames[:STACK_FRAMES] or ["(not available)"])
            stderr = _text_if_written(self.workdir / f"stderr.{rank}")
            lines.extend("    stderr: " + line for line in stderr.splitlines()[-5:])
        return RanksResult(self.labels[index], list(ranks), failure="\n".join(lines))


def _text_if_written(path: Path) -> str:
    """What a rank wrote to ``path``; nothing if it died before writing (it may never start)."""
    return path.read_text(errors="replace").strip() if path.exists() else ""


def _result_path(workdir: Path, index: int, rank: int) -> Path:
    return workdir / f"case{index}.rank{rank}.pt"


def _read_result(workdir: Path, index: int, rank: int) -> RankResult | None:
    path = _result_path(workdir, index, rank)
    return RankResult(**torch.load(path, weights_only=False)) if path.exists() else None


def _started_at(workdir: Path, index: int) -> float | None:
    """When the first rank started case ``index`` (monotonic clock, shared on one machine)."""
    texts = [p.read_text() for p in workdir.glob(f"case{index}.rank*.started")]
    times = [float(text) for text in texts if text]  # empty: being written, seen next poll
    return min(times) if times else None


def _write_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rank_main(rank, port, task, cases, workdir: Path, timeout_s: float) -> None:
    """A rank: join the group, run every case, hand-shake its status after each.

    After an exception on any rank both ranks leave and the parent starts a fresh pair: a rank
    may have abandoned a collective its peer is still in, and gloo reports that as a plain
    ``RuntimeError``, indistinguishable from an approach refusing to run. A fork from the
    preloaded server makes the fresh pair cheap.
    """
    stderr = open(workdir / f"stderr.{rank}", "w")  # noqa: SIM115 - lives as long as the process
    os.dup2(stderr.fileno(), 2)
    faulthandler.register(signal.SIGUSR1, file=open(workdir / f"stack.{rank}", "w"))  # noqa: SIM115
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // WORLD_SIZE))  # each rank its share
    timeout = datetime.timedelta(seconds=timeout_s)
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timeout)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=WORLD_SIZE, timeout=timeout)
    try:
        for index, case in enumerate(cases):
            (workdir / f"case{index}.rank{rank}.started").write_text(repr(time.monotonic()))
            try:
                result = RankResult(value=task(case, rank, WORLD_SIZE))
            except Exception as exc:
                result = RankResult(
                    error=error_text(exc).strip(),
                    traceback=traceback.format_exc(),
                    refused=isinstance(exc, UnsupportedOption),
                )
            _write_atomic(_result_path(workdir, index, rank), result.__dict__)
            store.set(f"status/{index}/{rank}", "error" if result.error else "ok")
            keys = [f"status/{index}/{r}" for r in range(WORLD_SIZE)]
            store.wait(keys, timeout)
            if any(store.get(k) == b"error" for k in keys):
                return
    finally:
        dist.destroy_process_group()
