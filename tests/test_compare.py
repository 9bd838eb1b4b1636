"""``python -m bench compare OLD NEW``: flags what changed beyond noise and threshold, exits 1 on a
regression, and refuses bad folders with an error naming the argument and the path.

The folders are tiny but built through :func:`bench.common.schema.record`, as the writers build
theirs, so a key the schema does not declare fails here first.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.__main__ import main as bench_main
from bench.common.schema import LATER_CASE_COLUMNS, RESULTS, VERIFICATION, record
from bench.compare.changes import Timing, Verdict, compare, judge
from bench.compare.folders import load_folder

ENV = {
    "torch_version": "2.5.1",
    "python_version": "3.11.9",
    "cpu_model": "Fixture CPU <script>alert('x')</script>",
    "cpu_count": 2,
    "threads": 2,
    "gpu_name": None,
    "cuda_version": None,
    "commit": "0123456789ab",
    "date": "2025-11-25T04:00:00+00:00",
}
APPROACHES = {"grad_zero": 0.010, "split": 0.004, "full": 0.030}
"""Approach -> its full step's median time at the headline case."""
PHASE_SHARES = {"forward": 0.2, "forward_backward": 0.6, "step": 1.0}
D, T, FRACTION = 300, 4096, 0.01
POINTS = (("headline", 400_000), ("vocab", 400_000), ("vocab", 10_000))
"""(sweep, V): the headline point is also a vocab point, written twice with the same times."""
SCENARIOS = {"adamw": "optimizer", "sgd_momentum": "optimizer", "max_norm": "option"}
PROPERTIES = ("P0", "P1", "P2")
PRINTED_ROW = re.compile(r"^\s+(\d+\.\d\d)×\s+(\S+)\s+(\S+)\s+(\S+)\s", re.MULTILINE)
"""A benchmark row of the printed table: ratio, verdict, approach, phase."""


def case_fields(approach: str, sweep: str, V: int) -> dict:
    """The case keys of a ``results.json`` row, as :meth:`BenchmarkCase.description` gives them."""
    return dict(
        approach=approach,
        device="cpu",
        dtype="float32",
        V=V,
        D=D,
        trainable_fraction=FRACTION,
        n_trainable=int(V * FRACTION),
        T=T,
        optimizer="adamw",
        sparse=False,
        sweep=sweep,
        profile="quick",
        compile=None,
    )


def measured_row(approach: str, sweep: str, V: int, phase: str, median_s: float) -> dict:
    """A measured row as :func:`bench.perf.rows.result_row` writes one."""
    return record(
        RESULTS,
        **case_fields(approach, sweep, V),
        phase=phase,
        status="ok",
        median_s=median_s,
        iqr_s=0.05 * median_s,
        rounds=9,
        tokens_per_s=T / median_s,
        persistent_bytes=4 * D * V,
        peak_bytes=6 * D * V,
        frozen_rows_identical=approach != "full",
        estimated_bytes=5 * D * V,
        peak_method="tracemalloc",
        threads=2,
        load_before=0.05,
        noisy=False,
        attempts=1,
        seed=0,
        env=ENV,
    )


def results_records() -> list[dict]:
    rows = []
    for approach, step_s in APPROACHES.items():
        for sweep, V in POINTS:
            for phase, share in PHASE_SHARES.items():
                rows.append(measured_row(approach, sweep, V, phase, step_s * share * V / 400_000))
    for phase in PHASE_SHARES:  # a case an approach refuses: skipped in every folder
        rows.append(
            record(
                RESULTS,
                **case_fields("split", "vocab", 2_000_000),
                phase=phase,
                status="skipped",
                reason="UnsupportedOption: sparse gradients",
                seed=0,
                env=ENV,
            )
        )
    return rows


def verification_records() -> list[dict]:
    return [
        record(
            VERIFICATION,
            approach=approach,
            origin="reference",
            scenario=scenario,
            group=group,
            property=property_name,
            outcome="violated" if (approach, property_name) == ("full", "P1") else "holds",
            expected="violated" if (approach, property_name) == ("full", "P1") else "holds",
            explanation="",
            examples=25,
            max_abs_change=0.0,
            weight_decay=0.01 if scenario == "adamw" else 0.0,
            sparse_gradients=False,
            params={"optimizer": scenario, "options": {}},
            env=ENV,
        )
        for approach in APPROACHES
        for scenario, group in SCENARIOS.items()
        for property_name in PROPERTIES
    ]


