"""Words for values that every subsystem prints: errors, choices, byte counts.

Torch-free, so the report uses the same words as the measuring code without importing it.
"""

from __future__ import annotations

import math
from collections.abc import Collection

BYTE_UNITS = (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def error_text(error: BaseException) -> str:
    """``Type: message``: what a result record keeps of an exception."""
    return f"{type(error).__name__}: {error}"


def check_choice(name: str, value: object, choices: Collection) -> None:
    """Refuse ``value`` for argument ``name`` unless it is one of ``choices``, naming them."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {sorted(choices)}, got {value!r}")


def format_bytes(count: float | None) -> str:
    """``1.5 GiB``, ``300 MiB``, ``12 B``; ``–`` for an unknown count."""
    if count is None or (isinstance(count, float) and math.isnan(count)):
        return "–"
    magnitude = abs(count)
    for unit, size in BYTE_UNITS:
        if magnitude >= size:
            return f"{count / size:.3g} {unit}"
    return f"{int(count)} B"
