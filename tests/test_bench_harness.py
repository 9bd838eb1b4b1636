"""The benchmark harness itself (``python -m bench run``), on tiny cases: memory accounting against
hand-computed bytes, the bound arithmetic, rounds, the skip / fail / resume paths, the isolated
process, the PEFT peer and the command line. No assertion reads a wall-clock value."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import signal
import time
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import impls
from bench.__main__ import main as bench_main
from bench.common.load import ATTEMPTS, BUSY_CORES, SPREAD, busy_cores, is_noisy, spread
from bench.common.peak_memory import PeakMeter
from bench.common.processes import IsolatedFailure, run_isolated
from bench.distributed.runs import DdpStepCost
from bench.implementations import resolve
from bench.peers.peft_trainable_tokens import PeftTrainableTokens
from bench.perf import measure
from bench.perf.bound import bound_bytes, bound_fields, loss_bytes
from bench.perf.cases import (
    COMPILE_MODES,
    GIVEN_GRADIENT,
    PHASES,
    PROFILES,
    RETAINED,
    WEIGHT_CHUNK_ROWS,
    BenchmarkCase,
    make_weight,
    measurement_groups,
    profile_cases,
    token_batches,
    trainable_ids,
    unique_trainable_tokens,
)
from bench.perf.command import headline_cases, run_benchmarks
from bench.perf.ddp import ddp_cases, measured_row, skip_reason
from bench.perf.measure import (
    build_training,
    estimate_memory,
    frozen_rows_kept,
    measure_case,
    tiny_case,
    weighted_loss,
)
from bench.perf.memory import persistent_bytes, transient_bytes
from bench.perf.tables import TableFiles
from bench.perf.timing import Marks, RoundsPolicy, phase_entry, time_phase
from impls.base import UnsupportedOption
from impls.split import Split

SMOKE = PROFILES["smoke"]
SCHEMA_KEYS = {
    "approach", "device", "dtype", "V", "D", "trainable_fraction", "n_trainable", "T",
    "optimizer", "sparse", "sweep", "profile", "phase", "status", "reason", "median_s", "iqr_s",
    "rounds", "tokens_per_s", "persistent_bytes", "peak_bytes", "bound_bytes",
    "bandwidth_bytes_per_s", "bound_s", "fraction_of_bound", "loss_bytes",
    "fraction_of_bound_with_loss", "allreduce_bytes",
    "frozen_rows_identical", "env",
}  # fmt: skip
"""The keys of results.json that other tools read: an interface the schema must keep."""


def implementations(names: list[str]) -> list:
    return [resolve(name) for name in names]


def small_case(**changes) -> BenchmarkCase:
    fields = dict(
        approach="split", device="cpu", dtype="float32", V=1_000, D=8, trainable_fraction=0.01,
        T=64, optimizer="adamw", sparse=False, sweep="headline", profile="smoke",
    )  # fmt: skip
    return BenchmarkCase(**{**fields, **changes})


# --- memory -----------------------------------------------------------------------------------

# split at V=1000, D=8, n=10 trainable, float32: buffers trainable_mask (1000 bools),
# trainable_ids (10 int64), frozen_ids (990 int64), frozen_weight (1000×8 float32), local_index
# (1000 int64); the (10, 8) parameter and its gradient; AdamW adds exp_avg, exp_avg_sq and a
# float32 step scalar.
SPLIT_BUFFERS = 1_000 + 10 * 8 + 990 * 8 + 1_000 * 8 * 4 + 1_000 * 8
SPLIT_PARAM = 10 * 8 * 4
SPLIT_BYTES = {
    "sgd": SPLIT_BUFFERS + 2 * SPLIT_PARAM,
    "adamw": SPLIT_BUFFERS + 4 * SPLIT_PARAM + 4,
}


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_persistent_bytes_of_split_match_hand_count(optimizer):
    training = build_training(Split, small_case(optimizer=optimizer))
    training.step()
    assert persistent_bytes(training.module, training.optimizer) == SPLIT_BYTES[optimizer]


def test_persistent_bytes_count_a_shared_storage_once():
    module = nn.Module()
    module.register_buffer("mask", torch.ones(100, dtype=torch.bool))
    module.register_buffer("column", module.mask.unsqueeze(1))  # a view: no new storage
    module.weight = nn.Parameter(torch.zeros(10, 3))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    module.weight.grad = torch.ones(10, 3)
    optimizer.step()  # momentum_buffer: one more (10, 3) float32
    assert persistent_bytes(module, optimizer) == 100 + 3 * (10 * 3 * 4)


def test_persistent_bytes_count_a_sparse_gradient_by_indices_and_values():
    module = nn.Module()
    module.weight = nn.Parameter(torch.zeros(50, 4))
    module.weight.grad = torch.sparse_coo_tensor(
        torch.tensor([[1, 7, 9]]), torch.ones(3, 4), (50, 4), check_invariants=True
    )
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    assert persistent_bytes(module, optimizer) == 50 * 4 * 4 + 3 * 8 + 3 * 4 * 4


def test_estimate_is_exact_for_persistent_bytes_and_adds_the_transient_allowance():
    estimate = estimate_memory(Split, small_case())
    assert estimate.persistent_bytes == SPLIT_BYTES["adamw"]
    # three 1000×8 float32 tables, five 64×8 float32 activations, 64 int64 ids
    assert estimate.transient_bytes == transient_bytes(1_000, 8, 64, 4) == 96_000 + 10_240 + 512
    assert estimate.total_bytes == estimate.persistent_bytes + estimate.transient_bytes


def test_estimate_raises_the_refusal_of_an_approach():
    with pytest.raises(UnsupportedOption, match="sparse"):
        estimate_memory(
            impls.APPROACHES["concat"], small_case(sparse=True, optimizer="sparse_adam")
        )


def allocate_and_report_peak(nbytes: int) -> int:
    meter = PeakMeter("cpu")
    meter.start()
    meter.reset()
    block = torch.ones(nbytes // 4)  # ones: every page is written, so it is resident
    del block
    return meter.peak_bytes()


def test_peak_of_a_fresh_process_covers_what_it_allocated():
    nbytes = 64 << 20
    peak = run_isolated(allocate_and_report_peak, nbytes, timeout_s=60)
    assert nbytes <= peak < 2 * nbytes


# --- bound --------------------------------------------------------------------------------------


def test_bound_bytes_follow_the_stated_model():
    case = small_case()  # rows of 8 float32 = 32 bytes, T = 64, n = 10
    forward = 8 * 64 + 2 * 64 * 32
    forward_backward = forward + 64 * 32 + 3 * 32  # u = 3 distinct trainable rows
    assert bound_bytes(case, "forward", 3) == forward == 4_608
    assert bound_bytes(case, "forward_backward", 3) == forward_backward == 6_752
    # AdamW moves all n = 10 rows: parameter and two moments read and written
    assert bound_bytes(case, "step", 3) == forward_backward + 3 * 32 + 2 * 10 * 32 * 3 == 8_768
    # plain SGD moves only the u = 3 rows with a gradient, and keeps no state
    sgd = replace(case, optimizer="sgd")
    assert bound_bytes(sgd, "step", 3) == forward_backward + 3 * 32 + 2 * 3 * 32 == 7_040


def test_bound_fields_divide_by_bandwidth_and_by_the_median():
    assert bound_fields(1_000, 500.0, 4.0, 600) == {
        "bound_bytes": 1_000,
        "bandwidth_bytes_per_s": 500.0,
        "bound_s": 2.0,
        "fraction_of_bound": 0.5,
        "loss_bytes": 600,
        "fraction_of_bound_with_loss": 0.8,  # (1,000 + 600) / 500 / 4
    }
    assert bound_fields(1_000, None, 4.0)["fraction_of_bound"] is None
    assert bound_fields(1_000, 500.0, 4.0)["fraction_of_bound_with_loss"] is None


@pytest.mark.parametrize(
    ("compile_mode", "forward"), [(None, 0), ("fullgraph", 0), ("fullgraph_loss", 2 * 64 * 32)]
)
def test_loss_bytes_count_the_loss_inside_each_timed_phase(compile_mode, forward):
    case = small_case(compile=compile_mode)  # the output is T x D = 64 x 8 float32: 2,048 bytes
    # forward: read the output and the coefficients; backward: read them, write the gradient
    assert loss_bytes(case, "forward") == forward
    assert loss_bytes(case, "forward_backward") == loss_bytes(case, "step") == 4 * 64 * 32
    with pytest.raises(ValueError, match="phase"):
        loss_bytes(case, "backward")


def test_a_step_given_its_output_gradient_moves_no_loss_bytes_in_any_phase():
    case = small_case(loss=GIVEN_GRADIENT)
    assert [loss_bytes(case, phase) for phase in PHASES] == [0, 0, 0]
    assert bound_bytes(case, "step", 3) == bound_bytes(small_case(), "step", 3)
    with pytest.raises(ValueError, match="phase"):
        loss_bytes(case, "backward")


@pytest.mark.parametrize("approach", ["split", "fused", "step_in_backward"])
def test_a_step_given_its_output_gradient_updates_the_table_as_the_loss_step_does(approach):
    """``out.backward(coefficients)`` hands the lookup the gradient the weighted loss's backward
    gives it, so three steps either way leave the same table, bit for bit."""
    tables = []
    for loss in (None, GIVEN_GRADIENT):
        training = build_training(resolve(approach), small_case(approach=approach, loss=loss))
        assert training.given_gradient is (loss is not None)
        for _ in range(3):
            training.step()
            training.next_batch()
        tables.append(training.module.merged_weight().detach())
    with_loss, given = tables
    changed = (with_loss != given).any(dim=1).nonzero().flatten().tolist()
    assert changed == [], (
        f"{approach}: rows {changed[:5]} differ between the loss step and the given-gradient "
        f"step, e.g. {with_loss[changed[:1]].tolist()} against {given[changed[:1]].tolist()}"
    )
    assert not torch.equal(with_loss, make_weight(small_case())), f"{approach}: nothing trained"


def test_the_benchmark_loss_is_the_weighted_sum_and_hands_back_its_weights_as_gradient():
    out = torch.randn(64, 8, requires_grad=True)
    coefficients = torch.rand(64, 8).add_(0.5)
    loss = weighted_loss(out, coefficients)
    torch.testing.assert_close(loss, (out * coefficients).sum())
    loss.backward()
    assert torch.equal(out.grad, coefficients)


def test_bound_rejects_an_unknown_phase_and_optimizer():
    with pytest.raises(ValueError, match="phase"):
        bound_bytes(small_case(), "backward", 1)
    with pytest.raises(ValueError, match=r"optimizer.*rmsprop"):
        bound_bytes(small_case(optimizer="rmsprop"), "step", 1)


def test_unique_trainable_tokens_is_the_mean_count_of_distinct_trainable_ids():
    case = small_case(V=200, trainable_fraction=0.2, T=100)
    trainable = set(trainable_ids(case).tolist())
    counts = [len({i for i in ids.tolist() if i in trainable}) for ids in token_batches(case)]
    assert len(set(counts)) > 1  # the batches differ
    assert 0 < unique_trainable_tokens(case) == round(sum(counts) / len(counts))


# --- cases and timing ---------------------------------------------------------------------------


def test_a_point_shared_by_two_sweeps_is_measured_once():
    cases = profile_cases(SMOKE, ["split", "full"], ["cpu"])
    groups = measurement_groups(cases)
    shared = [g for g in groups if len(g) > 1]
    assert len(cases) == sum(len(g) for g in groups)
    assert {tuple(sorted(c.sweep for c in g)) for g in shared} == {("headline", "vocab")}


def test_cpu_cases_have_no_bfloat16_and_no_cuda_only_points():
    cases = profile_cases(PROFILES["full"], ["split"], ["cpu"])
    assert {c.dtype for c in cases} == {"float32"}
    assert "llm" in {c.sweep for c in cases}  # the LLM table is in the full profile on CPU too
    assert "llm" not in {c.sweep for c in profile_cases(PROFILES["quick"], ["split"], ["cpu"])}


def test_rounds_fit_the_budget_within_bounds():
    policy = RoundsPolicy(phase_budget_s=1.0, min_rounds=3, max_rounds=25, warmup_rounds=1)
    assert policy.rounds_for(0.1) == 10
    assert policy.rounds_for(0.5) == 3
    assert policy.rounds_for(0.001) == 25
    assert policy.rounds_for(0.0) == 25
    with pytest.raises(ValueError, match="min_rounds"):
        RoundsPolicy(phase_budget_s=1.0, min_rounds=5, max_rounds=2, warmup_rounds=0)


def test_time_phase_runs_probe_warmup_and_rounds_with_setup_before_each_call():
    calls = {"target": 0, "setup": 0}
    policy = RoundsPolicy(phase_budget_s=1.0, min_rounds=4, max_rounds=4, warmup_rounds=2)
    entry = time_phase(
        lambda: calls.__setitem__("target", calls["target"] + 1),
        name="step[x]",
        group="step x",
        extra_info={"phase": "step"},
        policy=policy,
        setup=lambda: calls.__setitem__("setup", calls["setup"] + 1),
    )
    assert calls == {"target": 1 + 2 + 4, "setup": 1 + 2 + 4}
    assert entry["stats"]["rounds"] == len(entry["stats"]["data"]) == 4
    assert entry["name"] == "step[x]" and entry["extra_info"] == {"phase": "step"}
    assert {"median", "iqr", "q1", "q3"} <= set(entry["stats"])


def test_rounds_come_from_the_warm_up_not_from_the_slow_first_call():
    """A first call 100× slower than the rest (a fresh process's first step) must not set the
    rounds: by the probe's time a 1 s budget would give 3 rounds, by the warm-up's it gives the
    maximum."""
    seconds = iter([0.3])
    policy = RoundsPolicy(phase_budget_s=1.0, min_rounds=3, max_rounds=40, warmup_rounds=2)
    entry = time_phase(
        lambda: time.sleep(next(seconds, 0.003)),
        name="step[x]",
        group="step x",
        extra_info={},
        policy=policy,
    )
    assert entry["stats"]["rounds"] == 40, entry["stats"]["rounds"]


def test_warm_up_lasts_at_least_its_seconds():
    """With ``warmup_s`` the untimed calls between the probe and the rounds last at least that
    long in all, beyond ``warmup_rounds`` calls (one 2 ms call would not)."""
    durations = []

    def call() -> None:
        start = time.perf_counter()
        time.sleep(0.002)
        durations.append(time.perf_counter() - start)

    policy = RoundsPolicy(
        phase_budget_s=1.0, min_rounds=3, max_rounds=3, warmup_rounds=1, warmup_s=0.04
    )
    time_phase(call, name="step[x]", group="step x", extra_info={}, policy=policy)
    warm_up = durations[1:-3]  # after the probe, before the 3 rounds
    assert len(warm_up) >= 2 and sum(warm_up) >= 0.04, warm_up


def test_marks_time_the_phases_inside_the_timed_calls_only():
    policy = RoundsPolicy(phase_budget_s=1.0, min_rounds=3, max_rounds=3, warmup_rounds=1)
    marks = Marks()

    def call() -> None:
        marks.mark()
        time.sleep(0.002)
        marks.mark()

    entry = time_phase(
        call, name="step[x]", group="step x", extra_info={}, policy=policy, marks=marks
    )
    assert len(marks.calls) == 1 + 1 + 3  # probe, warm-up, rounds: each marked anew
    spans = marks.spans(0, 1, calls=3)
    inner = phase_entry(entry, spans, name="forward[x]", group="forward x", extra_info={"p": 1})
    assert inner["stats"]["data"] == spans and inner["stats"]["rounds"] == 3
    assert inner["name"] == "forward[x]" and inner["fullname"].endswith("::forward[x]")
    assert all(s <= t for s, t in zip(spans, entry["stats"]["data"], strict=True))
    with pytest.raises(ValueError, match="first, last"):
        marks.spans(0, 2, calls=3)
    with pytest.raises(ValueError, match="calls"):
        marks.spans(0, 1, calls=6)


def test_each_timed_step_gives_forward_then_backward_within_it():
    entries = measure_case(resolve("split"), small_case(), SMOKE.rounds).benchmarks
    assert list(entries) == ["forward", "forward_backward", "step"]
    forward, backward, step = (entries[p]["stats"]["data"] for p in entries)
    assert len(forward) == len(backward) == len(step) == SMOKE.rounds.min_rounds
    for f, b, s in zip(forward, backward, step, strict=True):
        assert 0 < f < b < s, (f, b, s)


# --- isolation ----------------------------------------------------------------------------------


def kill_own_process() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def raise_out_of_memory() -> None:
    raise torch.OutOfMemoryError("simulated: could not allocate 9 TiB")


def test_isolated_failures_name_their_cause():
    with pytest.raises(IsolatedFailure, match=r"SIGKILL.*out-of-memory"):
        run_isolated(kill_own_process, timeout_s=60)
    with pytest.raises(IsolatedFailure, match="OutOfMemoryError: simulated"):
        run_isolated(raise_out_of_memory, timeout_s=60)
    with pytest.raises(IsolatedFailure, match=r"timed out after 0\.5 s"):
        run_isolated(time.sleep, 30, timeout_s=0.5)


# --- runs: skip, fail, resume -------------------------------------------------------------------


class OutOfMemoryAtScale(Split):
    """Builds on the estimate's tiny tables, runs out of memory on the real one."""

    name = "oom_at_scale"

    def __init__(self, weight, trainable_mask, options):
        if weight.shape[0] > 500:
            raise torch.OutOfMemoryError(f"simulated: no memory for {weight.shape[0]} rows")
        super().__init__(weight, trainable_mask, options)


def read_rows(out) -> list[dict]:
    return json.loads((out / "results.json").read_text())


def test_a_tiny_memory_budget_skips_every_case_with_the_estimate_as_reason(tmp_path):
    run = run_benchmarks(SMOKE, implementations(["split"]), ["cpu"], tmp_path, memory_budget=1_000)
    rows = read_rows(tmp_path)
    assert rows and {r["status"] for r in rows} == {"skipped"}
    assert all(r["reason"].startswith("estimated ") and "budget" in r["reason"] for r in rows)
    assert all(r["estimated_bytes"] > 1_000 and r["median_s"] is None for r in rows)
    assert len(run.outcomes["skipped"]) == len(
        measurement_groups(profile_cases(SMOKE, ["split"], ["cpu"]))
    ) + len(headline_cases(SMOKE, ["cpu"]))  # the kernels timed beside them are skipped too


def test_a_failing_case_is_recorded_and_the_run_goes_on_and_retries_it(tmp_path, monkeypatch):
    monkeypatch.setitem(impls.APPROACHES, OutOfMemoryAtScale.name, OutOfMemoryAtScale)
    approaches = [OutOfMemoryAtScale.name, "split"]
    first = run_benchmarks(SMOKE, implementations(approaches), ["cpu"], tmp_path)
    rows = read_rows(tmp_path)
    failed = [r for r in rows if r["approach"] == OutOfMemoryAtScale.name]
    assert failed and {r["status"] for r in failed} == {"failed"}
    assert all("OutOfMemoryError: simulated" in r["reason"] for r in failed)
    assert {r["status"] for r in rows if r["approach"] == "split"} == {"ok"}
    again = run_benchmarks(SMOKE, implementations(approaches), ["cpu"], tmp_path)
    assert len(again.outcomes["failed"]) == len(first.outcomes["failed"])  # failed: tried again
    assert len(again.outcomes["resumed"]) == len(first.outcomes["ok"])  # ok: kept


RETAINED_SMOKE = replace(
    SMOKE, points=(replace(SMOKE.points[0], sweep="retained", malloc=RETAINED),)
)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="retaining is glibc's")
def test_a_retained_case_is_measured_in_a_fresh_process_that_kept_freed_memory(tmp_path):
    run_benchmarks(RETAINED_SMOKE, implementations(["split"]), ["cpu"], tmp_path)
    rows = read_rows(tmp_path)
    # the fresh process fails its case if retain_freed_memory was not applied
    assert {(r["status"], r["malloc"], r["sweep"]) for r in rows} == {("ok", RETAINED, "retained")}


