"""The command-line plumbing the measuring commands share: devices, memory budget, profile
restriction and SIGTERM.

``run`` and ``newtokens`` each grew their own copy of these and the copies drifted (``--device``
checked by argparse in one and after parsing in the other, ``1 << 30`` against ``GiB``), so both
take them from here.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import TypeVar

import torch

from bench.common.text import GiB

Profile = TypeVar("Profile")


def device_name(value: str) -> str:
    """argparse type: ``cpu``, ``cuda`` or ``cuda:N``, and CUDA only where torch sees a GPU."""
    if value != "cpu" and value != "cuda" and not value.startswith("cuda:"):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {value!r}")
    if value.startswith("cuda") and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f"{value!r} requested but torch.cuda.is_available() is False on this machine"
        )
    return value


def add_device_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--device",
        nargs="+",
        type=device_name,
        default=None,
        help=f"devices to {what} on (default: cpu, and cuda when available)",
    )


def chosen_devices(devices: Sequence[str] | None) -> list[str]:
    """``--device`` as given, or ``cpu`` and, where torch sees a GPU, ``cuda``."""
    return list(devices or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])])


def add_memory_budget_argument(
    parser: argparse.ArgumentParser, default_gib: float | None, default_text: str
) -> None:
    parser.add_argument(
        "--memory-budget",
        type=float,
        default=default_gib,
        metavar="GiB",
        help=f"skip a case estimated to need more (default: {default_text})",
    )


def budget_bytes(gib: float | None) -> int | None:
    """``--memory-budget`` in bytes (None: no fixed budget)."""
    return None if gib is None else int(gib * GiB)


def restricted(profile: Profile, names: Sequence[str] | None) -> Profile | None:
    """``profile.only(names)`` (all of it without names); None, with the error printed as a
    usage error of the option the error names, when a name is not in the profile."""
    if not names:
        return profile
    try:
        return profile.only(names)
    except ValueError as error:
        print(f"--{error}", file=sys.stderr)
        return None


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """SIGTERM (a CI timeout, ``kill``) unwinds like Ctrl-C while the block runs, so the running
    case's process is killed and finished results stay written."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
