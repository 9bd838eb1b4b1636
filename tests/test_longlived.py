"""The long-lived sweep: every approach's model alive in one process, steps timed in rounds.

What is asserted is the procedure (all models built before any timed step, the round order
rotated, one value per timed step, phases nested inside their step), the rows it writes beside
the fresh-process rows, resuming, and that a model that does not fit or a process that fails is
recorded with its reason. Wall-clock values are the benchmark's business, not the tests'.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

import impls
from bench.implementations import resolve
from bench.perf import longlived, measure
from bench.perf.cases import (
    GIVEN_GRADIENT,
    LONG_LIVED,
    PROFILES,
    RETAINED,
    SIDE_BY_SIDE,
    Point,
    long_lived_cases,
    profile_cases,
)
from bench.perf.command import run_benchmarks
from bench.perf.longlived import long_lived_rows, measure_long_lived
from impls.split import Split

SMOKE_POINT = Point(
    "longlived",
    V=2_000,
    D=16,
    T=64,
    trainable_fraction=0.01,
    optimizer="adamw",
    approaches=("split", "fused", "grad_zero"),
    process=LONG_LIVED,
)
PROFILE = dataclasses.replace(
    PROFILES["smoke"], points=(), long_lived=SMOKE_POINT, long_lived_rounds=3
)


def cases_of(names: list[str]):
    (cases,) = long_lived_cases(PROFILE, names, ["cpu"])
    return cases


def test_models_are_all_built_first_then_timed_in_rotated_rounds(monkeypatch):
    """With one step a round: round r starts at approach r (mod k), and every build comes before
    the first timed step, so each step runs while every other model is alive."""
    monkeypatch.setattr(longlived, "ROUND_S", 0.0)
    events = []
    build = longlived.build_training

    def recording_build(implementation, case, tables=None):
        training = build(implementation, case, tables)
        if case.V == SMOKE_POINT.V:  # not the tiny warm-up build
            events.append(("build", case.approach))
            step = training.step

            def recording_step(mark=lambda: None):
                events.append(("step", case.approach))
                step(mark)

            training.step = recording_step
        return training

    monkeypatch.setattr(longlived, "build_training", recording_build)
    names = ["split", "fused", "grad_zero"]
    timings = measure_long_lived([resolve(n) for n in names], cases_of(names), rounds=3)
    builds = [i for i, (kind, _) in enumerate(events) if kind == "build"]
    assert builds == [0, 1, 2], events
    timed = [name for kind, name in events[3:] if kind == "step"][len(names) * 2 :]  # warm-ups
    assert timed == [*names, "fused", "grad_zero", "split", "grad_zero", "split", "fused"]
    assert [t.steps_per_round for t in timings] == [1, 1, 1]


def test_steps_per_round_come_from_the_typical_warm_up_step_not_a_slow_early_one():
    """The first warm-up steps in a shared process are slow (seconds as measured for ``fused``);
    calibrating on the second gave 2 steps a round where the steps that follow fill 10."""
    warmup = [0.058, 0.025, 0.025, 0.012, 0.005, 0.005, 0.005, 0.005, 0.005, 0.005]
    assert longlived.steps_filling(warmup, 0.05) == 10
    assert longlived.steps_filling(warmup[:2], 0.05) == 2
    assert longlived.steps_filling([3.0, 0.7], 0.05) == 1  # a slow step still gets one
    assert longlived.steps_filling([0.01], 0.05) == 5  # only the first: it is all there is
    with pytest.raises(ValueError, match="warmup_seconds"):
        longlived.steps_filling([], 0.05)


def test_warm_up_lasts_its_rounds_worth_of_time_before_calibrating(monkeypatch):
    """Two steps are not enough when they are short: warm-up goes on for WARMUP_ROUNDS rounds."""
    names = ["fused"]
    (case,) = cases_of(names)
    training = longlived.build_training(resolve("fused"), case)
    steps = []
    step = training.step
    monkeypatch.setattr(training, "step", lambda mark=lambda: None: steps.append(step(mark)))
    monkeypatch.setattr(longlived, "ROUND_S", 0.02)
    longlived._calibrated_steps(training, None)
    assert len(steps) > longlived.WARMUP_STEPS, len(steps)


def test_each_timed_step_gives_its_phases_nested_inside_it():
    names = ["split", "fused"]
    timings = measure_long_lived([resolve(n) for n in names], cases_of(names), rounds=2)
    for timing in timings:
        seconds = timing.seconds
        assert len(seconds["step"]) == 2 * timing.steps_per_round >= 2, timing.approach
        for forward, backward, step in zip(
            seconds["forward"], seconds["forward_backward"], seconds["step"], strict=True
        ):
            assert 0 < forward < backward < step, (timing.approach, forward, backward, step)


def test_the_sweep_writes_long_lived_rows_beside_fresh_ones_and_resumes(tmp_path):
    names = ["split", "fused", "grad_zero"]
    first = run_benchmarks(PROFILE, [resolve(n) for n in names], ["cpu"], tmp_path)
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {(r["approach"], r["phase"]) for r in rows} == {
        (n, p) for n in names for p in ("forward", "forward_backward", "step")
    }
    assert {(r["process"], r["sweep"], r["status"]) for r in rows} == {
        (LONG_LIVED, "longlived", "ok")
    }
    assert all(r["median_s"] > 0 and r["iqr_s"] is not None and r["bound_s"] for r in rows)
    assert sorted(first.outcomes["ok"]) == sorted(f"long-lived {n}" for n in names)
    entries = json.loads((tmp_path / "pytest-benchmark.json").read_text())["benchmarks"]
    assert len(entries) == 3 * len(names)
    again = run_benchmarks(PROFILE, [resolve(n) for n in names], ["cpu"], tmp_path)
    assert "ok" not in again.outcomes and len(again.outcomes["resumed"]) == len(names)


def test_a_model_that_does_not_fit_beside_the_others_is_skipped_with_the_estimate(tmp_path):
    names = ["split", "grad_zero"]
    cases = cases_of(names)
    split_bytes = longlived.estimate_memory(resolve("split"), cases[0])
    budget = split_bytes.total_bytes + 1_000  # room for split only
    run_benchmarks(PROFILE, [resolve(n) for n in names], ["cpu"], tmp_path, memory_budget=budget)
    rows = json.loads((tmp_path / "results.json").read_text())
    status = {r["approach"]: (r["status"], r["reason"]) for r in rows if r["phase"] == "step"}
    assert status["split"] == ("ok", None)
    assert status["grad_zero"][0] == "skipped"
    assert "with the models before it" in status["grad_zero"][1], status


def test_a_shared_process_holds_its_steps_to_the_bandwidth_of_its_own_rounds():
    """The bound of a one-process row is at the bandwidth of a copy timed in the same rounds as
    its steps, not at the run's (here an impossible 1 byte/s); where the copy would not fit
    beside the models, the run's bandwidth stands."""
    names = ["split", "fused"]
    arguments = dict(bandwidth=1.0, timeout_s=120)
    rows, _ = long_lived_rows(
        [resolve(n) for n in names], cases_of(names), 2, memory_budget=None, **arguments
    )
    bandwidths = {row["bandwidth_bytes_per_s"] for row in rows}
    assert len(bandwidths) == 1 and min(bandwidths) > 1e8, bandwidths
    split = cases_of(["split"])
    room_for_split = longlived.estimate_memory(resolve("split"), split[0]).total_bytes + 1_000
    rows, _ = long_lived_rows(
        [resolve("split")], split, 2, memory_budget=room_for_split, **arguments
    )
    assert {(row["status"], row["bandwidth_bytes_per_s"]) for row in rows} == {("ok", 1.0)}