def test_a_retained_case_is_skipped_with_the_reason_where_the_c_library_is_not_glibc(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(measure.platform, "libc_ver", lambda: ("musl", "1.2"))
    run_benchmarks(RETAINED_SMOKE, implementations(["split"]), ["cpu"], tmp_path)
    rows = read_rows(tmp_path)
    assert rows and {r["status"] for r in rows} == {"skipped"}
    assert all("glibc" in r["reason"] and "musl" in r["reason"] for r in rows)


def test_a_fresh_case_is_held_to_the_bandwidth_of_its_own_process(tmp_path, monkeypatch):
    """Each fresh process times the bandwidth after its steps, and its rows' bound is at that
    bandwidth, not at the run's (here an impossible 1 byte/s); a row nothing measured keeps the
    run's."""
    from bench.perf import command

    monkeypatch.setattr(command, "_bandwidth", lambda device: 1.0)
    profile = replace(SMOKE, points=SMOKE.points[:1])
    run_benchmarks(profile, implementations(["split"]), ["cpu"], tmp_path, memory_budget=None)
    rows = read_rows(tmp_path)
    assert {r["status"] for r in rows} == {"ok"}, [r["reason"] for r in rows]
    for row in rows:
        assert row["bandwidth_bytes_per_s"] > 1e8, row
        assert row["bound_s"] == row["bound_bytes"] / row["bandwidth_bytes_per_s"], row
    skipped = tmp_path / "skipped"
    run_benchmarks(profile, implementations(["split"]), ["cpu"], skipped, memory_budget=1_000)
    assert {(r["status"], r["bandwidth_bytes_per_s"]) for r in read_rows(skipped)} == {
        ("skipped", 1.0)
    }


def test_a_resumed_run_measures_only_what_is_missing_and_keeps_the_rest(tmp_path):
    first = run_benchmarks(SMOKE, implementations(["split"]), ["cpu"], tmp_path)
    before = {json.dumps(r, sort_keys=True) for r in read_rows(tmp_path)}
    second = run_benchmarks(SMOKE, implementations(["split", "freeze_all"]), ["cpu"], tmp_path)
    after = read_rows(tmp_path)
    assert second.outcomes["resumed"] == first.outcomes["ok"]
    assert all(label.startswith("freeze_all-") for label in second.outcomes["ok"])
    split_after = {json.dumps(r, sort_keys=True) for r in after if r["approach"] == "split"}
    assert split_after == before
    entries = json.loads((tmp_path / "pytest-benchmark.json").read_text())["benchmarks"]
    cases = [c for c in first.outcomes["ok"] + second.outcomes["ok"] if c != "primitives cpu"]
    assert len(entries) == 3 * len(cases)  # the kernels beside the cases have no phases


# --- the PEFT peer and the ddp rows -------------------------------------------------------------


def test_peft_peer_matches_embedding_and_keeps_frozen_rows_through_training():
    case = small_case(approach="peft_trainable_tokens", V=300, trainable_fraction=0.05)
    training = build_training(resolve("peft_trainable_tokens"), case)
    ids = training.ids
    assert torch.equal(training.forward(), F.embedding(ids, training.module.merged_weight()))
    before = training.module.merged_weight().clone()
    for _ in range(2):
        training.step()
    after = training.module.merged_weight()
    trainable = training.module.trainable_mask
    assert frozen_rows_kept(training.module, case)
    assert not torch.equal(after[trainable], before[trainable])
    assert [n for n, p in training.module.named_parameters() if p.requires_grad] == [
        "layer.trainable_tokens_delta.default"
    ]


def test_peft_peer_refuses_sparse_with_the_reason():
    with pytest.raises(UnsupportedOption, match=r"peft_trainable_tokens.*sparse.*expand"):
        PeftTrainableTokens.from_pretrained(torch.zeros(10, 2), torch.tensor([1]), sparse=True)


def test_frozen_rows_check_sees_a_changed_frozen_row():
    case = small_case()
    training = build_training(Split, case)
    frozen_row = int(training.module.frozen_ids[0])
    training.module.frozen_weight[frozen_row, 0] += 1.0
    assert not frozen_rows_kept(training.module, case)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_table_files_hold_the_drawn_table_bit_for_bit_whole_and_in_slices(tmp_path, dtype):
    case = small_case(V=WEIGHT_CHUNK_ROWS + 3, D=2, dtype=dtype)
    tables = TableFiles(tmp_path)
    tables.ensure(case)
    tables.ensure(case)  # a second case of the same table finds it written
    drawn = make_weight(case)
    read = tables.read(case)
    assert read.dtype == drawn.dtype and torch.equal(read, drawn)
    assert read.data_ptr() != tables.read(case).data_ptr()  # each read is memory of its own
    slices = list(tables.chunks(case))
    assert [first for first, _ in slices] == [0, WEIGHT_CHUNK_ROWS]
    assert torch.equal(torch.cat([rows for _, rows in slices]), drawn)
    assert [p.name for p in tmp_path.iterdir()] == [tables.path(case).name]


def test_frozen_rows_check_through_table_files_sees_a_changed_frozen_row(tmp_path):
    case = small_case()
    tables = TableFiles(tmp_path)
    tables.ensure(case)
    training = build_training(Split, case, tables)
    assert frozen_rows_kept(training.module, case, tables)
    training.module.frozen_weight[int(training.module.frozen_ids[0]), 0] += 1.0
    assert not frozen_rows_kept(training.module, case, tables)


def test_ddp_rows_skip_what_cannot_run_and_carry_measurements():
    peer, seed, frozen, split = ddp_cases(
        PROFILES["quick"], ["peft_trainable_tokens", "seed_two_tables", "freeze_all", "split"]
    )

    def reason(case, budget=None):
        return skip_reason(case, resolve(case.approach), memory_budget=budget)

    assert reason(peer) is None
    assert "pretrained rows first" in reason(seed)
    assert "no parameter requires a gradient" in reason(frozen)
    assert "for 2 ranks > 1 KiB budget" in reason(split, 1_024)
    assert reason(split) is None
    measured = DdpStepCost(
        "split", n_trainable=200, steps=5, error=None, median_s=0.5, iqr_s=0.1,
        allreduce_bytes=123, frozen_rows_identical=True, peak_bytes=4096,
        peak_method="vmhwm_after_build", threads_per_rank=1,
    )  # fmt: skip
    row = measured_row(split, measured, load_before=0.1)
    assert (row["peak_bytes"], row["threads"], row["load_before"], row["noisy"]) == (
        4096, 1, 0.1, False,
    )  # fmt: skip
    assert (row["phase"], row["status"], row["allreduce_bytes"], row["rounds"]) == (
        "ddp_step", "ok", 123, 5,
    )  # fmt: skip
    assert row["tokens_per_s"] == split.T / 0.5
    failed = measured_row(split, DdpStepCost("split", 200, 5, error="rank 1 timed out"))
    assert (failed["status"], failed["reason"]) == ("failed", "rank 1 timed out")


# --- the command line ---------------------------------------------------------------------------


def test_command_line_writes_results_and_pytest_benchmark_files(tmp_path, capsys):
    approaches = ["split", "peft_trainable_tokens"]
    argv = ["run", "--profile", "smoke", "--approaches", *approaches, "--out", str(tmp_path)]
    assert bench_main(argv) == 0
    assert "measured" in capsys.readouterr().out
    rows = read_rows(tmp_path)
    expected = len(profile_cases(SMOKE, approaches, ["cpu"])) * 3
    assert len(rows) == expected
    for row in rows:
        assert set(row) >= SCHEMA_KEYS, SCHEMA_KEYS - set(row)
        assert row["status"] == "ok" and row["peak_bytes"] > 0 and row["frozen_rows_identical"]
        assert row["persistent_bytes"] > 0 and row["bound_bytes"] > 0 and row["rounds"] >= 3
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert {"approach", "phase", "median_s", "peak_bytes", "env.torch_version"} <= set(header)
    document = json.loads((tmp_path / "pytest-benchmark.json").read_text())
    assert {"machine_info", "commit_info", "benchmarks", "version"} <= set(document)
    assert len(document["benchmarks"]) == 3 * len(
        measurement_groups(profile_cases(SMOKE, approaches, ["cpu"]))
    )


def test_command_line_rejects_unknown_approach_and_device(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench_main(["run", "--approaches", "nope", "--out", str(tmp_path)])
    assert "--approaches: approach: 'nope' is neither a registered name" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        bench_main(["run", "--device", "tpu", "--out", str(tmp_path)])
    assert "expected cpu, cuda or cuda:N, got 'tpu'" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_is_the_allocator_peak():
    meter = PeakMeter("cuda")
    meter.start()
    meter.reset()
    block = torch.ones(1 << 20, device="cuda")
    assert meter.peak_bytes() >= block.nbytes


def test_a_case_rejects_bad_sizes_naming_the_field():
    with pytest.raises(ValueError, match=r"V: expected a positive int, got 0"):
        small_case(V=0)
    with pytest.raises(ValueError, match=r"trainable_fraction: expected a fraction in \(0, 1\]"):
        small_case(trainable_fraction=1.5)
    with pytest.raises(ValueError, match=r"dtype: expected one of"):
        small_case(dtype="float16")
    with pytest.raises(
        ValueError, match=r"malloc: expected None or one of \('retained',\), got 'tc'"
    ):
        small_case(malloc="tc")
    with pytest.raises(
        ValueError, match=r"loss: expected None or one of \('given-gradient',\), got 'mse'"
    ):
        small_case(loss="mse")
    with pytest.raises(ValueError, match=r"loss: 'given-gradient' has no loss for compile mode"):
        small_case(loss=GIVEN_GRADIENT, compile="fullgraph_loss")


def test_a_profile_restricted_to_sweeps_keeps_only_their_points():
    from bench.perf.cases import PROFILES

    full = PROFILES["full"]
    llm = full.only(["llm"])
    assert llm.points and {p.sweep for p in llm.points} == {"llm"}
    assert llm.ddp is None
    assert full.only(["headline", "ddp"]).ddp == full.ddp
    with pytest.raises(ValueError, match=r"sweeps: 'nope' is not a sweep of profile 'full'"):
        full.only(["nope"])


# --- a busy machine -----------------------------------------------------------------------------


def test_the_noise_rule_flags_load_or_spread_and_nothing_else():
    assert not is_noisy(0.1, [0.05, 0.2])
    assert is_noisy(BUSY_CORES + 0.1, [0.0])
    assert is_noisy(None, [0.0, SPREAD * 1.5])
    assert not is_noisy(None, [None])
    assert spread(0.0, 1.0) is None and spread(2.0, 0.5) == 0.25


def test_busy_cores_reads_the_machine_between_zero_and_every_core():
    load = busy_cores(0.05)
    assert load is None or 0.0 <= load <= os.cpu_count(), load


def test_rows_record_threads_load_and_noise_and_a_noisy_case_is_measured_again(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("bench.perf.command.busy_cores", lambda: BUSY_CORES * 4)
    assert bench_main(
        ["run", "--profile", "smoke", "--approaches", "split", "--threads", "1",
         "--sweeps", "headline", "--out", str(tmp_path)]
    ) == 0  # fmt: skip
    rows = [r for r in read_rows(tmp_path) if r["status"] == "ok"]
    assert rows
    for row in rows:
        assert row["threads"] == 1, row
        assert row["load_before"] == BUSY_CORES * 4 and row["noisy"] is True, row
        assert row["attempts"] == ATTEMPTS, row


def test_a_quiet_case_is_measured_once(tmp_path, monkeypatch):
    monkeypatch.setattr("bench.perf.command.busy_cores", lambda: 0.0)
    # Quiet for the retry decision and for each phase row's flag (a tiny case's IQR alone can
    # exceed half its median on a shared machine).
    for module in ("bench.perf.command", "bench.perf.rows"):
        monkeypatch.setattr(f"{module}.is_noisy", lambda load, spreads: False)
    run_benchmarks(SMOKE.only(["headline"]), implementations(["split"]), ["cpu"], tmp_path)
    rows = [r for r in read_rows(tmp_path) if r["status"] == "ok"]
    assert rows and {(r["attempts"], r["noisy"], r["load_before"]) for r in rows} == {
        (1, False, 0.0)
    }


@pytest.mark.parametrize("mode", COMPILE_MODES)
def test_a_compiled_case_runs_fullgraph_and_keeps_its_frozen_rows(mode, tmp_path, monkeypatch):
    """fused compiles with fullgraph=True, the module alone or with the loss (a graph break
    would fail the case)."""
    monkeypatch.setattr("bench.perf.command.is_noisy", lambda load, spreads: False)
    point = dataclasses.replace(SMOKE.points[0], sweep="compiled", compile=mode)
    profile = dataclasses.replace(SMOKE, points=(point,))
    run_benchmarks(profile, implementations(["fused"]), ["cpu"], tmp_path)
    rows = read_rows(tmp_path)
    assert {(r["status"], r["compile"], r["sweep"]) for r in rows} == {("ok", mode, "compiled")}, [
        r["reason"] for r in rows
    ]
    assert all(r["frozen_rows_identical"] and r["median_s"] > 0 for r in rows)


@pytest.mark.parametrize("approach", ["split", "fused"])
def test_forward_and_loss_compiled_together_train_as_eager(approach):
    """Compile mode fullgraph_loss runs forward and loss as one graph: the same loss and the same
    trainable rows after a step as the eager case (the loss's sum may be reordered, hence close,
    not equal)."""
    point = dataclasses.replace(SMOKE.points[0], optimizer="adamw_fused")
    eager_case = tiny_case(point.case(approach, "cpu", SMOKE.name), num_rows=64, n_trainable=8)
    steps = {}
    for mode in (None, "fullgraph_loss"):
        training = build_training(resolve(approach), dataclasses.replace(eager_case, compile=mode))
        for _ in range(2):
            training.step()
            training.next_batch()
        loss = weighted_loss(training.module(training.ids), training.coefficients)
        trained = [p.detach() for p in training.module.parameters() if p.requires_grad]
        steps[mode] = (loss, trained)
    (eager_loss, eager_rows), (compiled_loss, compiled_rows) = steps.values()
    torch.testing.assert_close(compiled_loss, eager_loss, msg=f"{approach}: loss differs")
    for eager_param, compiled_param in zip(eager_rows, compiled_rows, strict=True):
        torch.testing.assert_close(
            compiled_param, eager_param, msg=lambda m: f"{approach}: trained rows differ: {m}"
        )


@pytest.mark.parametrize("optimizer, fused", [("adamw_fused", True), ("adamw", False)])
def test_a_compiled_case_compiles_the_optimizer_step_unless_it_is_fused(optimizer, fused):
    """A fused optimizer's kernel is behind torch.compiler.disable, so compiling its step adds
    only graph breaks: the compiled case keeps the bound ``optimizer.step`` for it and compiles
    the step of a for-each optimizer. Either way the compiled step trains the trainable rows."""
    point = dataclasses.replace(SMOKE.points[0], optimizer=optimizer)
    case = dataclasses.replace(
        tiny_case(point.case("fused", "cpu", SMOKE.name), num_rows=64, n_trainable=8),
        compile="fullgraph",
    )
    training = build_training(resolve("fused"), case)
    assert (training.optimizer_step == training.optimizer.step) is fused, training.optimizer_step
    trainable_before = [p.detach().clone() for p in training.module.parameters() if p.requires_grad]
    training.step()
    trainable_after = [p.detach() for p in training.module.parameters() if p.requires_grad]
    pairs = zip(trainable_before, trainable_after, strict=True)
    assert any(not torch.equal(b, a) for b, a in pairs), (
        f"{optimizer}: the compiled step left every trainable parameter as it was"
    )


@pytest.mark.parametrize(
    "variables, expected",
    [
        ({}, "glibc"),
        ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"}, "tcmalloc"),
        ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}, "jemalloc"),
        ({"MALLOC_MMAP_THRESHOLD_": "2147483647"}, "glibc (MALLOC_MMAP_THRESHOLD_=2147483647)"),
    ],
)
def test_rows_name_the_allocator_the_process_runs_with(monkeypatch, variables, expected):
    from bench.common.environment import allocator

    for name in [n for n in os.environ if n.startswith("MALLOC_")] + [
        "LD_PRELOAD",
        "GLIBC_TUNABLES",
    ]:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert allocator() == expected
