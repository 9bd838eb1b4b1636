"""The environment every result row carries, so any number can be traced and re-run."""

from __future__ import annotations

import datetime
import functools
import os
import platform
import subprocess
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or the platform's processor string."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """The commit of the working tree (with ``-dirty`` when it has changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[2]
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def allocator() -> str:
    """The ``malloc`` the process runs with: a preloaded jemalloc or tcmalloc, else glibc's,
    with the tunables set in the environment.

    On glibc a buffer above the mmap threshold of a fresh process may be mapped and page-faulted
    anew each step, depending on what the process allocated and freed before (measured: a
    4,096 x 300 lookup step 3.5 ms in one fresh process, 0.9-1.0 ms in others and with
    tcmalloc), so a time means little without it.
    """
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("tcmalloc", "jemalloc", "mimalloc"):
        if name in preload:
            return name
    tunables = sorted(
        f"{key}={value}"
        for key, value in os.environ.items()
        if key.startswith("MALLOC_") or key == "GLIBC_TUNABLES"
    )
    return "glibc" + (f" ({', '.join(tunables)})" if tunables else "")


@functools.cache
def environment() -> dict[str, object]:
    """Versions, hardware and commit, flat so it can be spread into a result row."""
    has_cuda = torch.cuda.is_available()
    return {
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "gpu_name": torch.cuda.get_device_name(0) if has_cuda else None,
        "cuda_version": torch.version.cuda if has_cuda else None,
        "allocator": allocator(),
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
