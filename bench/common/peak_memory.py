"""The peak memory of one case, measured in the process that runs it.

On CUDA it is the allocator's ``max_memory_allocated``. On CPU it is the resident-set high-water
mark, ``VmHWM`` in ``/proc/self/status``, minus the resident size before anything of the case was
allocated; the mark is reset (``/proc/self/clear_refs``) once the module is built, so the peak
covers the timed phases and not the one-off copy ``from_pretrained`` makes. ``getrusage``'s
``ru_maxrss`` is not used where ``/proc`` exists: on Linux it keeps the peak of the process that
forked the child (``exec`` does not reset it), so a child of a large parent reports the parent's
peak.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int:
    for line in PROC_STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{field} not in {PROC_STATUS}")


class PeakMeter:
    """Peak bytes of one case in this (fresh) process; see the module docstring for the method.

    ``start()`` before allocating anything, ``reset()`` once the module is built, ``peak_bytes()``
    after the timed phases. ``method`` says what was read.
    """

    def __init__(self, device: str):
        self.device = device
        self.baseline = 0
        if device.startswith("cuda"):
            self.method = "cuda_max_memory_allocated"
        elif PROC_STATUS.exists():
            self.method = "vmhwm_after_build"
        else:
            self.method = "ru_maxrss_including_build"

    def _current(self) -> int:
        if self.method.startswith("cuda"):
            return torch.cuda.memory_allocated(self.device)
        if self.method.startswith("vmhwm"):
            return _status_kib("VmRSS") * 1024
        return _max_rss_bytes()

    def start(self) -> None:
        self.baseline = self._current()

    def reset(self) -> None:
        if self.method.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.method.startswith("vmhwm"):
            try:
                PROC_CLEAR_REFS.write_text("5")
            except OSError:
                self.method = "vmhwm_including_build"

    def peak_bytes(self) -> int:
        if self.method.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self.method.startswith("vmhwm"):
            peak = _status_kib("VmHWM") * 1024
        else:
            peak = _max_rss_bytes()
        return peak - self.baseline


def _max_rss_bytes() -> int:
    unit = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
