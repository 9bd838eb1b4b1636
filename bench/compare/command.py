"""Compare two result folders: time ratios per case and phase, changed verification cells.

``python -m bench compare OLD NEW [--threshold 0.10] [--out NEW/compare.html]``

OLD and NEW are folders written by ``python -m bench run`` and/or ``python -m bench verify``
(two machines, two commits, two torch versions). For every benchmark case and phase timed in both
it prints NEW's median time over OLD's, ``~`` when the change is within noise, regressions and
improvements first; then the benchmarks timed in only one of them, the verification cells
(approach, scenario, property) whose outcome changed, and the cases and cells only one folder
holds. The same tables are written as a self-contained HTML file (``--out``).

Within noise: the rows carry a median and an IQR, not the per-round times, so each side's spread
is ``[median − IQR/2, median + IQR/2]``; the change is within noise when the two intervals
overlap. A regression is a ratio above ``1 + threshold`` that is not within noise, an improvement
a ratio below ``1 − threshold`` that is not (:mod:`bench.compare.changes`).

Exit status: 1 when at least one case regressed (so it can guard CI), 0 otherwise, 2 when a
folder cannot be compared (missing, empty, not result lists, different schema keys).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.compare.changes import DEFAULT_THRESHOLD, compare
from bench.compare.folders import CompareInputError, check_same_schema, load_folder
from bench.compare.page import write_page
from bench.compare.tables import as_text, view

PAGE_NAME = "compare.html"
BAD_INPUT = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD", type=Path, help="the result folder compared from")
    parser.add_argument("new", metavar="NEW", type=Path, help="the result folder compared to")
    parser.add_argument(
        "--threshold",
        type=threshold_fraction,
        default=DEFAULT_THRESHOLD,
        help=f"relative change of a median that is flagged, as a fraction in [0, 1) "
        f"(default: {DEFAULT_THRESHOLD:g})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"the HTML file to write (default: NEW/{PAGE_NAME})",
    )


def threshold_fraction(text: str) -> float:
    """An ``argparse`` type: a fraction in [0, 1), or a message saying what was given."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1) such as 0.1, got {text!r}")
    return value


def main(args: argparse.Namespace) -> int:
    try:
        old, new = load_folder("OLD", args.old), load_folder("NEW", args.new)
        check_same_schema(old, new)
    except CompareInputError as error:
        print(f"bench compare: {error}", file=sys.stderr)
        return BAD_INPUT
    comparison = compare(old, new, args.threshold)
    comparison_view = view(comparison)
    page = write_page(comparison_view, args.out or new.path / PAGE_NAME)
    sys.stdout.write(as_text(comparison_view))
    print(f"HTML: {page}")
    return comparison.exit_status
