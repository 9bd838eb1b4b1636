"""Words for values that every subsystem prints or checks: errors, choices, counts, bytes.

Torch-free, so the report uses the same words as the measuring code without importing it.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Collection

GiB = 2**30
BYTE_UNITS = (("GiB", GiB), ("MiB", 2**20), ("KiB", 2**10))


def error_text(error: BaseException) -> str:
    """``Type: message``: what a result record keeps of an exception."""
    return f"{type(error).__name__}: {error}"


def check_choice(name: str, value: object, choices: Collection) -> None:
    """Refuse ``value`` for argument ``name`` unless it is one of ``choices``, naming them."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {sorted(choices)}, got {value!r}")


def check_positive_ints(**values: object) -> None:
    """Refuse any of ``values`` that is not a positive int, naming it."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")


def positive_int(text: str) -> int:
    """An ``argparse`` type: a positive integer, or a message saying what was given."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def format_bytes(count: float | None) -> str:
    """``1.5 GiB``, ``300 MiB``, ``12 B``; ``–`` for an unknown count."""
    if count is None or (isinstance(count, float) and math.isnan(count)):
        return "–"
    magnitude = abs(count)
    for unit, size in BYTE_UNITS:
        if magnitude >= size:
            return f"{count / size:.3g} {unit}"
    return f"{int(count)} B"
