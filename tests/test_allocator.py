"""``impls.allocator.retain_freed_memory``: freed step buffers are reused, not page-faulted anew.

The setting is process-wide, so the measurement runs in a subprocess of its own: it allocates and
frees two 4,096 x 300 float32 buffers (a headline step's output and gradient, 4.9 MB each, both
alive at once) again and again and counts the minor page faults of the later cycles, first with
glibc's starting thresholds, then after ``retain_freed_memory``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from impls import allocator
from impls.allocator import GLIBC_MAX_MMAP_THRESHOLD, retain_freed_memory

CYCLES = """
import resource, torch
from impls.allocator import M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, _glibc_mallopt
from impls.allocator import retain_freed_memory

def cycle():  # as in a step: the output is still alive when the gradient is allocated
    output = torch.empty(4096, 300).fill_(1.0)
    gradient = torch.empty(4096, 300).fill_(2.0)
    del output, gradient

def faults_per_cycle():
    for _ in range(5):
        cycle()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        cycle()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20

# glibc's starting thresholds, set explicitly: its dynamic rule may already have raised them
mallopt = _glibc_mallopt()
mallopt(M_MMAP_THRESHOLD, 128 << 10)
mallopt(M_TRIM_THRESHOLD, 128 << 10)
started = faults_per_cycle()
print(started, retain_freed_memory(), faults_per_cycle())
"""
PAGES_PER_CYCLE = 2 * 4096 * 300 * 4 // 4096  # two buffers of 4 KiB pages


@pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or "LD_PRELOAD" in os.environ,
    reason="glibc's malloc, not a preloaded one, maps large buffers anew",
)
def test_retained_buffers_are_reused_where_glibc_maps_them_anew_each_cycle():
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run(
        [sys.executable, "-c", CYCLES], capture_output=True, text=True, check=True, env=environment
    )
    started, applied, retained = done.stdout.split()
    assert float(started) > PAGES_PER_CYCLE / 2, (
        f"glibc's starting thresholds: {started} faults a cycle, expected most of the "
        f"{PAGES_PER_CYCLE} pages"
    )
    assert applied == "True"
    assert float(retained) < PAGES_PER_CYCLE / 100, (
        f"retained: {retained} faults a cycle of {PAGES_PER_CYCLE} pages, expected none"
    )


def test_elsewhere_than_glibc_nothing_is_changed(monkeypatch):
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("musl", "1.2"))
    assert retain_freed_memory() is False


@pytest.mark.parametrize(
    ("named", "value"),
    [
        ("mmap_threshold", 0),
        ("mmap_threshold", GLIBC_MAX_MMAP_THRESHOLD + 1),
        ("trim_threshold", 1 << 31),
    ],
)
def test_thresholds_out_of_glibc_range_are_refused_naming_the_argument(named, value):
    with pytest.raises(ValueError, match=rf"{named}: expected .* got {value}"):
        retain_freed_memory(**{named: value})
