"""Scorer losses: Bradley-Terry and the general preference model (GPM) against closed forms and what each can fit."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from prefkit.losses.scorer import bt_scorer_loss, gpm_loss, gpm_score, skew_operator


def _embeddings(b: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, dim, generator=g, dtype=torch.float64), torch.randn(b, dim, generator=g, dtype=torch.float64)


def test_the_two_dimensional_score_is_the_official_codes_cross_product():
    a, b = _embeddings(5, 2, seed=0)
    # GeneralPreferenceLoss: chosen[:, 0] * reject[:, 1] - chosen[:, 1] * reject[:, 0]
    torch.testing.assert_close(gpm_score(a, b), a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])


@pytest.mark.parametrize("weighted", [False, True])
def test_the_score_is_a_transposed_skew_operator_between_the_embeddings(weighted):
    a, b = _embeddings(6, 8, seed=1)
    w = torch.rand(6, 4, dtype=torch.float64) + 0.5 if weighted else None
    R = skew_operator(8, w) if weighted else skew_operator(8, dtype=torch.float64).expand(6, 8, 8)
    assert torch.equal(R.transpose(-1, -2), -R)
    # HighDimGeneralPreferenceLoss: (chosen @ R.T) · reject, row by row
    expected = (a[:, None, :] @ R.transpose(-1, -2) @ b[:, :, None]).reshape(6)
    torch.testing.assert_close(gpm_score(a, b, w), expected)


def test_the_score_is_skew_symmetric_and_the_two_orders_sum_to_one():
    a, b = _embeddings(7, 6, seed=2)
    torch.testing.assert_close(gpm_score(a, b), -gpm_score(b, a))
    assert torch.equal(gpm_score(a, a), torch.zeros(7, dtype=torch.float64))
    _, p_ab = gpm_loss(a, b, tau=0.3)
    _, p_ba = gpm_loss(b, a, tau=0.3)
    torch.testing.assert_close(p_ab + p_ba, torch.ones(7, dtype=torch.float64))


def test_losses_are_cross_entropies_against_the_label():
    a, b = _embeddings(4, 4, seed=3)
    s = gpm_score(a, b) / 0.1
    hard, p = gpm_loss(a, b)
    torch.testing.assert_close(hard, -F.logsigmoid(s))
    torch.testing.assert_close(p, torch.sigmoid(s))
    y = torch.tensor([1.0, 0.75, 0.5, 0.0], dtype=torch.float64)
    soft, _ = gpm_loss(a, b, strength=y)
    torch.testing.assert_close(soft, -y * F.logsigmoid(s) - (1 - y) * F.logsigmoid(-s))
    torch.testing.assert_close(gpm_loss(a, b, strength=1.0)[0], hard)
    rc, rr = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.0])
    loss, p_bt = bt_scorer_loss(rc, rr, tau=0.5)
    torch.testing.assert_close(loss, torch.log1p(torch.exp(-(rc - rr) / 0.5)))
    torch.testing.assert_close(p_bt, 1 / (1 + torch.exp(-(rc - rr) / 0.5)))
    flipped, _ = bt_scorer_loss(rc, rr, strength=torch.zeros(2))
    torch.testing.assert_close(flipped, bt_scorer_loss(rr, rc)[0])


def test_three_vectors_at_120_degrees_predict_a_three_cycle():
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3])
    v = 2.0 * torch.stack([angles.cos(), angles.sin()], -1)  # a, b, c
    winners, losers = v[[0, 1, 2]], v[[1, 2, 0]]  # a ≻ b, b ≻ c, c ≻ a
    s = gpm_score(winners, losers)
    torch.testing.assert_close(s, torch.full((3,), 4.0 * math.sin(2 * math.pi / 3)))
    assert (gpm_loss(winners, losers)[1] > 0.999).all()


def _fit(kind: str, steps: int = 400) -> tuple[float, float]:
    """Free scores (BT) or free 2-D embeddings (GPM, k = 1) of three items fitted to the cycle a ≻ b ≻ c ≻ a:
    (final mean loss, fraction of the three pairs predicted the labelled way)."""
    torch.manual_seed(0)
    x = torch.nn.Parameter(torch.randn(3, 2) if kind == "gpm" else torch.randn(3))
    opt = torch.optim.Adam([x], lr=0.05)
    win, lose = [0, 1, 2], [1, 2, 0]
    for _ in range(steps):
        loss, p = gpm_loss(x[win], x[lose], tau=1.0) if kind == "gpm" else bt_scorer_loss(x[win], x[lose])
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    return float(loss.mean().detach()), float((p > 0.5).float().mean())


def test_gpm_fits_a_three_cycle_that_no_bradley_terry_scorer_fits():
    gpm_loss_value, gpm_acc = _fit("gpm")
    bt_loss_value, bt_acc = _fit("bt")
    assert gpm_acc == 1.0 and gpm_loss_value < 0.05
    # BT's best is all three scores equal: P = 1/2 on every pair, loss ln 2; any ordering gets 2 of 3 pairs at most
    assert bt_acc <= 2 / 3 and bt_loss_value > math.log(2) - 1e-3


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "weights", "match"),
    [
        ((2, 3), (2, 3), None, "even dimension >= 2, got 3"),
        ((2, 4), (3, 4), None, r"one shape, got \(2, 4\) and \(3, 4\)"),
        ((4,), (4,), None, r"\(B, 2k\) embeddings"),
        ((2, 4), (2, 4), (2, 3), "3 entries per row, the embedding 2 blocks"),
    ],
)
def test_bad_shapes_are_refused_with_what_was_given(a_shape, b_shape, weights, match):
    w = None if weights is None else torch.ones(weights)
    with pytest.raises(ValueError, match=match):
        gpm_score(torch.zeros(a_shape), torch.zeros(b_shape), w)
