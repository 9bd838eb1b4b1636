"""The ``fused`` fast path: its custom autograd Function against ``split``, and its costs.

``fused`` keeps ``split``'s storage and replaces only the lookup, so ``split`` is the oracle: same
table, same ids, same upstream gradient must give the same output and the same ``(n, D)``
gradient, option by option. The cost claims (nothing V-sized per step) are checked by recording
every tensor an op produces, and the lazy ``sparse=True`` path is checked against what it claims
to equal (``split`` with ``sparse=True`` under SparseAdam), not against dense AdamW.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from impls import APPROACHES, UnsupportedOption

NUM_ROWS, DIM = 40, 3
TRAINABLE_IDS = torch.tensor([1, 5, 6, 17, 30, 39])
FROZEN_ROW, TRAINABLE_ROW = 2, 6


def make_pair(**options):
    weight = torch.randn(NUM_ROWS, DIM, generator=torch.Generator().manual_seed(0))
    return tuple(
        APPROACHES[name].from_pretrained(weight, TRAINABLE_IDS, **options)
        for name in ("split", "fused")
    )


def batch_ids(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    """Ids mixing trainable and frozen rows with repeats (trainable ids drawn twice as often)."""
    generator = torch.Generator().manual_seed(seed)
    pool = torch.cat([TRAINABLE_IDS, TRAINABLE_IDS, torch.tensor([FROZEN_ROW, 0, 3, 10, 25])])
    return pool[torch.randint(0, pool.numel(), shape, generator=generator)]


def output_and_grad(emb, ids: torch.Tensor):
    out = emb(ids)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(out.device)
    out.backward(upstream)
    return out.detach(), emb.trainable_weight.grad


CASES = {
    "1d": ((50,), {}),
    "2d": ((6, 9), {}),
    "3d": ((2, 3, 4), {}),
    "padding_on_trainable_row": ((6, 9), {"padding_idx": TRAINABLE_ROW}),
    "padding_on_frozen_row": ((6, 9), {"padding_idx": FROZEN_ROW}),
    "negative_padding_idx": ((6, 9), {"padding_idx": TRAINABLE_ROW - NUM_ROWS}),
    "max_norm": ((6, 9), {"max_norm": 0.7}),
    "max_norm_l1_with_padding": ((50,), {"max_norm": 1.5, "norm_type": 1.0, "padding_idx": 5}),
    "sparse": ((6, 9), {"sparse": True}),
    "sparse_padding_on_trainable_row": ((50,), {"sparse": True, "padding_idx": TRAINABLE_ROW}),
}


@pytest.mark.parametrize("case", CASES)
def test_output_and_gradient_equal_split_bit_for_bit(case):
    shape, options = CASES[case]
    split, fused = make_pair(**options)
    ids = batch_ids(shape)
    split_out, split_grad = output_and_grad(split, ids)
    fused_out, fused_grad = output_and_grad(fused, ids)
    assert fused_out.shape == (*shape, DIM)
    assert torch.equal(fused_out, split_out), f"{case}: outputs differ from split"
    assert fused_grad.shape == (len(TRAINABLE_IDS), DIM)
    assert fused_grad.is_sparse == split_grad.is_sparse == options.get("sparse", False)
    if fused_grad.is_sparse:
        assert torch.equal(fused_grad._indices(), split_grad._indices()), case
        fused_grad, split_grad = fused_grad.to_dense(), split_grad.to_dense()
    assert torch.equal(fused_grad, split_grad), f"{case}: trainable gradients differ from split"
    assert fused_grad.abs().sum() > 0, f"{case}: the batch should give trainable rows a gradient"
    assert torch.equal(fused.trainable_weight, split.trainable_weight), f"{case}: renorm differs"
    assert torch.equal(fused.frozen_weight, split.frozen_weight), f"{case}: frozen rows written"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("case", CASES)
def test_cuda_output_and_gradient_match_split(case):
    """On CUDA ``index_add`` accumulates with atomics, so repeated ids may sum in any order."""
    shape, options = CASES[case]
    split, fused = (emb.to("cuda") for emb in make_pair(**options))
    ids = batch_ids(shape).cuda()
    split_out, split_grad = output_and_grad(split, ids)
    fused_out, fused_grad = output_and_grad(fused, ids)
    assert torch.equal(fused_out, split_out), case
    if fused_grad.is_sparse:
        fused_grad, split_grad = fused_grad.to_dense(), split_grad.to_dense()
    torch.testing.assert_close(fused_grad, split_grad)


def test_padding_row_gets_no_gradient_but_is_looked_up():
    _, fused = make_pair(padding_idx=TRAINABLE_ROW)
    ids = torch.tensor([TRAINABLE_ROW, TRAINABLE_ROW, 1])
    out, grad = output_and_grad(fused, ids)
    local_row = int((TRAINABLE_IDS == TRAINABLE_ROW).nonzero())
    assert torch.equal(out[0], fused.trainable_weight[local_row].detach())
    assert torch.equal(grad[local_row], torch.zeros(DIM))
    assert grad[0].abs().sum() > 0


def test_scale_grad_by_freq_matches_split_up_to_rounding():
    """Exact per-token scaling differs from torch's fused multiply-add only in the last bit."""
    split, fused = make_pair(scale_grad_by_freq=True)
    ids = batch_ids((6, 9))
    split_out, split_grad = output_and_grad(split, ids)
    fused_out, fused_grad = output_and_grad(fused, ids)
    assert torch.equal(fused_out, split_out)
    torch.testing.assert_close(fused_grad, split_grad, rtol=1e-6, atol=1e-7)
    _, unscaled_grad = output_and_grad(make_pair()[1], ids)
    assert not torch.allclose(fused_grad, unscaled_grad), "repeated ids must be scaled down"


