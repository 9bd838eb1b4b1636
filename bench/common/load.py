"""How busy the machine is, and when a timing cannot be trusted because of it.

On a 2-core machine one other busy process turned a 3.9 ms step into a 162 ms median (min
11.9 ms) at torch's default 2 threads, and nothing in the result said so. So every timed row
carries ``threads`` (the intra-op threads it ran with), ``load_before`` (cores kept busy by
anything just before the case started, from ``/proc/stat``) and ``noisy``: true when either

- ``load_before`` exceeds :data:`BUSY_CORES` (another process was using at least half a core:
  with ``threads`` threads on ``cpu_count`` cores, a competitor preempts the case's threads), or
- a timed phase's IQR exceeds :data:`SPREAD` of its median (the rounds disagree with each other,
  whatever the cause).

A noisy case is measured again, up to :data:`ATTEMPTS` times in all; the quietest attempt is kept,
still marked noisy if it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

PROC_STAT = Path("/proc/stat")
WINDOW_S = 0.5
BUSY_CORES = 0.5
SPREAD = 0.25
ATTEMPTS = 3
NOISE_RULE = (
    f"A row is marked noisy when the machine had more than {BUSY_CORES:g} core(s) busy in the "
    f"{WINDOW_S:g} s before the case started, or when a timed phase's IQR exceeded "
    f"{SPREAD:.0%} of its median; a noisy case is measured again, up to {ATTEMPTS} times in "
    "all, and the quietest attempt is kept."
)
"""The rule in words, for the report and the README."""


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores since boot, or None without ``/proc/stat``."""
    try:
        first = PROC_STAT.read_text().splitlines()[0].split()
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, first[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def busy_cores(window_s: float = WINDOW_S) -> float | None:
    """Cores kept busy, on average over the next ``window_s`` seconds (None where unknown).

    Called while this process waits, so what it sees is everyone else.
    """
    before = _cpu_jiffies()
    time.sleep(window_s)
    after = _cpu_jiffies()
    if before is None or after is None or after[1] == before[1]:
        return None
    cores = os.cpu_count() or 1
    return cores * (after[0] - before[0]) / (after[1] - before[1])


def spread(median_s: float | None, iqr_s: float | None) -> float | None:
    """IQR as a fraction of the median."""
    if not median_s or iqr_s is None:
        return None
    return iqr_s / median_s


def is_noisy(load_before: float | None, spreads: Iterable[float | None]) -> bool:
    """The rule of the module docstring."""
    if load_before is not None and load_before > BUSY_CORES:
        return True
    return any(s is not None and s > SPREAD for s in spreads)
