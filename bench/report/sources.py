"""Result files as tidy pandas frames for the report, and the words and numbers that describe them.

The report reads only the result files (see the schemas in ``reports/README.md``), and any of them
may be missing, empty, or carry keys and approaches this module has never heard of: a run may
have been interrupted, or a newer command may write more. So every file is loaded into a
``Source`` that either holds a frame with at least the columns the report uses (absent ones filled
with nulls) or says why it does not, with the command that produces it. Nothing here raises for a
missing file; a file that is not a list of records with the key columns becomes a ``problem``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.common.results import load_records
from bench.common.schema import (
    CASE_COLUMNS,
    ENV_KEYS,
    HEADLINE_SWEEP,
    MUTATION,
    NEWTOKENS,
    OK,
    PRIMITIVES,
    REALDATA,
    REFERENCE,
    RESULT_FILES,
    RESULTS,
    STEP_PHASE,
    VERIFICATION,
    ResultFileSchema,
)
from bench.common.text import format_bytes

# The two answers the original question got, and the library peer; the answer compares with them.
REFERENCE_APPROACHES = {
    "grad_zero": "the zero-gradient answer",
    "split": "the two-table answer",
    "peft_trainable_tokens": "PEFT's trainable-tokens layer",
}


@dataclass
class Source:
    """One result file: its frame when usable, otherwise the reason it is not."""

    spec: ResultFileSchema
    path: Path
    frame: pd.DataFrame | None
    problem: str | None

    @property
    def available(self) -> bool:
        return self.frame is not None and not self.frame.empty


def load_source(in_dir: Path, spec: ResultFileSchema) -> Source:
    """Load ``spec``'s file from ``in_dir``; a missing or malformed file becomes a ``problem``."""
    path = Path(in_dir) / spec.filename
    if not path.exists():
        return Source(spec, path, None, f"{spec.filename} not found")
    try:
        records = load_records(path)
    except (ValueError, OSError) as error:
        return Source(spec, path, None, f"{spec.filename} is not readable ({error})")
    if not all(isinstance(record, Mapping) for record in records):
        return Source(spec, path, None, f"{spec.filename}: every record must be a JSON object")
    if not records:
        return Source(spec, path, None, f"{spec.filename} holds no records")
    frame = pd.DataFrame.from_records(records)
    missing = [column for column in spec.required if column not in frame.columns]
    if missing:
        return Source(
            spec,
            path,
            None,
            f"{spec.filename}: records lack the key(s) {', '.join(missing)}; "
            f"expected {', '.join(spec.required)}",
        )
    for column in spec.columns:
        if column not in frame.columns:
            frame[column] = None
    return Source(spec, path, TIDIERS[spec.name](frame), None)


def load_sources(in_dir: Path) -> dict[str, Source]:
    """Every result file the report knows, keyed by ``ResultFileSchema.name``."""
    return {spec.name: load_source(in_dir, spec) for spec in RESULT_FILES}


def as_bool(value: object) -> bool | None:
    """A boolean column's value from JSON (``true``) or CSV text (``True``); None if missing."""
    if is_missing(value):
        return None
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def typed_frame(frame: pd.DataFrame, schema: ResultFileSchema) -> pd.DataFrame:
    """``frame`` with the schema's numeric columns as numbers (NaN where missing) and its boolean
    columns as True, False or None: the one place a result file's values are coerced."""
    for column in schema.numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    for column in schema.boolean:
        frame[column] = frame[column].map(as_bool).astype(object)
    return frame


def tidy_verification(frame: pd.DataFrame) -> pd.DataFrame:
    frame = typed_frame(frame, VERIFICATION)
    frame = frame.astype({"approach": str, "scenario": str, "property": str, "outcome": str})
    # Files written before implementations had an origin hold reference approaches only.
    frame["origin"] = frame["origin"].where(frame["origin"].notna(), REFERENCE).astype(str)
    frame["group"] = frame["group"].where(frame["group"].notna(), "other").astype(str)
    frame["expected"] = frame["expected"].where(frame["expected"].notna(), None)
    frame["explanation"] = frame["explanation"].fillna("").astype(str)
    frame["params"] = [p if isinstance(p, Mapping) else {} for p in frame["params"]]
    return frame


def tidy_results(frame: pd.DataFrame) -> pd.DataFrame:
    frame = typed_frame(frame, RESULTS).astype({"approach": str, "phase": str, "status": str})
    # A row without ``sparse`` (files written before it was recorded) had dense gradients.
    frame["sparse"] = frame["sparse"].map(lambda value: value is True)
    return frame


def tidy_realdata(frame: pd.DataFrame) -> pd.DataFrame:
    return typed_frame(frame, REALDATA).astype({"approach": str})


def tidy_primitives(frame: pd.DataFrame) -> pd.DataFrame:
    return typed_frame(frame, PRIMITIVES)


def tidy_newtokens(frame: pd.DataFrame) -> pd.DataFrame:
    frame = typed_frame(frame, NEWTOKENS)
    return frame.astype({"approach": str, "model": str, "device": str, "status": str})


def tidy_mutation(frame: pd.DataFrame) -> pd.DataFrame:
    frame = typed_frame(frame, MUTATION).astype({"approach": str, "role": str, "outcome": str})
    for column in MUTATION.numeric:  # counts: a missing one is none
        frame[column] = frame[column].fillna(0).astype(int)
    return frame


TIDIERS = {
    MUTATION.name: tidy_mutation,
    VERIFICATION.name: tidy_verification,
    RESULTS.name: tidy_results,
    REALDATA.name: tidy_realdata,
    NEWTOKENS.name: tidy_newtokens,
    PRIMITIVES.name: tidy_primitives,
}