def test_a_bandwidth_copy_refuses_to_give_a_bandwidth_before_it_is_timed():
    from bench.perf.bound import BandwidthCopy

    copy = BandwidthCopy(1 << 20, "cpu")
    with pytest.raises(ValueError, match="durations: expected at least one timed copy"):
        copy.bandwidth()
    copy.time()
    assert copy.bandwidth() > 0


class FailsOnTheRealTable(Split):
    """Builds on the estimate's tiny tables, raises on the sweep's table."""

    name = "fails_on_the_real_table"

    def __init__(self, weight, trainable_mask, options):
        if weight.shape[0] == SMOKE_POINT.V:
            raise RuntimeError(f"simulated: refusing {weight.shape[0]} rows")
        super().__init__(weight, trainable_mask, options)


def test_a_failing_shared_process_fails_every_admitted_row_with_its_reason(tmp_path, monkeypatch):
    monkeypatch.setitem(impls.APPROACHES, FailsOnTheRealTable.name, FailsOnTheRealTable)
    profile = dataclasses.replace(
        PROFILE, long_lived=dataclasses.replace(SMOKE_POINT, approaches=None)
    )
    names = ["split", FailsOnTheRealTable.name]
    run = run_benchmarks(profile, [resolve(n) for n in names], ["cpu"], tmp_path)
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {r["status"] for r in rows} == {"failed"}
    assert all("simulated: refusing 2000 rows" in r["reason"] for r in rows)
    assert len(run.outcomes["failed"]) == len(names)


def test_rounds_and_cases_are_checked_by_name():
    with pytest.raises(ValueError, match="rounds: expected at least 1, got 0"):
        measure_long_lived([resolve("split")], cases_of(["split"]), rounds=0)
    with pytest.raises(ValueError, match="one case per implementation"):
        measure_long_lived([resolve("split"), resolve("fused")], cases_of(["split"]), rounds=1)


