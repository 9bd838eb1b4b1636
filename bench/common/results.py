"""Result files that are valid after every batch of records: an interrupted run keeps what it
finished.

``ResultsFile`` holds records (flat dicts) for one JSON file and the CSV beside it. Each
``append``/``extend`` rewrites the JSON atomically (write to a temporary file, then rename), so a
reader — or a resumed run — never sees a half-written file. Every record is serialised once,
when it arrives, so a rewrite only joins text: a verify run writes about 4,000 records, and
re-serialising all of them after each one cost more than the verification itself (0.3 s a
write, measured). The CSV is a flattened view for spreadsheets; pandas builds it from all the
records, so it is rewritten at most every ``CSV_INTERVAL_S`` seconds and when the file is
closed (``close()`` or leaving a ``with`` block).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pandas as pd

CSV_INTERVAL_S = 30.0
"""Longest a CSV view lags behind its JSON file while a run goes on."""


class ResultsFile:
    """Records in ``path`` (a JSON list) and ``path.with_suffix('.csv')``, one per key."""

    def __init__(self, path: str | Path, key: Iterable[str], resume: bool = True):
        self.path = Path(path)
        self.csv_path = self.path.with_suffix(".csv")
        self.key = tuple(key)
        self._texts: dict[tuple, str] = {}  # key -> the record as JSON, in arrival order
        self._records: dict[tuple, dict] = {}
        self._csv_written: float | None = None  # monotonic time; None: no view yet
        self._csv_stale = False
        if resume and self.path.exists():
            for record in load_records(self.path):
                self._put(record)

    @property
    def records(self) -> list[dict]:
        return list(self._records.values())

    def key_of(self, record: Mapping) -> tuple:
        return tuple(json.dumps(record.get(k), sort_keys=True, default=str) for k in self.key)

    def done(
        self, fields: Iterable[str] | None = None, where: Callable[[dict], bool] | None = None
    ) -> set[tuple]:
        """What a resumed run skips: the ``fields`` values (default: the key, as ``key_of``
        gives it) of the records ``where`` accepts (default: all)."""
        fields = tuple(fields) if fields is not None else None
        return {
            self.key_of(r) if fields is None else tuple(r.get(f) for f in fields)
            for r in self._records.values()
            if where is None or where(r)
        }

    def append(self, record: Mapping) -> None:
        """Add ``record`` (replacing one with the same key) and rewrite the file."""
        self.extend([record])

    def extend(self, records: Iterable[Mapping]) -> None:
        """Add ``records`` (each replacing one with the same key) and rewrite the file once."""
        for record in records:
            self._put(dict(record))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, "[\n" + ",\n".join(self._texts.values()) + "\n]\n")
        self._csv_stale = True
        # The monotonic clock's zero is arbitrary (boot, on Linux): "never written" is its own
        # state, or a run on a machine up for less than the interval would get no view at all.
        if self._csv_written is None or time.monotonic() - self._csv_written >= CSV_INTERVAL_S:
            self.write_csv()

    def write_csv(self) -> None:
        """Rewrite the CSV view from every record."""
        frame = pd.json_normalize(self.records, sep=".")
        write_atomic(self.csv_path, frame.to_csv(index=False))
        self._csv_written = time.monotonic()
        self._csv_stale = False

    def close(self) -> None:
        """Bring the CSV up to date with the JSON."""
        if self._csv_stale:
            self.write_csv()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _put(self, record: dict) -> None:
        key = self.key_of(record)
        self._records.pop(key, None)  # a replaced record moves to the end, as it arrived last
        self._texts.pop(key, None)
        self._records[key] = record
        self._texts[key] = json.dumps(record, indent=1, default=str)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_records(path: str | Path) -> list[dict]:
    """The records of a results JSON file; a clear error if it is not one."""
    path = Path(path)
    data = json.loads(path.read_text())
    if not isinstance(data, list):
        kind = type(data).__name__
        raise ValueError(f"{path}: expected a JSON list of result records, got {kind}")
    return data
