"""Result files that are valid after every record: an interrupted run keeps what it finished.

``ResultsFile`` holds records (flat dicts) for one JSON file and the CSV beside it. Each
``append`` rewrites both atomically (write to a temporary file, then rename), so a reader — or a
resumed run — never sees a half-written file. Runs have at most a few thousand records, so the
rewrite costs milliseconds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd


class ResultsFile:
    """Records in ``path`` (a JSON list) and ``path.with_suffix('.csv')``."""

    def __init__(self, path: str | Path, key: Iterable[str], resume: bool = True):
        self.path = Path(path)
        self.csv_path = self.path.with_suffix(".csv")
        self.key = tuple(key)
        self.records: list[dict] = []
        if resume and self.path.exists():
            self.records = load_records(self.path)

    def key_of(self, record: Mapping) -> tuple:
        return tuple(json.dumps(record.get(k), sort_keys=True, default=str) for k in self.key)

    def done(self) -> set[tuple]:
        """Keys of the records already written (a resumed run skips them)."""
        return {self.key_of(r) for r in self.records}

    def append(self, record: Mapping) -> None:
        """Add ``record`` (replacing one with the same key) and rewrite both files."""
        key = self.key_of(record)
        self.records = [r for r in self.records if self.key_of(r) != key]
        self.records.append(dict(record))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps(self.records, indent=1, default=str))
        frame = pd.json_normalize(self.records, sep=".")
        write_atomic(self.csv_path, frame.to_csv(index=False))


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