def test_a_case_refuses_an_unknown_process_by_name():
    with pytest.raises(
        ValueError,
        match="process: expected None or one of \\('long-lived', 'side-by-side'\\), got 'warm'",
    ):
        dataclasses.replace(cases_of(["split"])[0], process="warm")


def test_the_sweep_is_on_the_quick_profile_and_restricted_like_a_sweep():
    quick = PROFILES["quick"]
    assert quick.long_lived is not None and quick.long_lived.process == LONG_LIVED
    assert quick.only(["longlived"]).points == () and quick.only(["headline"]).long_lived is None


def test_the_report_sets_each_long_lived_step_beside_its_fresh_step():
    """One row per approach: the long-lived median, its ratio to the fastest and to the same
    case measured in a fresh process; the fastest first."""
    import pandas as pd

    from bench.perf.rows import result_row
    from bench.report.tables import long_lived_table

    fresh_point = dataclasses.replace(SMOKE_POINT, sweep="headline", process=None)
    medians = {"split": (0.004, 0.003), "fused": (0.002, 0.0025)}  # long-lived, fresh
    rows = []
    for name, (long_lived_s, fresh_s) in medians.items():
        for point, median in ((SMOKE_POINT, long_lived_s), (fresh_point, fresh_s)):
            case = point.case(name, "cpu", "smoke")
            rows.append(result_row(case, "step", median_s=median, iqr_s=median / 10, noisy=False))
    table = long_lived_table(pd.DataFrame(rows))
    assert list(table["approach"]) == ["fused", "split"]
    assert list(table["× fastest"]) == ["1.0×", "2.0×"]
    assert list(table["long-lived / fresh"]) == ["0.80×", "1.33×"]


COMPILED_GROUP = tuple(
    dataclasses.replace(
        SMOKE_POINT, sweep="compiled", compile=mode, approaches=("fused",), process=SIDE_BY_SIDE
    )
    for mode in (None, "fullgraph_loss")
)


def test_compiled_and_eager_are_timed_in_one_process_and_set_side_by_side(tmp_path):
    """A side-by-side group runs in one process: the eager and the compiled rows of the compiled
    sweep, both long-lived, and the report pairs the compiled row with that eager row (not with
    the fresh headline row)."""
    import pandas as pd

    from bench.perf.rows import result_row
    from bench.report.tables import compiled_table

    profile = dataclasses.replace(
        PROFILE, long_lived=None, side_by_side=(COMPILED_GROUP,), side_by_side_rounds=2
    )
    run = run_benchmarks(profile, [resolve("fused")], ["cpu"], tmp_path)
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {(r["compile"], r["process"], r["sweep"], r["status"]) for r in rows} == {
        (None, SIDE_BY_SIDE, "compiled", "ok"),
        ("fullgraph_loss", SIDE_BY_SIDE, "compiled", "ok"),
    }, [r["reason"] for r in rows]
    assert sorted(run.outcomes["ok"]) == [
        "long-lived fused compiled eager",
        "long-lived fused compiled fullgraph_loss",
    ]
    fresh = SMOKE_POINT.case("fused", "cpu", "smoke")
    fresh = dataclasses.replace(fresh, sweep="headline", process=None)
    rows.append(result_row(fresh, "step", median_s=1.0, iqr_s=0.1, noisy=False))
    table = compiled_table(pd.DataFrame(rows))
    ((_, pair),) = table.iterrows()
    step = {r["compile"]: r["median_s"] for r in rows if r["phase"] == "step" and r["process"]}
    assert pair["timed in"] == "one process", pair
    assert pair["compiled / eager"] == f"{step['fullgraph_loss'] / step[None]:.2f}×", (pair, step)


def test_the_quick_profile_times_compiled_beside_eager_for_each_optimizer():
    quick = PROFILES["quick"]
    compiled = quick.only(["compiled"]).side_by_side
    assert [{(p.optimizer, p.compile, p.process, p.malloc) for p in g} for g in compiled] == [
        {(o, mode, SIDE_BY_SIDE, None) for mode in (None, "fullgraph", "fullgraph_loss")}
        for o in ("adamw", "adamw_fused")
    ]
    assert quick.only(["headline"]).side_by_side == ()


GRADIENT_GROUP = tuple(
    dataclasses.replace(
        SMOKE_POINT,
        sweep="gradient",
        approaches=("fused", "freeze_all"),
        process=SIDE_BY_SIDE,
        loss=loss,
    )
    for loss in (None, GIVEN_GRADIENT)
)


