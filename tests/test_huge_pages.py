"""The pretrained table's copy on transparent huge pages: same values, never aliased, advised only
where it can help (a large CPU table) and the system offers huge pages."""

from __future__ import annotations

import pytest
import torch

import impls
from impls import huge_pages

LARGE_ROWS = huge_pages.HUGE_PAGE_MIN_BYTES // (4 * 64) + 1_000  # float32, D = 64: above the floor


def vma_fields(address: int) -> dict[str, str]:
    """The ``/proc/self/smaps`` fields of the mapping that holds ``address``."""
    fields: dict[str, str] = {}
    inside = False
    with open("/proc/self/smaps") as smaps:
        lines = smaps.readlines()
    for line in lines:
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= address < end
        elif inside:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def test_a_large_table_is_copied_onto_advised_pages_with_its_values():
    if huge_pages._madvise() is None:
        pytest.skip("this system offers no transparent huge pages to advise")
    weight = torch.randn(LARGE_ROWS, 64)
    emb = impls.APPROACHES["fused"].from_pretrained(weight, torch.arange(10))
    table = emb.frozen_weight
    assert table.data_ptr() != weight.data_ptr() and torch.equal(table, weight)
    fields = vma_fields(table.data_ptr() + huge_pages.HUGE_PAGE_BYTES)
    assert fields.get("THPeligible") == "1", (
        f"fused: the frozen table's mapping is not eligible for huge pages: {fields}"
    )


@pytest.mark.parametrize("rows, advised", [(1_000, False), (LARGE_ROWS, True)])
def test_only_a_table_above_the_floor_is_advised(rows, advised, monkeypatch):
    calls = []
    monkeypatch.setattr(huge_pages, "_madvise", lambda: lambda *args: calls.append(args) or 0)
    weight = torch.randn(rows, 64)
    copy = huge_pages.huge_page_copy(weight)
    assert torch.equal(copy, weight) and copy.data_ptr() != weight.data_ptr()
    assert bool(calls) is advised, (rows, calls)


def test_without_huge_pages_the_copy_is_a_plain_one(monkeypatch):
    monkeypatch.setattr(huge_pages, "_madvise", lambda: None)
    weight = torch.randn(LARGE_ROWS, 64, requires_grad=True)
    copy = huge_pages.huge_page_copy(weight)
    assert not copy.requires_grad and torch.equal(copy, weight.detach())
    assert not huge_pages.advise_huge_pages(copy)
