"""P7 on 2 gloo ranks over loopback, the launcher's timeout path, and DDP's all-reduced bytes.

Every distributed case here starts real processes (a torch import each), so the cases share as
few process pairs as the assertions allow: one pair for both DDP training runs, one for the hang,
two for the byte counts.
"""

import dataclasses
import multiprocessing

import pytest
import torch
import torch.distributed as dist

if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from bench.distributed.rank import rank_ids, unused_parameters
from bench.distributed.runs import (
    DistributedOutcome,
    frozen_row_changes,
    measure_ddp_matrix,
    measure_ddp_step,
    ranks_agree,
    run_distributed,
    run_distributed_matrix,
    run_train_cases,
    train_case_for,
)

STEPS = 3
ADAMW_LR, ADAMW_WEIGHT_DECAY = 1e-3, 1e-2  # torch defaults, as "adamw" in bench.common.optimizers


@pytest.fixture(scope="module")
def ddp_adamw():
    outcomes = run_distributed_matrix(["split", "grad_zero"], ["ddp"], "adamw", steps=STEPS)
    return {o.approach: o for o in outcomes}


def test_split_under_ddp_keeps_frozen_rows_and_ranks_agree(ddp_adamw):
    outcome = ddp_adamw["split"]
    assert outcome.error is None, outcome.traceback
    assert len(outcome.per_rank_merged) == 2
    agree, detail = ranks_agree(outcome)
    assert agree, detail
    assert frozen_row_changes(outcome) == []
    trained = outcome.trainable_mask
    for table in outcome.per_rank_merged:
        assert not torch.equal(table[trained], outcome.initial_weight[trained])


def test_grad_zero_under_ddp_drifts_by_weight_decay_on_every_rank_yet_ranks_agree(ddp_adamw):
    outcome = ddp_adamw["grad_zero"]
    assert outcome.error is None, outcome.traceback
    agree, detail = ranks_agree(outcome)
    assert agree, detail
    changes = frozen_row_changes(outcome)
    frozen_rows = set((~outcome.trainable_mask).nonzero().squeeze(1).tolist())
    assert {(c.rank, c.row) for c in changes} == {(r, row) for r in (0, 1) for row in frozen_rows}
    decay = (1 - ADAMW_LR * ADAMW_WEIGHT_DECAY) ** STEPS  # a zero gradient leaves only the decay
    for change in changes:
        expected = change.before * decay
        assert torch.allclose(change.after, expected, rtol=1e-6, atol=0), (change, expected)


def test_a_rank_that_never_arrives_fails_within_the_timeout_naming_the_case():
    outcome = run_distributed("split", "ddp", timeout_s=3, stall_rank=1)
    assert outcome.per_rank_merged == []
    assert "approach 'split' under 'ddp'" in outcome.error
    assert "timed out after 3 s" in outcome.error
    assert "rank 1 did not finish" in outcome.error
    assert multiprocessing.active_children() == []


def test_after_a_hung_case_a_fresh_pair_runs_the_remaining_cases():
    case = train_case_for("split", "ddp", "sgd", 2, 16, 4, None, 0, 8, {})
    hung, after = run_train_cases([dataclasses.replace(case, stall_rank=0), case], timeout_s=3)
    assert "rank 0 did not finish" in hung.error
    assert after.error is None, after.error
    assert ranks_agree(after)[0] and frozen_row_changes(after) == []


def test_measure_ddp_step_counts_the_trainable_rows_gradient_bytes():
    num_rows, dim, fraction = 64, 8, 0.25
    measured = measure_ddp_step("split", num_rows, dim, fraction, tokens=32, steps=2, warmup=1)
    assert measured.error is None
    assert measured.allreduce_bytes == round(num_rows * fraction) * dim * 4
    assert measured.frozen_rows_identical is True
    assert measured.median_s > 0
    assert isinstance(measured.peak_bytes, int) and measured.peak_method.startswith("vmhwm")


def test_whole_table_approaches_all_reduce_the_whole_table():
    num_rows, dim = 64, 8
    measured = measure_ddp_matrix(["full", "parametrize"], num_rows, dim, 0.25, 32, steps=2)
    for record in measured:
        assert record.error is None, record
        assert record.allreduce_bytes == num_rows * dim * 4, record.approach


def test_unused_parameter_probe_finds_a_parameter_without_gradient_and_leaves_module_alone():
    class HalfUsed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.used = torch.nn.Embedding(5, 2)
            self.unused = torch.nn.Parameter(torch.ones(3))

        def forward(self, ids):
            return self.used(ids)

    module = HalfUsed()
    before = module.used.weight.detach().clone()
    assert unused_parameters(module, [torch.tensor([0, 3])], torch.ones(2)) == ["unused"]
    assert module.used.weight.grad is None
    assert torch.equal(module.used.weight, before)


def outcome_with(tables: list[torch.Tensor], mask: list[bool]) -> DistributedOutcome:
    initial = torch.arange(12.0).view(4, 3)
    return DistributedOutcome("x", "ddp", "sgd", initial, torch.tensor(mask), tables)


def test_ranks_agree_names_the_first_differing_rank_and_row():
    initial = torch.arange(12.0).view(4, 3)
    other = initial.clone()
    other[2, 1] = -1.0
    agree, detail = ranks_agree(outcome_with([initial, other], [False, True, True, False]))
    assert not agree
    assert "rank 1" in detail and "row 2" in detail and "-1.0" in detail
    assert ranks_agree(outcome_with([initial, initial.clone()], [True] * 4))[0]


def test_ranks_agree_compares_bits_so_the_same_nan_agrees():
    with_nan = torch.arange(12.0).view(4, 3)
    with_nan[1, 1] = float("nan")
    assert ranks_agree(outcome_with([with_nan, with_nan.clone()], [True] * 4))[0]
    negative_zero = with_nan.clone()
    negative_zero[0, 0] = -0.0
    assert not ranks_agree(outcome_with([with_nan, negative_zero], [True] * 4))[0]


def test_every_rank_feeds_different_ids():
    assert not torch.equal(rank_ids(0, 0, 0, 16, 8), rank_ids(0, 1, 0, 16, 8))


def test_frozen_rows_intact_lists_every_changed_frozen_row_per_rank():
    initial = torch.arange(12.0).view(4, 3)
    moved = initial.clone()
    moved[[0, 1]] += 1  # row 0 is frozen, row 1 trains
    changes = frozen_row_changes(outcome_with([initial, moved], [False, True, True, False]))
    assert [(c.rank, c.row) for c in changes] == [(1, 0)]
    assert torch.equal(changes[0].after, initial[0] + 1)


def test_helpers_refuse_an_outcome_that_did_not_run():
    outcome = outcome_with([], [True] * 4)
    outcome.error = "rank 0: RuntimeError: boom"
    with pytest.raises(ValueError, match=r"did not run.*boom"):
        ranks_agree(outcome)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"approach": "nope", "wrapper": "ddp"}, "approach: 'nope' is neither a registered name"),
        ({"approach": "split", "wrapper": "fsdp"}, "wrapper: expected one of"),
        ({"approach": "split", "wrapper": "ddp", "steps": 0}, "steps: expected a positive int"),
        ({"approach": "split", "wrapper": "ddp", "optimizer": "lion"}, "optimizer: unknown"),
    ],
)
def test_bad_arguments_fail_before_any_process_starts(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_distributed(**kwargs)


def test_measure_refuses_a_fraction_that_selects_no_row():
    with pytest.raises(ValueError, match="trainable_fraction"):
        measure_ddp_step("split", 100, 4, 0.001, 8)
