"""Hypothesis strategies for training cases: the one place where "any input" is defined.

Tables are small (V 1–64, D 1–16) so thousands of examples run in seconds; masks include the
degenerate all-frozen and all-trainable ones and the "pretrained rows first" layout whose boundary
id broke the popular two-table snippet; ids repeat, and are biased towards the boundary id and
the padding id; a batch has a handful of tokens or, now and then, 32 to 64. Values come from a
seeded torch generator: hypothesis shrinks the shape, the mask and the ids, which is what a
reader of a counterexample needs small.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from bench.verify.trajectory import TrainingCase

MASK_LAYOUTS = ("random", "all_frozen", "all_trainable", "pretrained_first", "new_first")
LARGE_BATCH = 32
"""The smallest of the large batches drawn beside small ones."""


@st.composite
def masks(draw, num_rows: int) -> torch.Tensor:
    layout = draw(st.sampled_from(MASK_LAYOUTS))
    if layout == "all_frozen":
        return torch.zeros(num_rows, dtype=torch.bool)
    if layout == "all_trainable":
        return torch.ones(num_rows, dtype=torch.bool)
    if layout in ("pretrained_first", "new_first"):
        boundary = draw(st.integers(0, num_rows))
        mask = torch.arange(num_rows) >= boundary
        return mask if layout == "pretrained_first" else ~mask
    bits = draw(st.lists(st.booleans(), min_size=num_rows, max_size=num_rows))
    return torch.tensor(bits, dtype=torch.bool)


def boundary_id(mask: torch.Tensor) -> int | None:
    """The first trainable row after a frozen one: the id the ``>`` vs ``>=`` bug mishandles."""
    edges = (mask[1:] & ~mask[:-1]).nonzero()
    return int(edges[0, 0]) + 1 if edges.numel() else None


@st.composite
def id_batches(draw, num_rows: int, special: list[int], max_steps: int) -> list[torch.Tensor]:
    steps = draw(st.integers(1, max_steps))
    two_d = draw(st.booleans())
    # Mostly a handful of tokens (small counterexamples), sometimes a batch of 32 to 64: a
    # lookup that takes another path for large batches must be reached too.
    length = st.integers(1, 12) | st.integers(LARGE_BATCH, 2 * LARGE_BATCH)
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 6))) if two_d else (draw(length),)
    size = shape[0] * (shape[1] if two_d else 1)
    one_id = st.integers(0, num_rows - 1)
    if special:
        one_id = st.one_of(one_id, st.sampled_from(special))
    return [
        torch.tensor(draw(st.lists(one_id, min_size=size, max_size=size))).view(shape)
        for _ in range(steps)
    ]


@st.composite
def cases(
    draw,
    dtype: torch.dtype = torch.float64,
    max_rows: int = 64,
    max_dim: int = 16,
    max_steps: int = 4,
    padding: str | None = "any",
) -> TrainingCase:
    """A training case. ``padding``: None for no padding_idx, "any" to draw one (or none),
    "frozen" / "trainable" for a padding_idx on such a row (none when the mask has no such row).
    """
    num_rows = draw(st.integers(1, max_rows))
    dim = draw(st.integers(1, max_dim))
    mask = draw(masks(num_rows))
    options = {}
    if padding == "any":
        candidates = list(range(num_rows)) if draw(st.booleans()) else []
    elif padding in ("frozen", "trainable"):
        candidates = (mask if padding == "trainable" else ~mask).nonzero().squeeze(1).tolist()
    elif padding is None:
        candidates = []
    else:
        raise ValueError(f"padding: expected None, 'any', 'frozen' or 'trainable', got {padding!r}")
    if candidates:
        options["padding_idx"] = draw(st.sampled_from(candidates))
    special = [i for i in (boundary_id(mask), options.get("padding_idx")) if i is not None]
    batches = draw(id_batches(num_rows, special, max_steps))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(num_rows, dim, generator=generator, dtype=torch.float64).to(dtype)
    coefficients = tuple(
        (0.5 + torch.rand(*ids.shape, dim, generator=generator, dtype=torch.float64)).to(dtype)
        for ids in batches
    )
    return TrainingCase(weight, mask, tuple(batches), coefficients, options)


def worked_example(dtype: torch.dtype = torch.float64, steps: int = 3) -> TrainingCase:
    """The example behind the zero-gradient answer: a 10×3 table, ids [[1,2,4,5],[4,3,2,9]],
    frozen rows 2, 4 and 5, loss = mean of the output (every occurrence contributes 1/24)."""
    ids = torch.tensor([[1, 2, 4, 5], [4, 3, 2, 9]])
    mask = torch.ones(10, dtype=torch.bool)
    mask[[2, 4, 5]] = False
    weight = torch.randn(10, 3, generator=torch.Generator().manual_seed(0), dtype=dtype)
    coefficients = torch.full((2, 4, 3), 1 / 24, dtype=dtype)
    return TrainingCase(weight, mask, (ids,) * steps, (coefficients,) * steps, {})


def pretrained_first_example() -> TrainingCase:
    """The two-table snippet's own layout: four rows, the two pretrained ones first, one batch
    looking up a pretrained id (not 0) and one a new id past the boundary. Drawn cases reach it
    rarely (1 in 100 under Adafactor), so the tests try it before searching."""
    weight = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mask = torch.tensor([False, False, True, True])
    coefficients = (torch.ones(1, 2, dtype=torch.float64),) * 2
    return TrainingCase(weight, mask, (torch.tensor([1]), torch.tensor([3])), coefficients, {})


def probe_case(padding: str | None) -> TrainingCase:
    """The simplest case a scenario allows, in a layout every implementation can express: four
    rows, the two pretrained ones first, every id looked up once; the padding row on a frozen
    (``padding="frozen"``) or trainable (``"trainable"``) row where the scenario puts one.

    Whether an implementation refuses this case says whether it supports the scenario at all.
    """
    options = {"frozen": {"padding_idx": 0}, "trainable": {"padding_idx": 3}}.get(padding, {})
    weight = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mask = torch.tensor([False, False, True, True])
    coefficients = torch.ones(4, 2, dtype=torch.float64)
    return TrainingCase(weight, mask, (torch.arange(4),), (coefficients,), options)
