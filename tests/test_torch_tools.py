"""``torch.compile(fullgraph=True)`` and ``torch.func`` for every approach, asserted both ways.

Each approach lists in ``torch_tools_limits`` the tools of ``impls.base.TORCH_TOOLS`` its technique
cannot work under, with the reason. Every (approach, tool) pair is run: a tool not listed must
work and agree with eager autograd and with ``F.embedding`` on ``merged_weight()``; a listed tool
must really fail (raise, or disagree), so a limit that goes away, or a new one, is noticed.

Compiling uses an ``aot_eager`` backend that also inspects the forward and backward graphs: that
is where a data-dependent shape (a host synchronisation on CUDA) shows, and it keeps the file fast
on CPU. ``split`` and ``fused``, the fast paths, are compiled with inductor as well.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch import Tensor, nn
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.func import functional_call
from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

import impls
from impls.base import TORCH_TOOLS
from impls.validation import values_are_free_to_read

APPROACHES = sorted(impls.APPROACHES)
NUM_ROWS, DIM = 12, 3
WEIGHT = torch.randn(NUM_ROWS, DIM, generator=torch.Generator().manual_seed(0))
MASK = torch.zeros(NUM_ROWS, dtype=torch.bool)
MASK[[1, 4, 5, 9]] = True
TRAINABLE_ROW = 4
# Three batches of one shape, each with trainable, frozen and repeated ids.
BATCHES = [
    torch.randint(0, NUM_ROWS, (2, 5), generator=torch.Generator().manual_seed(seed))
    for seed in range(3)
]
IDS = BATCHES[0]


def build(approach: str, **options) -> impls.PartiallyFrozenEmbedding:
    return impls.APPROACHES[approach].from_pretrained(WEIGHT, MASK, **options)


def loss_of(out: Tensor) -> Tensor:
    """Not linear, so each row's gradient depends on what was looked up."""
    return out.pow(2).sum()


def first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"


def difference(got: Tensor, want: Tensor, what: str) -> str | None:
    """None if ``got`` is close to ``want``, else a sentence saying by how much it is not."""
    try:
        torch.testing.assert_close(got, want)
    except AssertionError as error:
        return f"{what} differs: {str(error).strip().splitlines()[0]}"
    return None


# --- compile ------------------------------------------------------------------------------------


class GraphInspector:
    """An ``aot_eager`` backend that counts forward graphs and records every node whose shape or
    value is known only from the data (an unbacked symbol: ``nonzero``, a boolean index,
    ``.item()``), in the forward and the backward graph."""

    def __init__(self):
        self.forward_graphs = 0
        self.data_dependent: list[str] = []
        self.backend = aot_autograd(fw_compiler=self._forward, bw_compiler=self._inspect)

    def _forward(self, gm: torch.fx.GraphModule, example_inputs):
        self.forward_graphs += 1
        return self._inspect(gm, example_inputs)

    def _inspect(self, gm: torch.fx.GraphModule, example_inputs):
        for node in gm.graph.nodes:
            value = node.meta.get("val")
            if value is not None and free_unbacked_symbols(value):
                self.data_dependent.append(node.format_node())
        return make_boxed_func(gm.forward)


def train(emb: nn.Module, step: Callable[[Tensor], object], sparse: bool = False) -> Tensor:
    """One optimizer step per batch of :data:`BATCHES`; ``step(ids)`` runs forward and backward.

    The optimizer stays eager (its compilation is torch's concern, not the lookup's).
    """
    optimizer = (torch.optim.SGD if sparse else torch.optim.AdamW)(emb.parameters(), lr=0.1)
    emb.attach(optimizer)
    for ids in BATCHES:
        optimizer.zero_grad()
        step(ids)
        optimizer.step()
    return emb.merged_weight()


def backward_step(emb: nn.Module) -> Callable[[Tensor], Tensor]:
    """Forward, loss and backward; the backward is skipped where nothing requires a gradient
    (``freeze_all``), as a training loop does."""

    def step(ids: Tensor) -> Tensor:
        loss = loss_of(emb(ids))
        if loss.requires_grad:
            loss.backward()
        return loss.detach()

    return step


def compile_failure(approach: str, backward_in_graph: bool = False, **options) -> str | None:
    """Why compiling a training step with ``fullgraph=True`` does not work, or None.

    Working means: it compiles as one graph, once for all three batches (a guard on the ids'
    values would recompile), no shape in the forward or backward graph depends on the data, and
    the table trains to what eager training reaches.
    """
    sparse = options.get("sparse", False)
    eager = build(approach, **options)
    expected = train(eager, backward_step(eager), sparse)
    torch._dynamo.reset()  # every approach compiles the same forward code object
    emb, inspector = build(approach, **options), GraphInspector()
    if backward_in_graph:
        step = torch.compile(backward_step(emb), fullgraph=True, backend=inspector.backend)
    else:
        loss_fn = torch.compile(
            lambda ids: loss_of(emb(ids)), fullgraph=True, backend=inspector.backend
        )

        def step(ids: Tensor) -> None:
            loss = loss_fn(ids)
            if loss.requires_grad:
                loss.backward()

    try:
        with torch._dynamo.config.patch(trace_autograd_ops=backward_in_graph):
            reached = train(emb, step, sparse)
    except Exception as error:
        return f"raised {first_line(error)}"
    if inspector.forward_graphs != 1:
        return f"compiled {inspector.forward_graphs} graphs for {len(BATCHES)} same-shape batches"
    if inspector.data_dependent:
        return f"graph has shapes known only from the data: {inspector.data_dependent}"
    return difference(reached, expected, "table after compiled training")