@pytest.mark.parametrize(
    "ids", [torch.tensor([0, 2, 3]), TRAINABLE_IDS, torch.tensor([], dtype=torch.long)]
)
@pytest.mark.parametrize("sparse", [False, True])
def test_batches_with_no_frozen_or_no_trainable_tokens(ids, sparse):
    split, fused = make_pair(sparse=sparse)
    split_out, split_grad = output_and_grad(split, ids)
    fused_out, fused_grad = output_and_grad(fused, ids)
    assert torch.equal(fused_out, split_out)
    assert fused_grad.is_sparse == sparse
    assert torch.equal(fused_grad.to_dense(), split_grad.to_dense())


def test_int32_ids_and_forward_without_grad():
    split, fused = make_pair()
    ids = batch_ids((5, 4)).int()
    with torch.no_grad():
        assert torch.equal(fused(ids), split(ids))


def test_gradcheck_float64():
    """Only without options: padding and frequency scaling are deliberately not true derivatives."""
    weight = torch.randn(12, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    fused = APPROACHES["fused"].from_pretrained(weight, torch.tensor([1, 6, 7]))
    ids = torch.tensor([[6, 1, 6, 0], [7, 3, 6, 11]])
    trainable = fused.trainable_weight.detach().clone().requires_grad_()

    def lookup(rows):
        return torch.func.functional_call(fused, {"trainable_weight": rows}, (ids,))

    assert torch.autograd.gradcheck(lookup, (trainable,))


class OutputRecorder(TorchDispatchMode):
    """Records the name and shape of every tensor every op produces."""

    def __init__(self):
        super().__init__()
        self.outputs: list[tuple[str, tuple[int, ...]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(result):
            if isinstance(leaf, torch.Tensor):
                self.outputs.append((str(func), tuple(leaf.shape)))
        return result


@pytest.mark.parametrize(
    "options", [{}, {"padding_idx": TRAINABLE_ROW}, {"scale_grad_by_freq": True}]
)
def test_training_step_allocates_nothing_with_v_rows(options):
    num_rows, trainable_ids, tokens = 5000, torch.tensor([3, 70, 4999]), 64
    weight = torch.randn(num_rows, 4)
    fused = APPROACHES["fused"].from_pretrained(weight, trainable_ids, **options)
    optimizer = torch.optim.AdamW(fused.parameters())
    ids = torch.randint(0, num_rows, (tokens,), generator=torch.Generator().manual_seed(4))
    ids[::7] = 70
    for _ in range(2):  # the second step runs with optimizer state and a gradient to zero
        with OutputRecorder() as recorder:
            optimizer.zero_grad()
            fused(ids).sum().backward()
            optimizer.step()
        assert fused.trainable_weight.grad.shape == (len(trainable_ids), 4)
        ops = {name for name, _ in recorder.outputs}
        assert any("index_add" in name for name in ops), f"backward not recorded: {sorted(ops)}"
        largest = max(recorder.outputs, key=lambda output: torch.Size(output[1]).numel())
        assert torch.Size(largest[1]).numel() <= tokens * 4, f"op output too large: {largest}"
        assert all(num_rows not in shape for _, shape in recorder.outputs), recorder.outputs


@pytest.mark.parametrize(
    "options", [{}, {"padding_idx": TRAINABLE_ROW}, {"scale_grad_by_freq": True}]
)
def test_backward_makes_one_trainable_sized_gradient_and_adds_into_it(options):
    """The compact backward adds the tokens' gradient into its fresh (n, D) zeros in place: one
    (n, D) tensor, not the zeros and an out-of-place copy of them (a pass and a buffer a step)."""
    _, fused = make_pair(**options)
    ids = batch_ids((8, 5))
    out = fused(ids)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
    with OutputRecorder() as recorder:
        out.backward(grad_out)
    made = sorted(
        name
        for name, shape in recorder.outputs
        if shape == (len(TRAINABLE_IDS), DIM) and name != "aten.detach.default"  # a view
    )
    assert made == ["aten.index_add_.default", "aten.new_zeros.default"], (
        f"fused {options}: (n, D) tensors backward made: {made}"
    )


@pytest.mark.parametrize("options", [{}, {"scale_grad_by_freq": True}])
def test_batched_gradients_through_the_in_place_backward_equal_one_at_a_time(options):
    """``autograd.grad(..., is_grads_batched=True)`` runs the backward under vmap with a batched
    incoming gradient: the in-place add must batch like the out-of-place one."""
    _, fused = make_pair(**options)
    out = fused(batch_ids((2, 7)))
    cotangents = torch.randn(3, *out.shape, generator=torch.Generator().manual_seed(5))
    weight = fused.trainable_weight
    (batched,) = torch.autograd.grad(
        out, weight, cotangents, is_grads_batched=True, retain_graph=True
    )
    for index, cotangent in enumerate(cotangents):
        (one,) = torch.autograd.grad(out, weight, cotangent, retain_graph=True)
        assert torch.equal(batched[index], one), (
            f"fused {options}: cotangent {index}: batched {batched[index]} against {one}"
        )


@pytest.mark.parametrize(
    "options", [{}, {"padding_idx": TRAINABLE_ROW}, {"scale_grad_by_freq": True}]
)
@pytest.mark.parametrize("batched", ["ids", "parameters", "both"])
def test_vmap_of_grad_through_the_in_place_backward_equals_one_sample_at_a_time(options, batched):
    """Per-sample gradients (``vmap`` of ``grad``) go through the fixed-shape Function's
    generated vmap rule, whose backward adds into its zeros in place."""
    _, fused = make_pair(**options)
    params = {name: p.detach() for name, p in fused.named_parameters()}
    stacked = {name: torch.stack([p, 2 * p]) for name, p in params.items()}
    ids = batch_ids((2, 6))

    def loss(p, row_ids):
        return torch.func.functional_call(fused, p, (row_ids,)).pow(2).sum()

    p_in, p_dim = (stacked, 0) if batched != "ids" else (params, None)
    ids_in, ids_dim = (ids, 0) if batched != "parameters" else (ids[0], None)
    got = torch.func.vmap(torch.func.grad(loss), in_dims=(p_dim, ids_dim))(p_in, ids_in)
    for index in range(2):
        sample_p = {n: v[index] for n, v in stacked.items()} if p_dim == 0 else params
        sample_ids = ids[index] if ids_dim == 0 else ids[0]
        want = torch.func.grad(loss)(sample_p, sample_ids)["trainable_weight"]
        torch.testing.assert_close(
            got["trainable_weight"][index],
            want,
            msg=lambda m, index=index: f"fused {options}, vmap over {batched}, sample {index}: {m}",
        )


def train(emb, optimizer, batches):
    for ids in batches:
        optimizer.zero_grad()
        emb(ids).pow(2).sum().backward()
        optimizer.step()
    return emb.merged_weight()


LAZY_BATCHES = [
    torch.tensor([1, 5, 2]),
    torch.tensor([6, 6, 0]),
    torch.tensor([17, 3]),
    torch.tensor([1, 39]),
]


def test_lazy_updates_equal_split_sparse_with_sparse_adam():
    split, fused = make_pair(sparse=True)
    expected = train(split, torch.optim.SparseAdam(split.parameters(), lr=0.1), LAZY_BATCHES)
    reached = train(fused, torch.optim.SparseAdam(fused.parameters(), lr=0.1), LAZY_BATCHES)
    assert torch.equal(reached, expected)


def test_lazy_updates_leave_unseen_rows_still_unlike_dense_adamw():
    """Row 1 is seen only in the first step: lazily it then stops; dense AdamW keeps moving it."""
    first, second = torch.tensor([1, 5]), torch.tensor([5, 6])
    _, lazy = make_pair(sparse=True)
    _, dense = make_pair()
    lazy_opt = torch.optim.SparseAdam(lazy.parameters(), lr=0.1)
    dense_opt = torch.optim.Adam(dense.parameters(), lr=0.1)
    after_first = [train(emb, opt, [first]) for emb, opt in ((lazy, lazy_opt), (dense, dense_opt))]
    torch.testing.assert_close(after_first[0], after_first[1], msg="one SparseAdam step is Adam's")
    lazy_after, dense_after = train(lazy, lazy_opt, [second]), train(dense, dense_opt, [second])
    assert torch.equal(lazy_after[1], after_first[0][1]), "lazy: an unseen row must not move"
    assert not torch.equal(dense_after[1], after_first[1][1]), "dense Adam moves it on momentum"
    assert not torch.equal(lazy_after[5], after_first[0][5]), "a seen row must move"


@pytest.mark.parametrize("optimizer_kwargs", [{}, {"fused": True}, {"foreach": True}])
def test_dense_trajectory_equals_split(optimizer_kwargs):
    split, fused = make_pair(padding_idx=TRAINABLE_ROW)
    batches = [batch_ids((4, 5), seed) for seed in range(4)]
    expected = train(split, torch.optim.AdamW(split.parameters(), **optimizer_kwargs), batches)
    reached = train(fused, torch.optim.AdamW(fused.parameters(), **optimizer_kwargs), batches)
    assert torch.equal(reached, expected)


def test_checkpoints_move_between_split_and_fused():
    split, fused = make_pair()
    train(fused, torch.optim.SGD(fused.parameters(), lr=0.5), LAZY_BATCHES)
    split.load_state_dict(fused.state_dict())
    assert torch.equal(split.merged_weight(), fused.merged_weight())


def test_sparse_with_scale_grad_by_freq_is_refused_by_name():
    with pytest.raises(UnsupportedOption, match=r"'fused'.*sparse=True.*scale_grad_by_freq=True"):
        APPROACHES["fused"].from_pretrained(
            torch.zeros(4, 2), torch.tensor([1]), sparse=True, scale_grad_by_freq=True
        )


@pytest.mark.parametrize("padding", [None, 1])
def test_the_compact_eager_path_equals_the_fixed_shape_path(padding):
    """On CPU in eager mode fused reads only the tokens of trainable rows (``nonzero``); under
    compile, torch.func or on CUDA it keeps every shape fixed. Both give the same output and the
    same gradient."""
    from impls.base import EmbeddingOptions
    from impls.fused import CompactOverwrite, TrainableOverwrite

    generator = torch.Generator().manual_seed(0)
    local = torch.tensor([0, -1, 2, 2, -1, 1, 0, -1])
    options = EmbeddingOptions(padding_idx=padding)
    upstream = torch.randn(8, 3, generator=generator)
    results = []
    for function in (TrainableOverwrite, CompactOverwrite):
        trainable = torch.randn(3, 3, generator=torch.Generator().manual_seed(1)).requires_grad_()
        frozen_rows = torch.randn(8, 3, generator=torch.Generator().manual_seed(2))
        out = function.apply(trainable, frozen_rows, local, options, padding)
        (out * upstream).sum().backward()
        results.append((out.detach(), trainable.grad))
    assert torch.equal(results[0][0], results[1][0])
    assert torch.allclose(results[0][1], results[1][1])


OPERATOR_OPTIONS = [
    dict(),
    dict(padding_idx=TRAINABLE_ROW),
    dict(scale_grad_by_freq=True),
    dict(max_norm=0.5),
    dict(padding_idx=FROZEN_ROW, scale_grad_by_freq=True, max_norm=1.0, norm_type=1.0),
]


def operator_arguments(emb, ids: torch.Tensor) -> tuple:
    """``compact_lookup``'s arguments as ``fused`` passes them under torch.compile."""
    from impls.compact_op import NO_PADDING

    o = emb.options
    flat = ids.reshape(-1)
    pad = NO_PADDING if emb.local_padding_idx is None else emb.local_padding_idx
    return (
        emb.frozen_weight,
        flat,
        emb.local_index.index_select(0, flat),
        emb.trainable_weight,
        o.max_norm,
        o.norm_type,
        pad,
        o.scale_grad_by_freq,
    )


@pytest.mark.parametrize("options", OPERATOR_OPTIONS, ids=str)
def test_the_compiled_lookup_operator_passes_opcheck(options):
    """Schema, fake kernel, autograd registration and AOT dispatch of the opaque operator that
    torch.compile runs (torch.library.opcheck), on a batch mixing frozen and trainable rows."""
    from impls.compact_op import compact_lookup, compact_lookup_backward

    _, fused = make_pair(**options)
    arguments = operator_arguments(fused, batch_ids((5, 7)))
    torch.library.opcheck(compact_lookup, arguments)
    local, pad, scale = arguments[2], arguments[6], arguments[7]
    upstream = torch.randn(local.numel(), DIM, generator=torch.Generator().manual_seed(3))
    backward_arguments = (upstream, local, len(TRAINABLE_IDS), pad, scale)
    torch.library.opcheck(compact_lookup_backward, backward_arguments)


@pytest.mark.parametrize("options", OPERATOR_OPTIONS, ids=str)
def test_the_compiled_lookup_operator_equals_the_eager_lookup(options):
    """The operator gives fused's eager output and trainable-row gradient, option by option."""
    from impls.compact_op import compact_lookup

    ids = batch_ids((5, 7))
    upstream = torch.randn(35, DIM, generator=torch.Generator().manual_seed(3))
    _, eager = make_pair(**options)
    want = eager(ids).reshape(-1, DIM)
    (want * upstream).sum().backward()
    _, operated = make_pair(**options)
    if options.get("max_norm") is not None:  # the lookup renormalises trainable rows first
        operated(ids)
        operated.trainable_weight.grad = None
    got = compact_lookup(*operator_arguments(operated, ids))
    (got * upstream).sum().backward()
    assert torch.equal(got, want), f"{options}: output differs"
    assert torch.allclose(operated.trainable_weight.grad, eager.trainable_weight.grad), (
        f"{options}: gradient of the trainable rows differs"
    )


def test_compiled_fused_runs_the_opaque_operator():
    """Under torch.compile(fullgraph=True) the lookup is one rowfreeze::compact_lookup node (the
    eager kernel), not the fixed-shape Function traced over all T tokens."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    _, fused = make_pair()
    torch._dynamo.reset()
    compiled = torch.compile(fused, fullgraph=True, backend=backend)
    ids = batch_ids((4, 9))
    assert torch.equal(compiled(ids), fused(ids))
    targets = [str(node.target) for gm in graphs for node in gm.graph.nodes]
    assert "rowfreeze.compact_lookup.default" in targets, targets
