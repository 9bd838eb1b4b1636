"""The example behind the zero-gradient answer, worked through by hand.

A 10×3 table, ids [[1, 2, 4, 5], [4, 3, 2, 9]], loss = mean of the output (24 numbers): every
occurrence of a row contributes 1/24 to each of its three gradient entries. Rows 2 and 4 occur
twice (2/24), rows 1, 3, 5 and 9 once (1/24). Freezing rows 2, 4 and 5 must zero exactly those.
"""

import torch

import impls

IDS = torch.tensor([[1, 2, 4, 5], [4, 3, 2, 9]])
FROZEN = [2, 4, 5]
OCCURRENCES = {1: 1, 2: 2, 3: 1, 4: 2, 5: 1, 9: 1}


def hand_computed_gradient(frozen: list[int]) -> torch.Tensor:
    grad = torch.zeros(10, 3)
    for row, count in OCCURRENCES.items():
        if row not in frozen:
            grad[row] = count / 24
    return grad


def test_every_occurrence_contributes_one_twenty_fourth():
    emb = impls.APPROACHES["full"].from_pretrained(torch.randn(10, 3), torch.ones(10).bool())
    emb(IDS).mean().backward()
    torch.testing.assert_close(emb.weight.grad, hand_computed_gradient([]))


def test_freezing_rows_2_4_5_zeroes_exactly_their_gradient():
    mask = torch.ones(10, dtype=torch.bool)
    mask[FROZEN] = False
    for name in ("grad_zero", "grad_hook", "detach_mask"):
        emb = impls.APPROACHES[name].from_pretrained(torch.randn(10, 3), mask)
        emb(IDS).mean().backward()
        torch.testing.assert_close(emb.weight.grad, hand_computed_gradient(FROZEN), msg=name)


def test_split_gets_the_same_gradient_on_its_trainable_rows_only():
    mask = torch.ones(10, dtype=torch.bool)
    mask[FROZEN] = False
    emb = impls.APPROACHES["split"].from_pretrained(torch.randn(10, 3), mask)
    emb(IDS).mean().backward()
    torch.testing.assert_close(emb.trainable_weight.grad, hand_computed_gradient(FROZEN)[mask])


def test_zeroed_gradient_still_drifts_frozen_rows_under_adamw_defaults():
    mask = torch.ones(10, dtype=torch.bool)
    mask[FROZEN] = False
    weight = torch.randn(10, 3, dtype=torch.float64)
    emb = impls.APPROACHES["grad_zero"].from_pretrained(weight, mask)
    optimizer = torch.optim.AdamW(emb.parameters())
    for _ in range(3):
        optimizer.zero_grad()
        emb(IDS).mean().backward()
        optimizer.step()
    drift = emb.merged_weight()[FROZEN] - weight[FROZEN]
    # decoupled decay: w <- w·(1 - lr·wd) per step, lr 1e-3, wd 1e-2, so 3 steps ≈ -3e-5·w
    torch.testing.assert_close(drift, weight[FROZEN] * ((1 - 1e-5) ** 3 - 1), rtol=1e-9, atol=0)