# --- torch.func ---------------------------------------------------------------------------------


def vmap_failure(approach: str) -> str | None:
    """``vmap`` over the second dimension of the ids equals ``F.embedding`` per column."""
    emb = build(approach)
    try:
        out = torch.func.vmap(emb, in_dims=1)(IDS)
    except Exception as error:
        return f"raised {first_line(error)}"
    return difference(out, F.embedding(IDS.T, emb.merged_weight()), "vmapped lookup")


def grad_failure(approach: str) -> str | None:
    """``torch.func.grad`` over ``functional_call`` gives the gradient eager backward leaves in
    ``.grad`` (after the approach's hooks), for every parameter that requires one."""
    emb = build(approach)
    params = {n: p.detach() for n, p in emb.named_parameters() if p.requires_grad}
    try:
        grads, value = torch.func.grad_and_value(
            lambda p: loss_of(functional_call(emb, p, (IDS,)))
        )(params)
    except Exception as error:
        return f"raised {first_line(error)}"
    loss = loss_of(emb(IDS))
    if loss.requires_grad:
        loss.backward()
    expected = {n: p.grad for n, p in emb.named_parameters() if p.grad is not None}
    if set(grads) != set(expected):
        return f"gradients for {sorted(grads)}, but eager backward gives {sorted(expected)}"
    failures = [
        difference(value, loss_of(F.embedding(IDS, emb.merged_weight())), "loss"),
        *(difference(grads[n], expected[n], f"gradient of {n}") for n in expected),
    ]
    return "; ".join(f for f in failures if f) or None


class EffectiveWeight(nn.Module):
    """Calls ``emb.effective_weight()``, so ``functional_call`` can reach it."""

    def __init__(self, emb: nn.Module):
        super().__init__()
        self.emb = emb

    def forward(self) -> Tensor:
        return self.emb.effective_weight()


def jvp_failure(approach: str) -> str | None:
    """Forward-mode AD, with respect to every floating tensor the module holds, agrees with
    ``F.embedding`` on the effective table pushed forward the same way — through ``torch.func.jvp``
    and through eager ``torch.autograd.forward_ad``."""
    emb = build(approach)
    state = {
        n: t.detach()
        for n, t in (*emb.named_parameters(), *emb.named_buffers())
        if t.is_floating_point()
    }
    generator = torch.Generator().manual_seed(5)
    tangents = {n: torch.randn(t.shape, generator=generator) for n, t in state.items()}
    try:
        out, out_tangent = torch.func.jvp(
            lambda s: functional_call(emb, s, (IDS,)), (state,), (tangents,)
        )
        with fwAD.dual_level():
            duals = {n: fwAD.make_dual(t, tangents[n]) for n, t in state.items()}
            eager_tangent = fwAD.unpack_dual(functional_call(emb, duals, (IDS,))).tangent
    except Exception as error:
        return f"raised {first_line(error)}"
    table = EffectiveWeight(emb)
    _, table_tangent = torch.func.jvp(
        lambda s: functional_call(table, {f"emb.{n}": t for n, t in s.items()}, ()),
        (state,),
        (tangents,),
    )
    failures = [
        difference(out, F.embedding(IDS, emb.merged_weight()), "primal output"),
        difference(out_tangent, F.embedding(IDS, table_tangent), "torch.func.jvp tangent"),
        difference(eager_tangent, F.embedding(IDS, table_tangent), "forward_ad tangent"),
    ]
    return "; ".join(f for f in failures if f) or None


TOOL_CHECKS: dict[str, Callable[[str], str | None]] = {
    "compile_fullgraph": compile_failure,
    "compile_fullgraph_backward": lambda approach: compile_failure(approach, True),
    "vmap": vmap_failure,
    "grad": grad_failure,
    "jvp": jvp_failure,
}


def test_every_tool_is_checked_and_every_limit_names_a_tool():
    assert tuple(TOOL_CHECKS) == TORCH_TOOLS
    for approach in APPROACHES:
        limits = impls.APPROACHES[approach].torch_tools_limits
        assert set(limits) <= set(TORCH_TOOLS), f"{approach}: unknown tools {set(limits)}"
        assert all(reason.strip() for reason in limits.values()), f"{approach}: empty reason"


