"""Keep freed memory in the process, so a training step's buffers are not page-faulted anew.

Why: a training step allocates and frees the same few large buffers every step (at T = 4,096
tokens of width 300 each of the lookup's output, the loss's gradient and the gathered rows is
4.9 MB). glibc's ``malloc`` serves a request above its mmap threshold with a fresh ``mmap`` and
gives the top of its heap back to the kernel once more than its trim threshold is free; both
start at 128 KiB and only grow by a rule that depends on what the process freed before. A buffer
that comes back from the kernel is zero pages: the first kernel that writes it takes a page fault
per 4 KiB. Measured at the headline case (``fused``, ``AdamW(fused=True)``, one model in a fresh
process, 2-core AMD EPYC): 270-510 minor faults a step under glibc's defaults, 0.06 after this
call. What that buys in time depends on the process: there the median step did not move beyond
the noise between processes (2.30-2.37 ms against 2.42-3.10 ms), while the lookup alone
(``freeze_all``) once took 3.47 ms under glibc's defaults and 1.04 ms with the thresholds raised
(the README's allocator table); the benchmark's ``retained`` sweep measures it in every run.

:func:`retain_freed_memory` sets both thresholds with ``mallopt``, as the environment variables
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` would before the process starts, but
from inside a process that is already running (a notebook, a trainer that imports this library).
The cost: the process keeps up to ``trim_threshold`` bytes of freed heap instead of returning
them. A preloaded tcmalloc or jemalloc keeps freed memory by design and needs none of this.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameters (``malloc.h``)."""
GLIBC_MAX_MMAP_THRESHOLD = 32 << 20
"""The largest mmap threshold glibc accepts on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``)."""
DEFAULT_TRIM_THRESHOLD = 1 << 30


def retain_freed_memory(
    mmap_threshold: int = GLIBC_MAX_MMAP_THRESHOLD, trim_threshold: int = DEFAULT_TRIM_THRESHOLD
) -> bool:
    """Make glibc's ``malloc`` keep freed buffers below ``mmap_threshold`` bytes on its heap and
    give back no more than it holds above ``trim_threshold`` bytes; True when it was applied,
    False where the C library is not glibc (nothing is changed there).

    Process-wide and for the rest of the process: call it once, early, from the training script.
    """
    if not 0 < mmap_threshold <= GLIBC_MAX_MMAP_THRESHOLD:
        raise ValueError(
            f"mmap_threshold: expected bytes in (0, {GLIBC_MAX_MMAP_THRESHOLD}] (glibc's largest), "
            f"got {mmap_threshold!r}"
        )
    if not 0 < trim_threshold < 1 << 31:
        raise ValueError(
            f"trim_threshold: expected bytes in (0, 2**31) (mallopt takes an int), "
            f"got {trim_threshold!r}"
        )
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        mallopt(M_TRIM_THRESHOLD, trim_threshold)
    )


def _glibc_mallopt():
    if platform.libc_ver()[0] != "glibc":
        return None
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt
