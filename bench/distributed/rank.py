"""What runs on one rank: build an approach, wrap it (DDP or FSDP2), train it, report back.

The functions here are the ``task`` of :func:`bench.distributed.launch.run_cases`; they run in
the rank processes with the default process group initialised. Everything a rank needs is in a
small picklable case: the initial table, the trainable rows and each rank's ids are rebuilt from
the seed, so every rank provably starts from the same table without shipping it.
"""

import copy
import functools
import time
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from bench.common.frozen_rows import frozen_rows_identical
from bench.common.optimizers import optimizer_spec
from bench.common.peak_memory import PeakMeter
from bench.implementations import Implementation


def make_optimizer(name: str, params) -> torch.optim.Optimizer:
    """The optimizer named ``name`` in the shared registry :mod:`bench.common.optimizers`."""
    return optimizer_spec(name).build(params)


@dataclass(frozen=True)
class RankTrainingCase:
    """One approach trained under one wrapper for a few steps (the P7 check)."""

    implementation: Implementation
    wrapper: str
    optimizer: str
    steps: int
    num_rows: int
    dim: int
    trainable_ids: tuple[int, ...]
    tokens: int
    seed: int
    options: tuple[tuple[str, object], ...] = ()
    stall_rank: int | None = None
    """For testing the watchdog only: this rank sleeps forever instead of training."""

    @property
    def approach(self) -> str:
        return self.implementation.name

    @property
    def label(self) -> str:
        return f"approach {self.approach!r} under {self.wrapper!r} with {self.optimizer!r}"


@dataclass(frozen=True)
class StepCostCase:
    """One approach timed under DDP, its all-reduced bytes counted by a communication hook."""

    implementation: Implementation
    num_rows: int
    dim: int
    trainable_ids: tuple[int, ...]
    tokens: int
    optimizer: str
    steps: int
    warmup: int
    seed: int = 0
    options: tuple[tuple[str, object], ...] = ()

    @property
    def approach(self) -> str:
        return self.implementation.name

    @property
    def label(self) -> str:
        return f"approach {self.approach!r} under 'ddp' (step cost, V={self.num_rows})"


def initial_weight(seed: int, num_rows: int, dim: int) -> Tensor:
    """The pretrained table every rank starts from."""
    return torch.randn(num_rows, dim, generator=torch.Generator().manual_seed(seed))


def trainable_mask(num_rows: int, trainable_ids: tuple[int, ...]) -> Tensor:
    mask = torch.zeros(num_rows, dtype=torch.bool)
    mask[list(trainable_ids)] = True
    return mask


def rank_ids(seed: int, rank: int, step: int, num_rows: int, tokens: int) -> Tensor:
    """The ids ``rank`` feeds at ``step``: different on every rank, reproducible from the seed."""
    gen = torch.Generator().manual_seed(1_000_003 * (seed + 1) + 1_009 * rank + step)
    return torch.randint(num_rows, (tokens,), generator=gen)


def loss_coefficients(seed: int, dim: int) -> Tensor:
    """Fixed positive weights of ``loss = sum(out * coef)``: every looked-up row gets a gradient."""
    return torch.rand(dim, generator=torch.Generator().manual_seed(seed + 1)) + 0.5


def build_approach(case: "RankTrainingCase | StepCostCase") -> nn.Module:
    """The case's implementation, built from the rank's copy of the pretrained table."""
    weight = initial_weight(case.seed, case.num_rows, case.dim)
    mask = trainable_mask(case.num_rows, case.trainable_ids)
    return case.implementation.from_pretrained(weight, mask, **dict(case.options))


def unused_parameters(emb: nn.Module, batches: list[Tensor], coef: Tensor) -> list[str]:
    """Parameters some batch leaves without a gradient (DDP then needs ``find_unused_parameters``).

    Probed on a copy with ``autograd.grad``, so the module, its ``.grad`` and its hooks' side
    effects (``max_norm`` renormalises in place) are untouched.
    """
    probe = copy.deepcopy(emb)
    named = [(n, p) for n, p in probe.named_parameters() if p.requires_grad]
    unused: set[str] = set()
    for ids in batches:
        loss = (probe(ids) * coef).sum()
        if not loss.requires_grad:
            continue
        grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
        unused |= {n for (n, _), g in zip(named, grads, strict=True) if g is None}
    return sorted(unused)


@functools.cache
def cpu_mesh():
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh("cpu", (dist.get_world_size(),))


def hooked_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters carrying a tensor hook or a post-accumulate-grad hook, by name."""
    return {
        name: p
        for name, p in module.named_parameters()
        if p._backward_hooks or getattr(p, "_post_accumulate_grad_hooks", None)
    }


def wrap(emb: nn.Module, case: RankTrainingCase, coef: Tensor) -> tuple[nn.Module, list[str]]:
    """``emb`` under the case's wrapper, and what that took (notes for the report)."""
    notes = []
    if case.wrapper == "ddp":
        batches = [
            rank_ids(case.seed, r, s, case.num_rows, case.tokens)
            for r in range(dist.get_world_size())
            for s in range(case.steps)
        ]
        unused = unused_parameters(emb, batches, coef)
        if unused:
            notes.append(f"DDP needs find_unused_parameters=True: {unused} get no gradient")
        return DistributedDataParallel(emb, find_unused_parameters=bool(unused)), notes
    from torch.distributed.fsdp import fully_shard

    hooked = hooked_parameters(emb)
    fully_shard(emb, mesh=cpu_mesh())
    for name, original in hooked.items():
        if emb.get_parameter(name) is not original:
            notes.append(
                f"fully_shard replaced parameter {name!r} by a sharded DTensor parameter; the "
                "gradient hook registered on the original never runs"
            )
    return emb, notes