@pytest.mark.parametrize("tool", TORCH_TOOLS)
@pytest.mark.parametrize("approach", APPROACHES)
def test_tool_works_unless_listed_as_a_limit(approach, tool):
    if tool == "compile_fullgraph_backward" and not hasattr(
        torch._dynamo.config, "trace_autograd_ops"
    ):
        pytest.skip("this torch cannot trace backward into a graph (no trace_autograd_ops)")
    failure = TOOL_CHECKS[tool](approach)
    reason = impls.APPROACHES[approach].torch_tools_limits.get(tool)
    if reason is None:
        assert failure is None, f"{tool} does not work for approach {approach!r}: {failure}"
    else:
        assert failure is not None, (
            f"{tool} works for approach {approach!r}, but torch_tools_limits says it cannot: "
            f"{reason}"
        )


# --- options of the fast paths ------------------------------------------------------------------

OPTION_CASES = {
    "padding_on_trainable_row": {"padding_idx": TRAINABLE_ROW},
    "max_norm": {"max_norm": 0.5},
    "scale_grad_by_freq": {"scale_grad_by_freq": True},
    "sparse": {"sparse": True},
}
# (approach, case) -> a phrase the failure must contain; every other pair compiles cleanly.
# torch derives scale_grad_by_freq and sparse gradients from exactly the ids F.embedding is given,
# so split selects the trainable tokens by mask; fused's sparse gradient holds only them too, and
# neither sparse path is traced by torch.compile.
OPTION_COMPILE_LIMITS = {
    ("split", "scale_grad_by_freq"): "known only from the data",
    ("split", "sparse"): "raised",
    ("fused", "sparse"): "raised",
}


@pytest.mark.parametrize("case", OPTION_CASES)
@pytest.mark.parametrize("approach", ["split", "fused"])
def test_fast_paths_compile_with_options_except_where_noted(approach, case):
    failure = compile_failure(approach, **OPTION_CASES[case])
    expected = OPTION_COMPILE_LIMITS.get((approach, case))
    if expected is None:
        assert failure is None, f"compile_fullgraph of approach {approach!r} with {case}: {failure}"
    else:
        assert failure is not None and expected in failure, (
            f"compile_fullgraph of approach {approach!r} with {case} should fail ({expected}), "
            f"got {failure}"
        )


@pytest.mark.parametrize("case", ["padding_on_trainable_row", "scale_grad_by_freq"])
def test_fused_torch_func_with_options(case):
    """The custom backward's options under ``torch.func.grad`` and ``vmap``."""
    options = OPTION_CASES[case]
    fused, split = build("fused", **options), build("split", **options)
    params = {"trainable_weight": fused.trainable_weight.detach()}
    grads = torch.func.grad(lambda p: loss_of(functional_call(fused, p, (IDS,))))(params)
    loss_of(split(IDS)).backward()
    torch.testing.assert_close(grads["trainable_weight"], split.trainable_weight.grad)
    torch.testing.assert_close(torch.func.vmap(fused)(IDS), F.embedding(IDS, fused.merged_weight()))


@pytest.mark.parametrize(
    ("approach", "options"),
    [
        ("split", {}),
        ("fused", {}),
        ("fused", {"padding_idx": TRAINABLE_ROW, "max_norm": 0.5, "scale_grad_by_freq": True}),
    ],
    ids=["split", "fused", "fused_with_options"],
)
def test_fast_paths_train_the_same_under_inductor(approach, options):
    eager = build(approach, **options)
    expected = train(eager, backward_step(eager))
    torch._dynamo.reset()
    emb = build(approach, **options)
    loss_fn = torch.compile(lambda ids: loss_of(emb(ids)), fullgraph=True)
    torch.testing.assert_close(
        train(emb, lambda ids: loss_fn(ids).backward()),
        expected,
        msg=lambda m: f"approach {approach!r} with {options} under inductor: {m}",
    )


# --- ids are checked only where that is free ---------------------------------------------------


def test_values_are_read_only_from_plain_cpu_tensors_in_eager_mode():
    ids = torch.tensor([1, 2])
    assert values_are_free_to_read(ids)
    assert not values_are_free_to_read(ids.to("meta"))
    with FakeTensorMode() as mode:
        assert not values_are_free_to_read(mode.from_tensor(ids))
    seen = []
    torch.func.vmap(lambda row: seen.append(values_are_free_to_read(row)) or row)(ids[None])
    torch._dynamo.reset()
    compiled = torch.compile(
        lambda t: t + 1 if values_are_free_to_read(t) else t - 1, fullgraph=True, backend="eager"
    )
    assert seen == [False]
    assert torch.equal(compiled(ids), ids - 1), "under torch.compile the values must not be read"


@pytest.mark.parametrize("approach", ["split", "fused"])
def test_bad_ids_are_still_refused_where_values_are_not_read(approach):
    """As in nn.Embedding, the gather itself refuses an out-of-range id (on CUDA: a device-side
    assert)."""
    emb = build(approach)
    bad = torch.tensor([[0, NUM_ROWS]])
    out_of_range = r"out of (range|bounds)"
    with pytest.raises((IndexError, RuntimeError), match=out_of_range):
        torch.func.vmap(emb)(bad)
    torch._dynamo.reset()
    with pytest.raises((IndexError, RuntimeError), match=out_of_range):
        torch.compile(emb, fullgraph=True, backend="aot_eager")(bad)
