"""The kernels timed beside the cases (``primitives.json``) and their table in the report."""

from __future__ import annotations

import json
import re

import pytest

from bench.common.schema import PRIMITIVES
from bench.implementations import resolve
from bench.perf.cases import PROFILES, BenchmarkCase
from bench.perf.command import headline_cases, run_benchmarks
from bench.perf.primitives import (
    PRIMITIVE_LIST,
    measure_primitives,
    primitive_bytes,
    primitive_rows,
)
from bench.report.command import build_report
from bench.report.sources import load_sources
from bench.report.tables import primitives_table

SMOKE = PROFILES["smoke"]
CASE = BenchmarkCase(
    approach="", device="cpu", dtype="float32", V=3_000, D=8, trainable_fraction=0.02, T=100,
    optimizer="adamw", sparse=False, sweep="headline", profile="smoke",
)  # fmt: skip


def test_every_primitive_is_timed_on_the_cases_shapes_beside_a_measured_partner():
    records = measure_primitives(CASE, repeats=5)
    by_name = {r["primitive"]: r for r in records}
    assert list(by_name) == [p.name for p in PRIMITIVE_LIST]
    for r in records:
        assert list(r) == list(PRIMITIVES.columns), r["primitive"]
        assert r["status"] == "ok" and r["median_s"] > 0 and r["iqr_s"] >= 0, r
        rows = CASE.T if r["primitive"].endswith("_rows") else CASE.n_trainable
        assert (r["rows"], r["width"]) == (rows, CASE.D), r
        assert r["bytes_moved"] == 2 * rows * CASE.D * 4, r
        partner = r["compared_with"]
        assert partner is None or by_name[partner]["compared_with"] is None, r
        assert partner is None or (by_name[partner]["rows"], by_name[partner]["width"]) == (
            r["rows"],
            r["width"],
        ), f"{r['primitive']} is compared with {partner} on other shapes"


def test_a_table_shorter_than_the_tokens_copies_what_it_has():
    short = BenchmarkCase(**{**CASE.__dict__, "V": 50})
    assert {r["status"] for r in measure_primitives(short, repeats=2)} == {"ok"}


@pytest.mark.parametrize("repeats", [0, -1, 2.5])
def test_bad_repeats_are_refused_naming_the_argument(repeats):
    with pytest.raises(ValueError, match=rf"repeats: expected a positive int, got {repeats!r}"):
        measure_primitives(CASE, repeats=repeats)


def test_primitives_that_would_not_fit_are_skipped_with_the_estimate_as_reason():
    records = primitive_rows(CASE, memory_budget=1_000, timeout_s=60)
    assert [r["primitive"] for r in records] == [p.name for p in PRIMITIVE_LIST]
    assert {r["status"] for r in records} == {"skipped"}
    assert primitive_bytes(CASE) > 1_000
    assert all(r["reason"].startswith("estimated ") and r["median_s"] is None for r in records)


def test_a_failing_measurement_is_recorded_as_failed_with_its_error():
    # no machine has a 100th GPU: the fresh process fails moving the table there
    absent = BenchmarkCase(**{**CASE.__dict__, "device": "cuda:99"})
    records = primitive_rows(absent, memory_budget=10**12, timeout_s=60)
    assert [r["primitive"] for r in records] == [p.name for p in PRIMITIVE_LIST]
    assert {r["status"] for r in records} == {"failed"}
    assert all(r["reason"] and r["median_s"] is None for r in records)


def test_only_a_run_with_the_headline_sweep_times_primitives_once_per_device():
    assert [c.device for c in headline_cases(SMOKE, ["cpu"])] == ["cpu"]
    assert headline_cases(SMOKE.only(["vocab"]), ["cpu"]) == []


def test_bench_run_writes_the_primitives_keeps_them_on_resume_and_the_report_pairs_them(tmp_path):
    profile = SMOKE.only(["headline"])
    first = run_benchmarks(profile, [resolve("freeze_all")], ["cpu"], tmp_path)
    assert "primitives cpu" in first.outcomes["ok"]
    written = json.loads((tmp_path / PRIMITIVES.filename).read_text())
    assert {r["status"] for r in written} == {"ok"} and len(written) == len(PRIMITIVE_LIST)
    again = run_benchmarks(profile, [resolve("freeze_all")], ["cpu"], tmp_path)
    assert "primitives cpu" in again.outcomes["resumed"]
    assert json.loads((tmp_path / PRIMITIVES.filename).read_text()) == written

    frame = load_sources(tmp_path)["primitives"].frame
    table = primitives_table(frame)
    assert list(table["kernel"]) == ["gather_rows", "sqrt_zeros"]
    medians = {r["primitive"]: r["median_s"] for r in written}
    expected = f"{medians['sqrt_zeros'] / medians['sqrt_positive']:.2f}×"
    assert table.set_index("kernel").loc["sqrt_zeros", "× slower"] == expected
    page = build_report(tmp_path, tmp_path / "out").path.read_text()
    section = page.split("What bounds the fast path on this machine")[1].split("<h3>")[0]
    assert re.search(r"<td>sqrt_zeros</td>", section) and expected in section


def test_the_report_says_how_to_get_the_primitives_when_they_are_missing(tmp_path):
    run_benchmarks(SMOKE.only(["vocab"]), [resolve("freeze_all")], ["cpu"], tmp_path)
    assert not (tmp_path / PRIMITIVES.filename).exists()
    page = build_report(tmp_path, tmp_path / "out").path.read_text()
    section = page.split("What bounds the fast path on this machine")[1].split("<h3>")[0]
    assert "No kernel timings" in section and "<table" not in section