def merged_on_this_rank(emb: nn.Module, wrapper: str) -> Tensor:
    """The full ``(V, D)`` table this rank holds.

    Under FSDP2 the parameters are row shards between steps, so ``FSDPModule.unshard()`` first
    all-gathers them into the module (as its pre-forward hook does); then ``merged_weight()`` reads
    the whole table. The parameter part of the table therefore agrees across ranks by
    construction; buffers (frozen rows) are still each rank's own copy.
    """
    if wrapper == "ddp":
        return emb.merged_weight()
    emb.unshard()
    try:
        return emb.merged_weight().clone()
    finally:
        emb.reshard()


def train_case(case: RankTrainingCase, rank: int, world_size: int) -> dict:
    """Task: train ``case`` on this rank; return ``{"merged": table, "notes": [...]}``.

    Warnings raised while wrapping and training become notes: they are what torch says the
    approach needs under the wrapper.
    """
    if case.stall_rank == rank:
        while True:
            time.sleep(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        merged, notes = train_on_rank(case, rank)
    for warning in caught:
        note = f"{warning.category.__name__}: {str(warning.message).splitlines()[0]}"
        if note not in notes:
            notes.append(note)
    return {"merged": merged, "notes": notes}


def train_on_rank(case: RankTrainingCase, rank: int) -> tuple[Tensor, list[str]]:
    coef = loss_coefficients(case.seed, case.dim)
    emb = build_approach(case)
    model, notes = wrap(emb, case, coef)
    optimizer = make_optimizer(case.optimizer, model.parameters())
    emb.attach(optimizer)
    for step in range(case.steps):
        optimizer.zero_grad()
        loss = (model(rank_ids(case.seed, rank, step, case.num_rows, case.tokens)) * coef).sum()
        if loss.requires_grad:
            loss.backward()
        elif step == 0:
            notes.append("no parameter requires a gradient: backward skipped")
        optimizer.step()
    return merged_on_this_rank(emb, case.wrapper), notes


@dataclass
class AllreduceCounter:
    """State of :func:`counting_allreduce_hook`: bytes and buckets all-reduced since the reset."""

    process_group: dist.ProcessGroup | None = None
    bytes: int = 0
    buckets: int = 0


def counting_allreduce_hook(state: AllreduceCounter, bucket: dist.GradBucket):
    """DDP communication hook: count the bucket's bytes, then DDP's default averaging all-reduce.

    (DDP checks this annotation at run time, so this module keeps real, not postponed, ones.)
    """
    buffer = bucket.buffer()
    state.bytes += buffer.numel() * buffer.element_size()
    state.buckets += 1
    return default_hooks.allreduce_hook(state.process_group, bucket)


@dataclass(frozen=True)
class RankStepCost:
    """What one rank measured of an approach's DDP step (see :func:`step_cost_case`)."""

    allreduce_bytes: int
    allreduce_buckets: int
    step_s: list[float]
    """The slowest rank's seconds per timed step (all-reduced with MAX, so equal on all ranks)."""
    threads_per_rank: int
    buffer_bytes: int
    peak_bytes: int | None
    peak_method: str
    frozen_rows_identical: bool


def step_cost_case(case: StepCostCase, rank: int, world_size: int) -> RankStepCost:
    """Task: time DDP steps (slowest rank per step) and count the bytes all-reduced per step.

    ``broadcast_buffers=False``: every approach's buffers are constants identical on all ranks,
    and DDP's default would broadcast them (for some approaches a whole V×D copy) every forward,
    a cost of the default setting rather than of the approach; their size is reported instead.
    """
    coef = loss_coefficients(case.seed, case.dim)
    meter = PeakMeter("cpu")
    meter.start()
    emb = build_approach(case)
    model = DistributedDataParallel(emb, broadcast_buffers=False)
    meter.reset()
    counter = AllreduceCounter()
    model.register_comm_hook(counter, counting_allreduce_hook)
    optimizer = make_optimizer(case.optimizer, model.parameters())
    emb.attach(optimizer)
    seconds = []
    for step in range(case.warmup + case.steps):
        ids = rank_ids(case.seed, rank, step, case.num_rows, case.tokens)
        dist.barrier()
        if step == case.warmup:
            counter.bytes = counter.buckets = 0
        start = time.perf_counter()
        optimizer.zero_grad()
        (model(ids) * coef).sum().backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    slowest = torch.tensor(seconds[case.warmup :], dtype=torch.float64)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    weight = initial_weight(case.seed, case.num_rows, case.dim)
    return RankStepCost(
        allreduce_bytes=counter.bytes // case.steps,
        allreduce_buckets=counter.buckets // case.steps,
        step_s=slowest.tolist(),
        threads_per_rank=torch.get_num_threads(),
        buffer_bytes=sum(b.numel() * b.element_size() for b in emb.buffers()),
        peak_bytes=meter.peak_bytes(),
        peak_method=meter.method,
        frozen_rows_identical=frozen_rows_identical(
            weight, emb.merged_weight(), emb.trainable_mask
        ),
    )
