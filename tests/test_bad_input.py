"""Bad input gets an error that names the argument, the value and what was expected — and the
caller's tensors are left exactly as they were."""

from __future__ import annotations

import pytest
import torch

import impls

APPROACHES = sorted(impls.APPROACHES)
WEIGHT = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
MASK = torch.tensor([True, False, False, True, False, False])

CONSTRUCTION = [
    ("weight not a tensor", dict(weight=[[1.0, 2.0]]), TypeError, r"weight: .*torch\.Tensor.*list"),
    ("weight 1-D", dict(weight=torch.randn(6)), ValueError, r"weight: .*2-D.*\(6,\)"),
    (
        "weight integer",
        dict(weight=torch.ones(6, 3, dtype=torch.long)),
        TypeError,
        r"weight: .*floating-point.*int64",
    ),
    (
        "mask of wrong length",
        dict(trainable=torch.ones(5, dtype=torch.bool)),
        ValueError,
        r"trainable: .*one entry per row \(6\).*length 5",
    ),
    (
        "mask of float dtype",
        dict(trainable=torch.ones(6)),
        TypeError,
        r"trainable: .*torch\.bool.*float32",
    ),
    (
        "mask 2-D",
        dict(trainable=torch.ones(6, 1, dtype=torch.bool)),
        ValueError,
        r"trainable:.*1-D",
    ),
    (
        "trainable id out of range",
        dict(trainable=torch.tensor([1, 6])),
        IndexError,
        r"trainable: row id 6 .*\[0, 6\)",
    ),
    (
        "trainable id negative",
        dict(trainable=torch.tensor([-1])),
        IndexError,
        r"trainable: row id -1 .*\[0, 6\)",
    ),
    (
        "trainable id repeated",
        dict(trainable=torch.tensor([1, 4, 1])),
        ValueError,
        r"trainable: .*distinct, id 1 is repeated",
    ),
    ("padding_idx too large", dict(padding_idx=6), IndexError, r"padding_idx: 6 .*\[-6, 6\)"),
    ("padding_idx too small", dict(padding_idx=-7), IndexError, r"padding_idx: -7 .*\[-6, 6\)"),
    ("padding_idx a float", dict(padding_idx=1.0), TypeError, r"padding_idx: .*int.*1\.0"),
    ("max_norm negative", dict(max_norm=-1.0), ValueError, r"max_norm: .*positive.*-1\.0"),
]


@pytest.mark.parametrize("approach", APPROACHES)
@pytest.mark.parametrize(
    ("label", "arguments", "error", "message"), CONSTRUCTION, ids=[c[0] for c in CONSTRUCTION]
)
def test_bad_construction_arguments_are_named(approach, label, arguments, error, message):
    kwargs = {"weight": WEIGHT, "trainable": MASK, **arguments}
    before = {k: v.clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    with pytest.raises(error, match=message):
        impls.APPROACHES[approach].from_pretrained(**kwargs)
    for name, value in before.items():
        assert torch.equal(kwargs[name], value), f"{approach} modified {name} on {label}"


LOOKUP = [
    ("id too large", torch.tensor([0, 6]), IndexError, r"ids: token id 6 .*\[0, 6\)"),
    ("id negative", torch.tensor([[0], [-2]]), IndexError, r"ids: token id -2 .*\[0, 6\)"),
    ("float ids", torch.tensor([0.0, 1.0]), TypeError, r"ids: .*int64.*float32"),
    ("bool ids", torch.tensor([True]), TypeError, r"ids: .*int64.*bool"),
    ("ids not a tensor", [0, 1], TypeError, r"ids: .*torch\.Tensor.*list"),
]


@pytest.mark.parametrize("approach", APPROACHES)
@pytest.mark.parametrize(("label", "ids", "error", "message"), LOOKUP, ids=[c[0] for c in LOOKUP])
def test_bad_ids_are_named_and_not_modified(approach, label, ids, error, message):
    emb = impls.APPROACHES[approach].from_pretrained(WEIGHT, MASK)
    before = ids.clone() if isinstance(ids, torch.Tensor) else list(ids)
    with pytest.raises(error, match=message):
        emb(ids)
    assert torch.equal(ids, before) if isinstance(ids, torch.Tensor) else ids == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("approach", APPROACHES)
def test_mask_and_ids_on_another_device_are_named(approach):
    with pytest.raises(ValueError, match=r"trainable: .*device cuda.*got cpu"):
        impls.APPROACHES[approach].from_pretrained(WEIGHT.cuda(), MASK)
    emb = impls.APPROACHES[approach].from_pretrained(WEIGHT.cuda(), MASK.cuda())
    with pytest.raises(ValueError, match=r"ids: .*device cuda.*got cpu"):
        emb(torch.tensor([0]))


def test_mask_on_another_device_is_named_without_a_gpu():
    """The device check does not need CUDA to be exercised: the meta device is another device."""
    with pytest.raises(ValueError, match=r"trainable: .*device cpu.*got meta"):
        impls.APPROACHES["split"].from_pretrained(WEIGHT, MASK.to("meta"))
