"""The pretrained tables of one benchmark run, drawn once and read by every case that uses them.

Every case runs in a fresh process, and drawing a 400,000 × 300 table there took 0.9 s on a
2-core CPU; drawing it again slice by slice for the frozen-rows check took as long. That was 90%
of a headline case's time (its three timed phases took 0.3 s) and a third of ``bench run``.
So the parent draws each distinct table once (:func:`bench.perf.cases.make_weight`: same values
as before) into a raw file of this run's temporary folder, and a case reads it: into fresh
anonymous memory for the build (what the peak-memory meter sees is unchanged), slice by slice for
the check (no second copy of the table is alive). Reading a cached file is about ten times
faster than drawing it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from bench.perf.cases import WEIGHT_CHUNK_ROWS, BenchmarkCase, make_weight


@dataclass(frozen=True)
class TableFiles:
    """Raw files of pretrained tables in ``directory``, one per (V, D, dtype, seed)."""

    directory: Path

    def path(self, case: BenchmarkCase) -> Path:
        return self.directory / f"weight-V{case.V}-D{case.D}-{case.dtype}-seed{case.seed}.bin"

    def ensure(self, case: BenchmarkCase) -> None:
        """Write ``case``'s table unless it is there (in the parent, before the case runs)."""
        path = self.path(case)
        if path.exists():
            return
        weight = make_weight(_on_cpu(case))
        partial = path.with_name(path.name + ".partial")
        weight.view(torch.uint8).numpy().tofile(partial)
        partial.rename(path)

    def read(self, case: BenchmarkCase) -> Tensor:
        """``case``'s ``(V, D)`` table on its device, in memory of its own."""
        weight = torch.empty(case.V, case.D, dtype=case.torch_dtype)
        with self.path(case).open("rb") as file:
            file.readinto(weight.view(torch.uint8).numpy().data)
        return weight.to(case.device)

    def chunks(self, case: BenchmarkCase) -> Iterator[tuple[int, Tensor]]:
        """``(first_row, rows)`` slices of ``case``'s table, one slice in memory at a time."""
        row_bytes = case.D * case.torch_dtype.itemsize
        with self.path(case).open("rb") as file:
            for first in range(0, case.V, WEIGHT_CHUNK_ROWS):
                rows = torch.empty(
                    min(WEIGHT_CHUNK_ROWS, case.V - first), case.D, dtype=case.torch_dtype
                )
                file.seek(first * row_bytes)
                file.readinto(rows.view(torch.uint8).numpy().data)
                yield first, rows.to(case.device)


def _on_cpu(case: BenchmarkCase) -> BenchmarkCase:
    return dataclasses.replace(case, device="cpu")