def ok_rows(
    results: pd.DataFrame, sweep: str = HEADLINE_SWEEP, phase: str | None = STEP_PHASE
) -> pd.DataFrame:
    """Rows of ``sweep`` (and ``phase``, unless None) that were measured: the one filter every
    table, figure and answer about a sweep starts from."""
    keep = (results["sweep"] == sweep) & (results["status"] == OK)
    if phase is not None:
        keep &= results["phase"] == phase
    return results[keep]


def ordered_unique(values: Iterable) -> list:
    """Distinct values in order of first appearance (result files are written in a meaningful
    order: registry order for approaches, scenario order for scenarios)."""
    return list(dict.fromkeys(values))


def is_missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def format_count(value: float | None) -> str:
    return "–" if is_missing(value) else f"{value:,.0f}"


def format_seconds(seconds: float | None) -> str:
    if is_missing(seconds):
        return "–"
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def format_percent(fraction: float | None) -> str:
    if is_missing(fraction):
        return "–"
    return f"{fraction * 100:.3g}%"


def speed_phrase(reference_seconds: float, seconds: float) -> str:
    """'12.5× faster' or '2× slower': how ``seconds`` compares with ``reference_seconds``."""
    ratio = reference_seconds / seconds
    if math.isclose(ratio, 1.0, rel_tol=5e-3):
        return "as fast"
    if ratio > 1:
        return f"{ratio:.3g}× faster"
    return f"{1 / ratio:.3g}× slower"


def memory_phrase(reference_bytes: float, count: float) -> str:
    """'1.2 GiB less (−40%)' or '3 MiB more (+2%)': ``count`` against ``reference_bytes``."""
    saved = reference_bytes - count
    if saved == 0:
        return "the same"
    share = f" ({'−' if saved > 0 else '+'}{abs(saved) / reference_bytes:.0%})" * (
        reference_bytes > 0
    )
    return f"{format_bytes(abs(saved))} {'less' if saved > 0 else 'more'}{share}"


def describe_value(column: str, value: object) -> str | None:
    """One case column as words, or None when the value is unknown."""
    if is_missing(value):
        return None
    if column in ("V", "D", "T"):
        return f"{column} = {format_count(value)}"
    if column == "trainable_fraction":
        return f"{format_percent(value)} of rows trainable"
    if column == "sparse":
        return "sparse gradients" if value else "dense gradients"
    if column == "profile":
        return f"{value} profile"
    return str(value)


def describe_case(case: Mapping[str, object], columns: Sequence[str] = CASE_COLUMNS) -> str:
    """A case as a readable phrase: 'cpu, float32, V = 400,000, D = 300, ...'."""
    words = (describe_value(column, case.get(column)) for column in columns)
    return ", ".join(word for word in words if word)


def row_keys(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """One string per row made of ``columns``, nulls included.

    ``groupby`` drops rows whose key is null, and pandas 3 keeps nulls through ``astype(str)``;
    ``str`` on each value turns them into ``'None'``/``'nan'``, so no row is ever lost.
    """
    if frame.empty:
        return pd.Series([], index=frame.index, dtype=object)
    return frame[list(columns)].map(str).agg("|".join, axis=1)


def case_groups(
    frame: pd.DataFrame, varying: Sequence[str]
) -> list[tuple[dict[str, object], pd.DataFrame]]:
    """Split rows into groups that share every case column except ``varying``.

    A figure that varies V, say, needs every other case column fixed, or it would draw two
    different cases on one line; each group returned is one such figure, with its fixed values.
    """
    fixed = [column for column in (*CASE_COLUMNS, "profile") if column not in varying]
    groups = []
    for _, group in frame.groupby(row_keys(frame, fixed), sort=False):
        first = group.iloc[0]
        groups.append(({column: first[column] for column in fixed}, group))
    return groups


def environment_note(frame: pd.DataFrame) -> str:
    """Where rows were measured: CPU model and threads, and the GPU when there was one."""
    envs = [env for env in frame["env"] if isinstance(env, Mapping)]
    if not envs:
        return ""
    env = envs[0]
    parts = [f"{env.get('cpu_model', 'unknown CPU')}, {env.get('threads', '?')} threads"]
    if env.get("gpu_name"):
        parts.append(f"GPU {env['gpu_name']}")
    parts.append(f"torch {env.get('torch_version', '?')}")
    return "; ".join(parts)


def environment_table(sources: Mapping[str, Source]) -> pd.DataFrame:
    """One row per (result file, distinct environment), with the dates the records span."""
    rows = []
    for source in sources.values():
        if not source.available:
            continue
        envs = [env if isinstance(env, Mapping) else {} for env in source.frame["env"]]
        frame = pd.DataFrame.from_records(envs) if envs else pd.DataFrame()
        for key in ENV_KEYS:
            if key not in frame.columns:
                frame[key] = None
        identity = [key for key in ENV_KEYS if key != "date"]
        frame = frame.astype({key: str for key in identity})
        for values, group in frame.groupby(identity, sort=False, dropna=False):
            dates = sorted({str(d) for d in group["date"] if not is_missing(d)})
            span = " – ".join(dates[:1] + dates[1:][-1:])
            row = {"file": source.spec.filename, "records": len(group)}
            row.update(dict(zip(identity, values, strict=True)))
            row["date"] = span
            rows.append(row)
    return pd.DataFrame(rows)


def slug(*parts: object) -> str:
    """An HTML id made of ``parts``: lower case, letters, digits and dashes only."""
    text = "-".join(str(part) for part in parts).lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def json_text(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)
