"""How busy the machine is, and when a timing cannot be trusted because of it.

On a 2-core machine one other busy process turned a 3.9 ms step into a 162 ms median (min
11.9 ms) at torch's default 2 threads, and nothing in the result said so. So every timed row
carries ``threads`` (the intra-op threads it ran with), ``load_before`` (cores kept busy by
anything just before the case started, from ``/proc/stat``) and ``noisy``: true when either

- ``load_before`` exceeds :data:`BUSY_CORES` (another process was using at least half a core:
  with ``threads`` threads on ``cpu_count`` cores, a competitor preempts the case's threads), or
- the row's IQR exceeds :data:`SPREAD` of its median (the rounds disagree with each other,
  whatever the cause). On a quiet 2-core machine the full step's IQR stayed under 27% of its
  median in 9 of 10 benchmark cases and a sub-millisecond lookup's under 38%, because the
  timed calls cycle through batches of different sizes; a competitor for the cores spreads it far
  wider (162 ms median against an 11.9 ms minimum in the case that prompted this).

A case whose full step is noisy is measured again, up to :data:`ATTEMPTS` times in all; the
quietest attempt is kept, and each of its rows still marked noisy if it is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

PROC_STAT = Path("/proc/stat")
WINDOW_S = 0.1
"""Long enough to read a competitor: at 100 jiffies a second, 0.1 s on 2 cores is 20 jiffies,
and half a busy core shows as 5, one busy core as 10. Every case waits it once (about 180 cases
in the quick profile: 0.25 s was 45 s of ``bench run``), so it is kept short."""
BUSY_CORES = 0.5
SPREAD = 0.5
ATTEMPTS = 3
NOISE_RULE = (
    f"A row is marked noisy when the machine had more than {BUSY_CORES:g} core(s) busy in the "
    f"{WINDOW_S:g} s before the case started, or when its IQR exceeded {SPREAD:.0%} of its "
    f"median; a case whose full step is noisy is measured again, up to {ATTEMPTS} times in "
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
