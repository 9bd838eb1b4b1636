"""The two result folders ``compare`` reads, checked before anything is compared.

A comparison of the wrong folder, or of files written under different schemas, would print
plausible ratios of things that do not correspond; so every problem is an error that names the
argument (OLD or NEW), the path and what was expected, raised before any output.

The schema has no version number; what identifies a version is the set of keys its records carry
(:func:`bench.common.schema.record` writes exactly ``columns``). Two files whose records carry
different keys were written by different versions of the schema, and the error lists the keys
that differ.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.common.results import load_records
from bench.common.schema import (
    CASE_COLUMNS,
    LATER_CASE_COLUMNS,
    RESULTS,
    VERIFICATION,
    ResultFileSchema,
)

COMPARED_FILES = (RESULTS, VERIFICATION)
"""The result files ``compare`` reads: benchmark timings and the verification matrix."""
BENCHMARK_KEY = ("approach", *CASE_COLUMNS, "phase")
"""What pairs a benchmark row of OLD with one of NEW. Sweep and profile are left out
(:data:`~bench.common.schema.CASE_COLUMNS` says why): a point shared by two sweeps is one row."""
NEEDED_KEYS = {
    RESULTS.name: (
        *(key for key in BENCHMARK_KEY if key not in LATER_CASE_COLUMNS),
        "status",
        "median_s",
        "iqr_s",
    ),
    VERIFICATION.name: VERIFICATION.required,
}
"""The keys each compared file's records must carry for ``compare`` to read them; any other
column of the schema a file lacks is read as null."""
IMPLIED_KEYS = {RESULTS.name: frozenset(LATER_CASE_COLUMNS)}
"""Keys a file carries in effect even where its records lack them (null): a file written before
a case column existed is of the same schema version as one written after."""
WRITERS = " or ".join(f"python -m bench {spec.command} --out FOLDER" for spec in COMPARED_FILES)


class CompareInputError(ValueError):
    """A folder ``compare`` cannot read; the message names the argument, the path and what was
    expected."""


@dataclass(frozen=True)
class ResultFile:
    """One compared file of a folder: its records as a frame, and every key they carry."""

    schema: ResultFileSchema
    path: Path
    frame: pd.DataFrame
    keys: frozenset[str]


@dataclass(frozen=True)
class ResultFolder:
    """A folder given as ``argument`` (OLD or NEW) and the compared files it holds."""

    argument: str
    path: Path
    files: Mapping[str, ResultFile]
    """By schema name (``results``, ``verification``); a file the folder lacks is absent."""


def load_folder(argument: str, path: Path) -> ResultFolder:
    """The compared files of ``path``; :class:`CompareInputError` if it holds none or one is bad."""
    path = Path(path)
    if not path.exists():
        raise CompareInputError(
            f"{argument}: {path} does not exist; expected a result folder written by {WRITERS}"
        )
    if not path.is_dir():
        raise CompareInputError(
            f"{argument}: {path} is not a folder; expected a result folder written by {WRITERS}"
        )
    files = {
        spec.name: load_file(argument, path / spec.filename, spec)
        for spec in COMPARED_FILES
        if (path / spec.filename).exists()
    }
    if not files:
        names = " nor ".join(spec.filename for spec in COMPARED_FILES)
        raise CompareInputError(
            f"{argument}: {path} holds neither {names} (the result files compare reads); "
            f"expected a result folder written by {WRITERS}"
        )
    return ResultFolder(argument, path, files)


def load_file(argument: str, path: Path, spec: ResultFileSchema) -> ResultFile:
    """``path``'s records, refused unless they are JSON objects carrying ``NEEDED_KEYS``."""
    try:
        records = load_records(path)
    except json.JSONDecodeError as error:
        raise CompareInputError(
            f"{argument}: {path} is not JSON ({error}); expected a JSON list of result records"
        ) from error
    except (ValueError, OSError) as error:  # load_records names the path and what it expected
        raise CompareInputError(f"{argument}: {error}") from error
    for index, item in enumerate(records):
        if not isinstance(item, Mapping):
            raise CompareInputError(
                f"{argument}: {path}: record {index} is a {type(item).__name__}; expected a JSON "
                f"object with the keys of {spec.filename}"
            )
    keys = frozenset(key for item in records for key in item)
    missing = [key for key in NEEDED_KEYS[spec.name] if records and key not in keys]
    if missing:
        raise CompareInputError(
            f"{argument}: {path}: records lack the key(s) {', '.join(missing)}; expected the "
            f"keys of {spec.filename}: {', '.join(spec.columns)}"
        )
    frame = pd.DataFrame.from_records(records)
    for column in spec.columns:
        if column not in frame.columns:
            frame[column] = None
    return ResultFile(spec, path, frame, keys | IMPLIED_KEYS.get(spec.name, frozenset()))


def check_same_schema(old: ResultFolder, new: ResultFolder) -> None:
    """Refuse a file whose records carry different keys in the two folders, listing them."""
    for name in old.files.keys() & new.files.keys():
        old_file, new_file = old.files[name], new.files[name]
        if old_file.frame.empty or new_file.frame.empty or old_file.keys == new_file.keys:
            continue
        raise CompareInputError(
            f"{old.argument}, {new.argument}: {old_file.path} and {new_file.path} carry "
            f"different keys (written by different schema versions): only in {old.argument}: "
            f"{_listed(old_file.keys - new_file.keys)}; only in {new.argument}: "
            f"{_listed(new_file.keys - old_file.keys)}; expected the same keys in both"
        )


def _listed(keys: Iterable[str]) -> str:
    return ", ".join(sorted(keys)) or "none"