def write_folder(path: Path, results: list[dict] | None, verification: list[dict] | None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for spec, records in ((RESULTS, results), (VERIFICATION, verification)):
        if records is not None:
            (path / spec.filename).write_text(json.dumps(records, indent=1))
    return path


def scaled(rows: list[dict], approach: str, factor: float) -> list[dict]:
    """``rows`` with every time of ``approach`` (median, spread, throughput) ``factor`` times
    slower."""
    return [
        row
        if row["approach"] != approach or row["status"] != "ok"
        else row
        | dict(
            median_s=row["median_s"] * factor,
            iqr_s=row["iqr_s"] * factor,
            tokens_per_s=row["tokens_per_s"] / factor,
        )
        for row in rows
    ]


def timed_cases(rows: list[dict]) -> set[tuple]:
    """(approach, V, phase) of every measured row: what compare pairs, once per sweep point."""
    return {(r["approach"], r["V"], r["phase"]) for r in rows if r["status"] == "ok"}


def run_compare(*argv: object) -> int:
    return bench_main(["compare", *map(str, argv)])


@pytest.fixture
def old(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "old", results_records(), verification_records())


def test_a_folder_against_itself_flags_nothing_and_shows_every_case_within_noise(old, capsys):
    assert run_compare(old, old, "--out", old.parent / "self.html") == 0
    printed = capsys.readouterr().out
    rows = PRINTED_ROW.findall(printed)
    expected = timed_cases(results_records())
    assert len(rows) == len(expected)  # the headline point of two sweeps is compared once
    assert {(ratio, verdict) for ratio, verdict, _, _ in rows} == {("1.00", "~")}
    assert "0 regression(s), 0 improvement(s), 0 status change(s), 0 verification change(s)" in (
        printed
    )
    comparison = compare(load_folder("OLD", old), load_folder("NEW", old))
    assert {(t.approach, t.phase) for t in comparison.timings} == {(a, p) for a, _, p in expected}
    assert not comparison.unpaired and not comparison.status_changes


def test_a_folder_written_before_the_later_case_columns_pairs_with_one_written_after(
    tmp_path, capsys
):
    """A results file from before ``compile``, ``process``, ``malloc`` and ``loss`` existed
    measured what a null in each means, so its rows pair with a new file's null rows."""
    earlier = [
        {key: value for key, value in row.items() if key not in LATER_CASE_COLUMNS}
        for row in results_records()
    ]
    before = write_folder(tmp_path / "before", earlier, verification_records())
    given = measured_row("fused", "gradient", 400_000, "step", 0.002) | {"loss": "given-gradient"}
    after = write_folder(tmp_path / "after", [*results_records(), given], verification_records())
    assert run_compare(before, after) == 0
    printed = capsys.readouterr().out
    rows = PRINTED_ROW.findall(printed)
    assert len(rows) == len(timed_cases(results_records())), printed
    assert {(ratio, verdict) for ratio, verdict, _, _ in rows} == {("1.00", "~")}
    comparison = compare(load_folder("OLD", before), load_folder("NEW", after))
    assert [(entry.approach, entry.only_in) for entry in comparison.unpaired] == [("fused", "NEW")]


def test_an_approach_slowed_twofold_is_flagged_as_regressions_and_nothing_else(
    old, tmp_path, capsys
):
    slowed = scaled(results_records(), "split", 2.0)
    new = write_folder(tmp_path / "new", slowed, verification_records())
    assert run_compare(old, new) == 1
    printed = capsys.readouterr().out
    rows = PRINTED_ROW.findall(printed)
    split_cases = {c for c in timed_cases(slowed) if c[0] == "split"}
    flagged = [(verdict, approach) for _, verdict, approach, _ in rows if verdict != "~"]
    assert flagged == [("regression", "split")] * len(split_cases)
    assert rows[: len(split_cases)] == [
        (ratio, "regression", "split", phase) for ratio, _, _, phase in rows[: len(split_cases)]
    ], "regressions come first"
    assert {ratio for ratio, verdict, _, _ in rows if verdict == "regression"} == {"2.00"}
    assert f"{len(split_cases)} regression(s), 0 improvement(s)" in printed


def test_an_improvement_is_listed_and_the_exit_status_stays_zero(old, tmp_path, capsys):
    faster = scaled(results_records(), "full", 0.5)  # the last approach: sorting must move it
    noisy = next(
        r for r in faster if (r["approach"], r["V"], r["phase"]) == ("full", 10_000, "step")
    )
    noisy.update(noisy=True)
    cells = verification_records()
    for row in (*faster, *cells):
        row["env"] = ENV | {"torch_version": "2.6.0"}
    new = write_folder(tmp_path / "new", faster, cells)
    assert run_compare(old, new) == 0
    printed = capsys.readouterr().out
    rows = PRINTED_ROW.findall(printed)
    improved = {(approach, verdict) for ratio, verdict, approach, _ in rows if verdict != "~"}
    assert improved == {("full", "improvement")}
    full_cases = {c for c in timed_cases(faster) if c[0] == "full"}
    assert [verdict for _, verdict, _, _ in rows[: len(full_cases)]] == ["improvement"] * len(
        full_cases
    )
    assert f"0 regression(s), {len(full_cases)} improvement(s)" in printed
    (noted,) = [line for line in printed.splitlines() if line.endswith("marked noisy in NEW")]
    assert re.match(r"\s+0\.50×\s+improvement\s+full\s+step\s.*V = 10,000", noted)
    assert re.search(r"^\s+torch_version\s+2\.5\.1\s+2\.6\.0$", printed, re.MULTILINE)
    assert "Environment keys that differ: 1" in printed


@pytest.mark.parametrize(
    ("factor", "iqr_share", "verdict"),
    [
        (1.3, 1.0, Verdict.WITHIN_NOISE),  # above the threshold, but the spreads overlap
        (1.05, 0.01, Verdict.SLOWER),  # outside the noise, inside the threshold
        (0.95, 0.01, Verdict.FASTER),
        (1.2, 0.01, Verdict.REGRESSION),
        (0.8, 0.01, Verdict.IMPROVEMENT),
    ],
)
def test_a_change_is_flagged_only_beyond_both_the_threshold_and_the_noise(
    factor, iqr_share, verdict
):
    old = Timing(median_s=0.010, iqr_s=0.010 * iqr_share, noisy=False)
    new = Timing(median_s=0.010 * factor, iqr_s=0.010 * factor * iqr_share, noisy=False)
    assert judge(old, new, threshold=0.10) is verdict


def test_changed_outcomes_status_changes_and_one_sided_entries_are_listed(old, tmp_path, capsys):
    cells = verification_records()
    changed = next(
        c
        for c in cells
        if (c["approach"], c["scenario"], c["property"]) == ("split", "max_norm", "P1")
    )
    changed["outcome"] = "violated"
    cells.append(cells[0] | dict(scenario="ddp", group="distributed", property="P7"))
    rows = [r for r in results_records() if not (r["approach"] == "full" and r["V"] == 10_000)]
    failed = next(
        r for r in rows if (r["approach"], r["V"], r["phase"]) == ("split", 10_000, "step")
    )
    failed.update(status="failed", reason="RuntimeError: out of memory", median_s=None)
    new = write_folder(tmp_path / "new", rows, cells)
    assert run_compare(old, new) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^\s+split\s+max_norm\s+P1\s+holds\s+violated$", printed, re.MULTILINE)
    assert re.search(
        r"^\s+split\s+step\s+ok\s+failed\s+RuntimeError: out of memory\s", printed, re.MULTILINE
    )
    only_in_old = re.findall(r"^\s+results\.json\s+OLD\s+full\s+(\w+): .*V = 10,000", printed, re.M)
    assert sorted(only_in_old) == sorted(PHASE_SHARES)
    assert re.search(r"^\s+verification\.json\s+NEW\s+grad_zero\s+ddp / P7$", printed, re.M)
    assert "1 status change(s), 1 verification change(s), 4 entr(ies) in one folder only" in printed


def test_a_file_only_one_folder_holds_is_named_as_not_compared(old, tmp_path, capsys):
    new = write_folder(tmp_path / "new", results_records(), None)
    assert run_compare(old, new) == 0
    assert f"not compared: verification.json is only in OLD ({old / 'verification.json'})" in (
        capsys.readouterr().out
    )


def test_the_help_names_the_arguments_and_the_exit_status(capsys):
    with pytest.raises(SystemExit) as exited:
        run_compare("--help")
    assert exited.value.code == 0
    printed = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal
    assert "OLD NEW" in printed and "--threshold" in printed
    assert "Exit status: 1 when at least one case regressed" in printed


def bad_folders(tmp_path: Path) -> dict[str, tuple[Path, Path, str]]:
    """Name -> (OLD, NEW, what the error must say), one problem each."""
    good = write_folder(tmp_path / "good", results_records(), verification_records())
    missing = tmp_path / "missing"
    empty = write_folder(tmp_path / "empty", None, None)
    not_a_list = write_folder(tmp_path / "dict", None, None)
    (not_a_list / "results.json").write_text(json.dumps({"median_s": 1.0}))
    not_json = write_folder(tmp_path / "text", None, None)
    (not_json / "verification.json").write_text("holds, violated")
    not_objects = write_folder(tmp_path / "strings", None, ["holds"])
    lacking = write_folder(
        tmp_path / "lacking",
        [{k: v for k, v in r.items() if k != "median_s"} for r in results_records()],
        None,
    )
    extra_key = write_folder(
        tmp_path / "extra",
        [r | {"median_ms": 1.0} for r in results_records()],
        verification_records(),
    )
    return {
        "missing": (missing, good, f"OLD: {missing} does not exist; expected a result folder"),
        "empty": (good, empty, f"NEW: {empty} holds neither results.json nor verification.json"),
        "not a list": (
            not_a_list,
            good,
            f"OLD: {not_a_list / 'results.json'}: expected a JSON list of result records, got dict",
        ),
        "not JSON": (
            good,
            not_json,
            f"NEW: {not_json / 'verification.json'} is not JSON (",
        ),
        "not objects": (
            good,
            not_objects,
            f"NEW: {not_objects / 'verification.json'}: record 0 is a str; expected a JSON object",
        ),
        "lacking a key": (
            lacking,
            good,
            f"OLD: {lacking / 'results.json'}: records lack the key(s) median_s;",
        ),
        "another schema": (
            good,
            extra_key,
            f"OLD, NEW: {good / 'results.json'} and {extra_key / 'results.json'} carry different "
            "keys (written by different schema versions): only in OLD: none; only in NEW: "
            "median_ms;",
        ),
    }


@pytest.mark.parametrize(
    "problem",
    [
        "missing",
        "empty",
        "not a list",
        "not JSON",
        "not objects",
        "lacking a key",
        "another schema",
    ],
)
def test_bad_input_names_the_argument_and_the_path_and_exits_2(problem, tmp_path, capsys):
    old, new, message = bad_folders(tmp_path)[problem]
    assert run_compare(old, new) == 2
    captured = capsys.readouterr()
    assert f"bench compare: {message}" in captured.err
    assert captured.out == ""
    assert not (new / "compare.html").exists()


def test_the_html_page_is_written_beside_new_and_highlights_the_regression(old, tmp_path):
    new = write_folder(
        tmp_path / "new", scaled(results_records(), "full", 2.0), verification_records()
    )
    assert run_compare(old, new) == 1
    page = (new / "compare.html").read_text(encoding="utf-8")
    findings = re.findall(r'<tr class="finding">(.*?)</tr>', page)
    assert findings, "no highlighted row"
    assert all("<td>regression</td><td>full</td>" in row for row in findings)
    assert "<td>2.00×</td><td>regression</td><td>full</td><td>step</td>" in page
    assert "V = 400,000" in findings[0]
    assert "<script>" not in page, "record text must be escaped"
    chosen = tmp_path / "ci" / "diff.html"
    assert run_compare(old, new, "--out", chosen) == 1
    assert chosen.read_text(encoding="utf-8") == page
