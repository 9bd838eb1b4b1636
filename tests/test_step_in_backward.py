"""``step_in_backward``: the trainable rows step inside backward, with the optimizer's own
settings and state, exactly once per backward; the kernel changes only where torch chose it."""

from __future__ import annotations

import pytest
import torch

from bench.distributed.runs import measure_ddp_matrix
from bench.perf.cases import PROFILES
from bench.perf.ddp import ddp_cases, measured_row
from impls import APPROACHES
from impls.step_in_backward import RowsStep

V, D = 40, 6
TRAINABLE = torch.tensor([1, 5, 7, 30])


def table(dtype=torch.float32) -> torch.Tensor:
    return torch.randn(V, D, generator=torch.Generator().manual_seed(0)).to(dtype)


def batches(steps: int = 4) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, V, (3, 9), generator=generator) for _ in range(steps)]


def trained(name: str, make_optimizer, attach: bool = True, **options) -> tuple:
    emb = APPROACHES[name].from_pretrained(table(), TRAINABLE, **options)
    optimizer = make_optimizer(emb.parameters())
    if attach:
        emb.attach(optimizer)
    for ids in batches():
        optimizer.zero_grad()
        (emb(ids) * torch.linspace(0.5, 1.5, D)).sum().backward()
        optimizer.step()
    return emb, optimizer


def rows_step(emb) -> RowsStep:
    (hook,) = emb.trainable_weight._post_accumulate_grad_hooks.values()
    return hook


@pytest.mark.parametrize(
    "make_optimizer",
    [
        torch.optim.AdamW,
        lambda p: torch.optim.AdamW(p, fused=True),
        lambda p: torch.optim.AdamW(p, foreach=True),
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        torch.optim.RMSprop,
    ],
    ids=["adamw", "adamw_fused", "adamw_foreach", "sgd_momentum", "rmsprop"],
)
def test_rows_follow_fused_with_the_optimizer_it_replaces(make_optimizer):
    stepped, optimizer = trained("step_in_backward", make_optimizer)
    reference, _ = trained("fused", make_optimizer)
    got, want = stepped.merged_weight(), reference.merged_weight()
    assert not torch.equal(got[TRAINABLE], table()[TRAINABLE]), "the rows must train"
    far = ~torch.isclose(got, want, rtol=1e-6, atol=1e-7).all(dim=1)
    assert not far.any(), (
        f"row {int(far.nonzero()[0, 0])}: step_in_backward {got[far][0].tolist()}, "
        f"fused {want[far][0].tolist()}"
    )
    assert torch.equal(
        got[~torch.isin(torch.arange(V), TRAINABLE)],
        table()[~torch.isin(torch.arange(V), TRAINABLE)],
    )
    assert stepped.trainable_weight in optimizer.state, "the moments live in the user's optimizer"


def test_backward_steps_the_rows_and_drops_their_gradient():
    emb = APPROACHES["step_in_backward"].from_pretrained(table(), TRAINABLE)
    optimizer = torch.optim.AdamW(emb.parameters())
    emb.attach(optimizer)
    before = emb.trainable_weight.detach().clone()
    emb(batches()[0]).sum().backward()
    assert emb.trainable_weight.grad is None
    moved = emb.trainable_weight.detach().clone()
    assert not torch.equal(moved, before)
    optimizer.step()  # the loop's own step: nothing left for it to do
    assert torch.equal(emb.trainable_weight.detach(), moved)


def test_without_attach_it_is_fused():
    emb = APPROACHES["step_in_backward"].from_pretrained(table(), TRAINABLE)
    emb(batches()[0]).sum().backward()
    assert emb.trainable_weight.grad is not None


def test_attaching_again_replaces_the_hook():
    once, _ = trained("step_in_backward", torch.optim.AdamW)
    emb = APPROACHES["step_in_backward"].from_pretrained(table(), TRAINABLE)
    emb.attach(torch.optim.AdamW(emb.parameters()))
    twice, _ = trained("step_in_backward", torch.optim.AdamW)
    assert len(emb.trainable_weight._post_accumulate_grad_hooks) == 1
    assert torch.equal(once.merged_weight(), twice.merged_weight())


def test_an_optimizer_without_the_rows_leaves_their_gradient_to_the_loop():
    emb = APPROACHES["step_in_backward"].from_pretrained(table(), TRAINABLE)
    other = torch.nn.Parameter(torch.zeros(3))
    emb.attach(torch.optim.AdamW([other]))
    emb(batches()[0]).sum().backward()
    assert emb.trainable_weight.grad is not None


def test_a_learning_rate_schedule_reaches_the_rows():
    emb = APPROACHES["step_in_backward"].from_pretrained(table(), TRAINABLE)
    optimizer = torch.optim.SGD(emb.parameters(), lr=0.1)
    emb.attach(optimizer)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.0 if epoch else 1.0)
    emb(batches()[0]).sum().backward()
    optimizer.step()
    schedule.step()  # lr is now 0: the next backward must leave the rows where they are
    after_first = emb.trainable_weight.detach().clone()
    emb(batches()[1]).sum().backward()
    assert torch.equal(emb.trainable_weight.detach(), after_first)


@pytest.mark.parametrize(
    ("make_optimizer", "dtype", "options", "kernel"),
    [
        (torch.optim.AdamW, torch.float32, {}, {"fused": True, "foreach": False}),
        (torch.optim.Adagrad, torch.float64, {}, {"fused": True, "foreach": False}),
        (lambda p: torch.optim.AdamW(p, foreach=True), torch.float32, {}, {}),
        (lambda p: torch.optim.AdamW(p, fused=False), torch.float32, {}, {}),
        (torch.optim.AdamW, torch.bfloat16, {}, {}),
        (torch.optim.RMSprop, torch.float32, {}, {}),
        (torch.optim.SparseAdam, torch.float32, {"sparse": True}, {}),
    ],
    ids=["adamw", "adagrad_f64", "foreach_chosen", "fused_refused", "bf16", "rmsprop", "sparse"],
)
def test_the_fused_kernel_only_where_torch_chose_the_kernel(make_optimizer, dtype, options, kernel):
    emb = APPROACHES["step_in_backward"].from_pretrained(table(dtype), TRAINABLE, **options)
    emb.attach(make_optimizer(emb.parameters()))
    assert rows_step(emb).kernel == kernel


def test_the_ddp_benchmark_records_its_refusal_as_a_skip():
    """Under 2 gloo ranks ``attach`` refuses; the DDP sweep records that as skipped with the
    approach's reason, while ``fused`` in the same pair of processes is measured."""
    refused, measured = measure_ddp_matrix(
        ["step_in_backward", "fused"], 64, 4, 0.25, 16, steps=1, warmup=0, timeout_s=60
    )
    assert refused.refused and "before DDP or FSDP has all-reduced it" in refused.error
    assert not measured.refused and measured.error is None and measured.median_s > 0
    (case,) = ddp_cases(PROFILES["quick"], ["step_in_backward"])
    row = measured_row(case, refused)
    assert (row["status"], row["reason"]) == ("skipped", refused.error)