def test_a_step_given_its_gradient_is_timed_beside_the_step_with_the_loss_in_one_process(
    tmp_path,
):
    """The gradient sweep's group runs in one process: each approach with the loss and given
    its output's gradient (no loss bytes then), and the report pairs the two steps."""
    import pandas as pd

    from bench.report.tables import gradient_table

    profile = dataclasses.replace(
        PROFILE, long_lived=None, side_by_side=(GRADIENT_GROUP,), side_by_side_rounds=2
    )
    run = run_benchmarks(profile, [resolve("fused"), resolve("freeze_all")], ["cpu"], tmp_path)
    rows = json.loads((tmp_path / "results.json").read_text())
    steps = {(r["approach"], r["loss"]): r for r in rows if r["phase"] == "step"}
    assert {key: r["status"] for key, r in steps.items()} == {
        (approach, loss): "ok"
        for approach in ("fused", "freeze_all")
        for loss in (None, GIVEN_GRADIENT)
    }, [r["reason"] for r in rows]
    assert {r["process"] for r in rows} == {SIDE_BY_SIDE}
    output_bytes = SMOKE_POINT.T * SMOKE_POINT.D * 4
    assert {key: r["loss_bytes"] for key, r in steps.items()} == {
        ("fused", None): 4 * output_bytes,
        ("fused", GIVEN_GRADIENT): 0,
        ("freeze_all", None): 4 * output_bytes,
        ("freeze_all", GIVEN_GRADIENT): 0,
    }
    assert "long-lived fused gradient eager given-gradient" in run.outcomes["ok"], run.outcomes
    table = gradient_table(pd.DataFrame(rows)).set_index("approach")
    fused = steps["fused", GIVEN_GRADIENT]["median_s"] / steps["fused", None]["median_s"]
    assert table.loc["fused", "given / with the loss"] == f"{fused:.2f}×", table


def test_the_quick_profile_times_the_given_gradient_beside_the_loss_for_each_optimizer():
    groups = PROFILES["quick"].only(["gradient"]).side_by_side
    assert [{(p.optimizer, p.loss, p.process, p.malloc) for p in g} for g in groups] == [
        {(o, loss, SIDE_BY_SIDE, RETAINED) for loss in (None, GIVEN_GRADIENT)}
        for o in ("adamw", "adamw_fused")
    ]
    cases = profile_cases(
        dataclasses.replace(PROFILES["quick"], points=groups[0]), ["fused", "split"], ["cpu"]
    )
    assert [(c.approach, c.label().endswith("-loss-given-gradient")) for c in cases] == [
        ("fused", False),
        ("fused", True),
    ]


def test_the_retained_sweep_times_the_fastest_approaches_in_fresh_processes_keeping_memory():
    retained = PROFILES["quick"].only(["retained"])
    assert retained.side_by_side == () and retained.long_lived is None
    assert {(p.malloc, p.process, p.compile) for p in retained.points} == {(RETAINED, None, None)}
    assert {p.optimizer for p in retained.points} == {"adamw", "adamw_fused"}
    cases = profile_cases(retained, ["fused", "split", "grad_zero"], ["cpu"])
    assert {c.approach for c in cases} == {"fused", "split"}  # grad_zero is not among its own
    assert all(c.label().endswith("-malloc-retained") for c in cases)


def retained(cases):
    return [dataclasses.replace(case, malloc=RETAINED) for case in cases]


def test_a_retained_process_keeps_freed_memory_before_it_builds_a_model(monkeypatch):
    events = []
    monkeypatch.setattr(measure, "retain_freed_memory", lambda: events.append("retain") or True)
    build = longlived.build_training
    monkeypatch.setattr(
        longlived,
        "build_training",
        lambda *arguments: events.append("build") or build(*arguments),
    )
    names = ["split", "fused"]
    measure_long_lived([resolve(n) for n in names], retained(cases_of(names)), rounds=1)
    assert events[0] == "retain" and events.count("retain") == 1, events
    events.clear()
    measure_long_lived([resolve(n) for n in names], cases_of(names), rounds=1)
    assert "retain" not in events  # a process as it started is left as it is


def test_one_process_refuses_cases_of_two_mallocs():
    cases = cases_of(["split", "fused"])
    with pytest.raises(ValueError, match="cases: expected one malloc for one process"):
        measure_long_lived(
            [resolve("split"), resolve("fused")], [cases[0], *retained(cases[1:])], rounds=1
        )


def test_retained_cases_are_skipped_with_the_reason_where_the_c_library_is_not_glibc(
    monkeypatch,
):
    monkeypatch.setattr(measure.platform, "libc_ver", lambda: ("musl", "1.2"))
    names = ["split", "fused"]
    rows, _ = long_lived_rows(
        [resolve(n) for n in names],
        retained(cases_of(names)),
        1,
        bandwidth=None,
        memory_budget=None,
        timeout_s=60,
    )
    assert {row["status"] for row in rows} == {"skipped"}
    assert all("glibc" in row["reason"] and "musl" in row["reason"] for row in rows)
    assert {row["malloc"] for row in rows} == {RETAINED}
