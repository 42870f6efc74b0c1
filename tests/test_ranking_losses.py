"""Scorer-side ranking losses (RankNet, ListNet, ListMLE, our reading of RankList): the Bradley-Terry form at K = 2, brute-force references,
invariances, padding, gradcheck in float64 and error messages."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from prefkit.losses.ranking import listmle_loss, listnet_loss, ranklist_loss, ranknet_loss
from prefkit.ranking import skip_curriculum

LOSSES = {"ranknet": ranknet_loss, "listnet": listnet_loss, "listmle": listmle_loss, "ranklist": ranklist_loss}


def _lists(B=4, K=5, seed=0, ties=True, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, K, generator=g, dtype=dtype)
    if ties:
        y = torch.randint(0, 3, (B, K), generator=g).to(dtype)
    else:
        y = torch.stack([torch.randperm(K, generator=g) for _ in range(B)]).to(dtype)
    return s, y


# Closed forms at K = 2


@pytest.mark.parametrize("name", ["ranknet", "listmle", "ranklist"])
def test_k2_is_bradley_terry(name):
    s = torch.tensor([[0.3, -1.2], [2.0, 0.5], [-0.4, 0.9]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [0.2, 3.0], [5.0, -1.0]], dtype=torch.float64)
    better, worse = torch.where(y[:, 0] > y[:, 1], s[:, 0], s[:, 1]), torch.where(y[:, 0] > y[:, 1], s[:, 1], s[:, 0])
    torch.testing.assert_close(LOSSES[name](s, y), -F.logsigmoid(better - worse))


def test_listnet_k2_small_temperature_is_bradley_terry():
    s = torch.tensor([[0.3, -1.2], [2.0, 0.5]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    expected = -F.logsigmoid(torch.tensor([0.3 + 1.2, 0.5 - 2.0], dtype=torch.float64))
    torch.testing.assert_close(listnet_loss(s, y, temperature=1e-3), expected)
    # at T = 1 the target is soft: softmax(y) = (σ(1), σ(-1)) for y = (1, 0)
    p = torch.sigmoid(torch.tensor(1.0, dtype=torch.float64))
    d = torch.tensor(1.5, dtype=torch.float64)
    soft = -(p * F.logsigmoid(d) + (1 - p) * F.logsigmoid(-d))
    torch.testing.assert_close(listnet_loss(s[:1], y[:1]), soft[None])


def test_ranknet_ties_form_no_pair():
    s = torch.tensor([[0.3, -1.2, 0.7]], dtype=torch.float64)
    torch.testing.assert_close(
        ranknet_loss(s, torch.ones(1, 3, dtype=torch.float64)), torch.zeros(1, dtype=torch.float64)
    )
    # y = (1, 1, 0): pairs (0, 2) and (1, 2) only
    y = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    expected = -(F.logsigmoid(s[0, 0] - s[0, 2]) + F.logsigmoid(s[0, 1] - s[0, 2])) / 2
    torch.testing.assert_close(ranknet_loss(s, y), expected[None])


# Brute-force references


def test_ranknet_matches_pair_loop():
    s, y = _lists(B=3, K=5, seed=1)
    out = ranknet_loss(s, y)
    for b in range(3):
        costs = [
            -math.log(1 / (1 + math.exp(-(s[b, i] - s[b, j]).item())))
            for i in range(5)
            for j in range(5)
            if y[b, i] > y[b, j]
        ]
        assert out[b].item() == pytest.approx(sum(costs) / len(costs), rel=1e-10)


def test_listnet_matches_explicit_cross_entropy():
    s, y = _lists(B=3, K=4, seed=2)
    for T in (0.5, 1.0, 3.0):
        target = torch.exp(y / T) / torch.exp(y / T).sum(-1, keepdim=True)
        pred = torch.exp(s) / torch.exp(s).sum(-1, keepdim=True)
        torch.testing.assert_close(listnet_loss(s, y, temperature=T), -(target * torch.log(pred)).sum(-1))


def _plackett_luce_nll(s: list[float], order: list[int]) -> float:
    """-log Π_k exp(s_{π(k)}) / Σ_{j ≥ k} exp(s_{π(j)}), one stage at a time."""
    nll, remaining = 0.0, list(order)
    for item in order:
        nll -= math.log(math.exp(s[item]) / sum(math.exp(s[j]) for j in remaining))
        remaining.remove(item)
    return nll


def test_listmle_matches_brute_force_plackett_luce():
    s, y = _lists(B=4, K=5, seed=3, ties=False)
    out = listmle_loss(s, y)
    for b in range(4):
        order = sorted(range(5), key=lambda i: -y[b, i].item())
        assert out[b].item() == pytest.approx(_plackett_luce_nll(s[b].tolist(), order), rel=1e-10)


def test_listmle_is_a_distribution_over_orders():
    """Σ over all K! orders of exp(-ListMLE) = 1: the loss is an exact negative log-probability."""
    K = 4
    s = torch.randn(1, K, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    total = 0.0
    for perm in itertools.permutations(range(K)):
        y = torch.empty(1, K, dtype=torch.float64)
        y[0, list(perm)] = torch.arange(K, 0, -1, dtype=torch.float64)  # perm[0] is best
        total += math.exp(-listmle_loss(s, y).item())
    assert total == pytest.approx(1.0, abs=1e-12)


def test_listmle_breaks_ties_by_index():
    s = torch.tensor([[0.3, -1.2, 0.7, 0.1]], dtype=torch.float64)
    tied = torch.tensor([[1.0, 1.0, 0.0, 1.0]], dtype=torch.float64)
    untied = torch.tensor([[3.0, 2.0, 0.0, 1.0]], dtype=torch.float64)  # the same order: 0, 1, 3, 2
    torch.testing.assert_close(listmle_loss(s, tied), listmle_loss(s, untied))
    assert listmle_loss(s, tied).item() == pytest.approx(_plackett_luce_nll(s[0].tolist(), [0, 1, 3, 2]), rel=1e-12)


# Invariances


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_permuting_list_and_labels_together(name):
    s, y = _lists(B=4, K=6, seed=5, ties=name != "listmle")  # ListMLE's tie-break depends on order by design
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(LOSSES[name](s[:, perm], y[:, perm]), LOSSES[name](s, y))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_adding_a_constant_to_scores(name):
    s, y = _lists(B=4, K=5, seed=7)
    torch.testing.assert_close(LOSSES[name](s + 3.7, y), LOSSES[name](s, y))


def test_listnet_shift_of_labels_leaves_target_unchanged():
    s, y = _lists(B=4, K=5, seed=8)
    torch.testing.assert_close(listnet_loss(s, y - 10.0), listnet_loss(s, y))


# Padding


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_padding_is_ignored(name):
    s, y = _lists(B=2, K=4, seed=9, ties=False)
    pad_s = torch.cat([s[:, :2], torch.full((2, 3), float("nan"), dtype=s.dtype), s[:, 2:]], 1).requires_grad_()
    pad_y = torch.cat([y[:, :2], torch.full((2, 3), float("nan"), dtype=y.dtype), y[:, 2:]], 1)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[:, 2:5] = False
    out = LOSSES[name](pad_s, pad_y, mask)
    torch.testing.assert_close(out, LOSSES[name](s, y))
    out.sum().backward()
    assert torch.isfinite(pad_s.grad).all()
    assert (pad_s.grad[:, 2:5] == 0).all()


# Gradients


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradcheck(name):
    s, y = _lists(B=3, K=4, seed=10)
    mask = torch.tensor([[True] * 4, [True, True, False, True], [False, True, True, True]])
    s.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: LOSSES[name](x, y), (s,))
    assert torch.autograd.gradcheck(lambda x: LOSSES[name](x, y, mask), (s,))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradient_pushes_best_up_and_worst_down(name):
    s = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[0.0, 3.0, 1.0, 2.0]], dtype=torch.float64)
    LOSSES[name](s, y).sum().backward()
    assert s.grad[0, 1] < 0 < s.grad[0, 0]  # descent raises the best item's score, lowers the worst's


# Bad input


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_errors(name):
    loss = LOSSES[name]
    s, y = _lists(B=2, K=3)
    with pytest.raises(ValueError, match=r"must both be \(B, K\)"):
        loss(s, y[:, :2])
    with pytest.raises(ValueError, match=r"must both be \(B, K\)"):
        loss(s[0], y[0])
    with pytest.raises(ValueError, match="K >= 2"):
        loss(s[:, :1], y[:, :1])
    bad = y.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        loss(s, bad)
    with pytest.raises(ValueError, match="bool tensor"):
        loss(s, y, torch.ones(2, 3))
    with pytest.raises(ValueError, match="at least 2 real"):
        loss(s, y, torch.tensor([[True, True, True], [False, True, False]]))


def test_listnet_temperature_must_be_positive():
    s, y = _lists(B=2, K=3)
    with pytest.raises(ValueError, match="temperature"):
        listnet_loss(s, y, temperature=0.0)


# RankList (our reading of the abstract): against a loop over levels


def _ranklist_loop(s, y, max_skip=None, exact=False):
    """Per list: local softplus over adjacent label levels + per-item LSE (or softplus sum) over levels 2..k below."""
    levels = sorted(set(y), reverse=True)
    lev = [levels.index(v) for v in y]
    k = len(s) if max_skip is None else max_skip
    total, terms = 0.0, 0
    for i in range(len(s)):
        far = []
        for j in range(len(s)):
            g = lev[j] - lev[i]
            if g == 1:
                total, terms = total + math.log1p(math.exp(s[j] - s[i])), terms + 1
            elif 2 <= g <= k:
                far.append(s[j] - s[i])
        if far and exact:
            total, terms = total + sum(math.log1p(math.exp(d)) for d in far), terms + len(far)
        elif far:
            total, terms = total + math.log(1 + sum(math.exp(d) for d in far)), terms + 1
    return total / max(terms, 1)


@pytest.mark.parametrize("exact", [False, True])
@pytest.mark.parametrize("max_skip", [None, 1, 2, 3])
def test_ranklist_matches_level_loop(exact, max_skip):
    s, y = _lists(B=6, K=6, seed=11)  # ties: labels in {0, 1, 2}
    s2, y2 = _lists(B=6, K=6, seed=12, ties=False)
    for ss, yy in ((s, y), (s2, y2)):
        got = ranklist_loss(ss, yy, max_skip=max_skip, exact=exact)
        want = [_ranklist_loop(a.tolist(), b.tolist(), max_skip, exact) for a, b in zip(ss, yy)]
        torch.testing.assert_close(got, torch.tensor(want, dtype=ss.dtype))


def test_ranklist_skip_one_is_ranknet_on_adjacent_levels():
    s = torch.tensor([[0.4, -0.3, 1.1, 0.2]], dtype=torch.float64)
    y = torch.tensor([[3.0, 1.0, 0.0, 2.0]], dtype=torch.float64)  # order 0, 3, 1, 2
    adjacent = -(F.logsigmoid(s[0, 0] - s[0, 3]) + F.logsigmoid(s[0, 3] - s[0, 1]) + F.logsigmoid(s[0, 1] - s[0, 2]))
    torch.testing.assert_close(ranklist_loss(s, y, max_skip=1), adjacent[None] / 3)


def test_ranklist_exact_whole_list_is_ranknet_over_all_pairs():
    s, y = _lists(B=4, K=5, seed=13, ties=False)
    torch.testing.assert_close(ranklist_loss(s, y, exact=True), ranknet_loss(s, y))  # both: mean over the 10 pairs


def test_ranklist_lse_is_below_the_exact_non_local_term():
    s, y = _lists(B=8, K=6, seed=14, ties=False)
    # one non-local set per item: LSE term <= sum of softplus terms (log(1 + Σ e) <= Σ log(1 + e))
    d = s[:, None, :] - s[:, :, None]
    below = (y[:, None, :] < y[:, :, None]).to(s.dtype)
    lse = torch.log1p((below * d.exp()).sum(-1))
    exact = (below * F.softplus(d)).sum(-1)
    assert (lse <= exact + 1e-12).all()


def test_ranklist_all_tied_is_zero_and_skip_is_checked():
    s = torch.randn(2, 4, dtype=torch.float64)
    torch.testing.assert_close(ranklist_loss(s, torch.ones(2, 4, dtype=torch.float64)), torch.zeros(2, dtype=s.dtype))
    with pytest.raises(ValueError, match="max_skip must be >= 1"):
        ranklist_loss(s, s, max_skip=0)


def test_skip_curriculum_rises_from_adjacent_to_the_whole_list():
    sched = skip_curriculum(epochs=10, list_size=5, ramp=0.5)
    ks = [sched(e)["max_skip"] for e in range(10)]
    assert ks[0] == 1 and ks[-1] == 4 and ks == sorted(ks) and ks[5:] == [4] * 5
    with pytest.raises(ValueError, match="ramp"):
        skip_curriculum(10, 5, ramp=0.0)
