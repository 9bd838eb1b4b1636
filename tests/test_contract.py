"""The contract of docs/design.md, for every registered approach, on every available device."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import impls
from impls.base import PartiallyFrozenEmbedding

REQUIRED = {
    "full",
    "freeze_all",
    "split",
    "concat",
    "index_copy",
    "parametrize",
    "grad_zero",
    "grad_hook",
    "detach_mask",
    "restore",
}

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
    ),
]

APPROACHES = sorted(impls.APPROACHES)


def test_registry_has_every_required_name_and_names_match_classes():
    assert set(impls.APPROACHES) >= REQUIRED
    for name, cls in impls.APPROACHES.items():
        assert issubclass(cls, PartiallyFrozenEmbedding)
        assert cls.name == name


@pytest.fixture
def table():
    weight = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[0, 3, 7, 9]] = True
    return weight, mask


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("approach", APPROACHES)
def test_starts_from_the_pretrained_table_and_reports_its_mask(approach, device, table):
    weight, mask = (t.to(device) for t in table)
    emb = impls.APPROACHES[approach].from_pretrained(weight, mask)
    assert torch.equal(emb.merged_weight(), weight)
    assert torch.equal(emb.trainable_mask, mask)
    assert not emb.merged_weight().requires_grad


@pytest.mark.parametrize("approach", APPROACHES)
def test_trainable_ids_and_mask_are_equivalent(approach, table):
    weight, mask = table
    by_mask = impls.APPROACHES[approach].from_pretrained(weight, mask)
    by_ids = impls.APPROACHES[approach].from_pretrained(weight, torch.tensor([9, 0, 7, 3]))
    assert torch.equal(by_ids.trainable_mask, by_mask.trainable_mask)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("approach", APPROACHES)
@pytest.mark.parametrize("shape", [(), (5,), (2, 3), (2, 2, 2)])
def test_forward_is_f_embedding_of_the_merged_table_for_any_id_shape(
    approach, device, shape, table
):
    weight, mask = (t.to(device) for t in table)
    emb = impls.APPROACHES[approach].from_pretrained(weight, mask)
    ids = torch.randint(0, 10, shape, generator=torch.Generator().manual_seed(2)).to(device)
    out = emb(ids)
    assert out.shape == (*shape, 4)
    assert torch.equal(out, F.embedding(ids, emb.merged_weight()))


@pytest.mark.parametrize("approach", APPROACHES)
def test_parameters_are_exactly_what_the_optimizer_should_step(approach, table):
    weight, mask = table
    emb = impls.APPROACHES[approach].from_pretrained(weight, mask)
    params = list(emb.parameters())
    assert params, "an optimizer cannot be built from an empty parameter list"
    rows = sum(p.shape[0] for p in params if p.requires_grad)
    expected_rows = {"freeze_all": 0}.get(approach)
    if expected_rows is not None:
        assert rows == expected_rows
    else:
        assert rows in (int(mask.sum()), 10), f"{approach}: {rows} trainable parameter rows"


@pytest.mark.parametrize("approach", APPROACHES)
def test_refused_options_name_the_approach_and_the_option(approach, table):
    weight, mask = table
    cls = impls.APPROACHES[approach]
    for option in cls.refused_options:
        value = {"sparse": True, "scale_grad_by_freq": True, "max_norm": 1.0}.get(option, 0)
        with pytest.raises(impls.UnsupportedOption, match=rf"{approach}.*{option}"):
            cls.from_pretrained(weight, mask, **{option: value})


@pytest.mark.parametrize("approach", APPROACHES)
def test_state_dict_round_trips_into_a_fresh_module(approach, table):
    weight, mask = table
    cls = impls.APPROACHES[approach]
    trained = cls.from_pretrained(weight, mask)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    fresh = cls.from_pretrained(weight, mask)
    fresh.load_state_dict(trained.state_dict())
    assert torch.equal(fresh.merged_weight(), trained.merged_weight())


# The control that trains every row whatever the mask: it needs the gradient torch refuses.
TRAINS_EVERY_ROW = {"full"}


@pytest.mark.parametrize("approach", APPROACHES)
def test_all_frozen_table_with_sparse_and_scale_grad_by_freq_lets_the_rest_train(approach, table):
    """torch's sparse embedding backward refuses ``scale_grad_by_freq``, yet a frozen
    ``nn.Embedding`` with both options lets the rest of a model train: it needs no gradient. Every
    approach does the same with no trainable row, or refuses ``sparse`` at construction by name."""
    weight, _ = table
    frozen = torch.zeros(10, dtype=torch.bool)
    cls = impls.APPROACHES[approach]
    options = {"sparse": True, "scale_grad_by_freq": True}
    if "sparse" in cls.refused_options:
        with pytest.raises(impls.UnsupportedOption, match=rf"{approach}.*sparse"):
            cls.from_pretrained(weight, frozen, **options)
        return
    emb = cls.from_pretrained(weight, frozen, **options)
    head = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD([*emb.parameters(), *head.parameters()], lr=0.1)
    emb.attach(optimizer)
    head_before = head.weight.detach().clone()
    loss = head(emb(torch.tensor([[0, 3, 3], [9, 2, 0]]))).sum()
    if approach in TRAINS_EVERY_ROW:
        with pytest.raises(RuntimeError, match="scale_grad_by_freq"):
            loss.backward()
        return
    loss.backward()
    optimizer.step()
    assert not torch.equal(head.weight, head_before), f"{approach}: the rest of the model froze"
    assert torch.equal(emb.merged_weight(), weight), f"{approach}: a frozen row changed"


def test_restore_without_attach_does_not_protect_frozen_rows(table):
    """``restore`` needs ``attach``: the contract's one extra call is not optional for it."""
    weight, mask = table
    emb = impls.APPROACHES["restore"].from_pretrained(weight, mask)
    optimizer = torch.optim.SGD(emb.parameters(), lr=0.1)
    emb(torch.arange(10)).sum().backward()
    optimizer.step()
    assert not torch.equal(emb.merged_weight()[~mask], weight[~mask])


def test_split_handles_the_boundary_id_and_any_row_order():
    """The popular two-table snippet fails on the first new id (``>`` instead of ``>=``) and
    assumes pretrained rows come first; split accepts both layouts and does not touch ids."""
    weight = torch.randn(6, 2)
    pretrained_first = torch.tensor([False, False, False, True, True, True])
    for mask in (pretrained_first, ~pretrained_first, torch.tensor([1, 0, 1, 0, 0, 1]).bool()):
        emb = impls.APPROACHES["split"].from_pretrained(weight, mask)
        ids = torch.tensor([2, 3, 5, 0])
        before = ids.clone()
        assert torch.equal(emb(ids), weight[ids])
        assert torch.equal(ids, before)
