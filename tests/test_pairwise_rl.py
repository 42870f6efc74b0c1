"""Pairwise-RL's anchored reward, the pairwise and pointwise reward models, and calibration metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefkit.pairwise_rl import (
    PairwiseHead,
    RewardMLP,
    anchored_reward,
    anchored_score,
    expected_calibration_error,
    fit_preference_model,
    judge_features,
    reliability_table,
)

# ---- the anchored reward ----


def test_anchored_reward_is_the_mean_of_both_orders_and_stays_in_the_unit_interval():
    p_ya = torch.tensor([0.9, 0.2, 0.5, 1.0, 0.0])
    p_ay = torch.tensor([0.3, 0.6, 0.5, 0.0, 1.0])
    r = anchored_reward(p_ya, p_ay)
    torch.testing.assert_close(r, torch.tensor([0.8, 0.3, 0.5, 1.0, 0.0]))  # ½ [P(y ≻ a) + 1 − P(a ≻ y)]
    g = torch.Generator().manual_seed(0)
    many = anchored_reward(torch.rand(1000, generator=g), torch.rand(1000, generator=g))
    assert many.min() >= 0 and many.max() <= 1


def test_anchored_reward_cancels_a_position_bias_and_is_p_for_a_consistent_model():
    p = torch.tensor([0.1, 0.4, 0.7])
    torch.testing.assert_close(anchored_reward(p, 1 - p), p)  # P(a ≻ b) + P(b ≻ a) = 1: r = P(y ≻ a)
    eps = 0.08  # the model adds eps to whichever response it reads first
    torch.testing.assert_close(anchored_reward(p + eps, 1 - p + eps), p)
    # swapping which of the two is the sample flips the reward around ½
    torch.testing.assert_close(anchored_reward(1 - p + eps, p + eps), 1 - p)


def test_anchored_reward_keeps_numpy_and_refuses_bad_input():
    r = anchored_reward(np.array([0.6, 0.2]), np.array([0.2, 0.6]))
    assert isinstance(r, np.ndarray)
    np.testing.assert_allclose(r, [0.7, 0.3])
    with pytest.raises(ValueError, match=r"shape \(2,\) and P\(a ≻ y\) \(3,\)"):
        anchored_reward(torch.rand(2), torch.rand(3))
    with pytest.raises(ValueError, match=r"P\(y ≻ a\) must be probabilities in \[0, 1\]; element 1 is 1.5"):
        anchored_reward(torch.tensor([0.5, 1.5]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"P\(a ≻ y\) must be .* element 0 is nan"):
        anchored_reward(torch.tensor([0.5]), torch.tensor([float("nan")]))


# ---- the reward models ----


def _data(n: int, d: int, seed: int):
    """Pairs labelled by a hidden linear reward w·f (the same w for every seed) under Bradley-Terry."""
    w = torch.randn(d, generator=torch.Generator().manual_seed(99))
    g = torch.Generator().manual_seed(seed)
    fa, fb = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    p = torch.sigmoid(2 * (fa - fb) @ w)
    return fa, fb, torch.bernoulli(p, generator=g), p


def test_an_antisymmetric_head_and_a_bt_model_give_complementary_probabilities():
    g = torch.Generator().manual_seed(1)
    fa, fb = torch.randn(50, 6, generator=g), torch.randn(50, 6, generator=g)
    torch.manual_seed(0)
    for m in (PairwiseHead(6, antisymmetric=True), RewardMLP(6)):
        torch.testing.assert_close(m(fa, fb) + m(fb, fa), torch.ones(50))
        torch.testing.assert_close(m(fa, fa), torch.full((50,), 0.5))
        torch.testing.assert_close(anchored_score(m, fa, fb), m(fa, fb))  # no bias to cancel: r = P(y ≻ a)
    free = PairwiseHead(6, antisymmetric=False)  # an ordered judge: only learns to be consistent
    assert (free(fa, fb) + free(fb, fa) - 1).abs().max() > 1e-3
    sym = anchored_score(free, fa, fb) + anchored_score(free, fb, fa)
    torch.testing.assert_close(sym, torch.ones(50))  # the anchored reward is order-consistent for any model


def test_bt_logit_is_the_reward_difference():
    torch.manual_seed(0)
    m = RewardMLP(4)
    g = torch.Generator().manual_seed(2)
    fa, fb = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    torch.testing.assert_close(m.logit(fa, fb), m.reward(fa) - m.reward(fb))


@pytest.mark.parametrize("make", [lambda d: PairwiseHead(d, hidden=32), lambda d: RewardMLP(d, hidden=32)])
def test_both_models_learn_a_transitive_rule_and_stop_early(make):
    fa, fb, y, p = _data(600, 5, seed=3)
    vfa, vfb, vy, vp = _data(300, 5, seed=4)  # fresh pairs under the same rule
    model, hist = fit_preference_model(make(5), fa, fb, y, (vfa, vfb, vy), steps=600, lr=1e-2, patience=5)
    acc = float(((model(vfa, vfb) > 0.5) == (vp > 0.5)).float().mean())
    assert acc > 0.85
    assert hist["best_val"] == min(hist["val"]) and hist["best_step"] in hist["step"]
    assert not any(q.requires_grad for q in model.parameters())
    with torch.no_grad():  # the kept weights are the best ones
        v = torch.nn.functional.binary_cross_entropy_with_logits(model.logit(vfa, vfb), vy)
    assert abs(float(v) - hist["best_val"]) < 1e-5


def test_the_pairwise_head_reads_the_pair_but_the_bt_model_cannot():
    """Labels that depend on the two responses jointly (a wins when b lies counter-clockwise of a in the first two
    coordinates): cyclic, so no pointwise reward fits them, while the pairwise head does."""
    g = torch.Generator().manual_seed(4)
    fa, fb = torch.randn(1500, 3, generator=g), torch.randn(1500, 3, generator=g)
    rule = (fa[:, 0] * fb[:, 1] - fb[:, 0] * fa[:, 1] > 0).float()  # skew-symmetric: a rotation's cross product
    n = 1000
    val = (fa[n:], fb[n:], rule[n:])
    head, _ = fit_preference_model(PairwiseHead(3, hidden=64), fa[:n], fb[:n], rule[:n], val, steps=800, lr=1e-2)
    bt, _ = fit_preference_model(RewardMLP(3, hidden=64), fa[:n], fb[:n], rule[:n], val, steps=800, lr=1e-2)
    acc = lambda m: float(((m(fa[n:], fb[n:]) > 0.5).float() == rule[n:]).float().mean())  # noqa: E731
    assert acc(head) > 0.85 and acc(bt) < 0.65


def test_fitting_refuses_bad_labels_and_mismatched_pairs():
    fa, fb, y, _ = _data(10, 3, seed=0)
    val = (fa, fb, y)
    with pytest.raises(ValueError, match="fa has 10 pairs but labels has 9"):
        fit_preference_model(RewardMLP(3), fa, fb, y[:9], val)
    with pytest.raises(ValueError, match=r"labels must be probabilities in \[0, 1\]; element 2 is 2.0"):
        fit_preference_model(RewardMLP(3), fa, fb, torch.tensor([0, 1, 2.0] + [0.0] * 7), val)
    with pytest.raises(ValueError, match="features have 4 dimensions; the model reads 3"):
        RewardMLP(3)(torch.zeros(2, 4), torch.zeros(2, 4))


def test_judge_features_are_the_last_state_and_the_log_probs(tok, model):
    from prefkit.gpm import response_features
    from prefkit.logps import encode_lists, list_logps

    prompts = ["reverse : a b c =", "sort : d a c ="]
    responses = [["c b a", "a"], ["a c d", "d c a | a"]]
    f = judge_features(model, tok, prompts, responses)
    H = model.config.hidden_size
    assert f.shape == (2, 2, H + 2)
    torch.testing.assert_close(f[..., :H], response_features(model, tok, prompts, responses), rtol=1e-4, atol=1e-5)
    model.eval()
    with torch.no_grad():
        total, n = list_logps(model, encode_lists(tok, prompts, responses))
    torch.testing.assert_close(f[..., H + 1], total, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(f[..., H], total / n, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="same number of responses"):
        judge_features(model, tok, prompts, [["a"], ["a", "b"]])


# ---- calibration ----


def test_ece_closed_forms():
    # a constant forecast of 0.7 on outcomes that are 70% wins is calibrated
    assert expected_calibration_error([0.7] * 10, [1] * 7 + [0] * 3) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error([1.0, 1.0], [0, 0]) == pytest.approx(1.0)  # certain and always wrong
    # two bins: 0.15 (outcomes 0, 0) and 0.85 (outcomes 1, 0): (2/4)·0.15 + (2/4)·|0.5 − 0.85|
    assert expected_calibration_error([0.15, 0.15, 0.85, 0.85], [0, 0, 1, 0]) == pytest.approx(0.5 * 0.15 + 0.5 * 0.35)
    # bins are fixed, not adaptive: 0.55 and 0.45 fall in different bins of 10, so nothing averages out
    assert expected_calibration_error([0.45, 0.55], [1, 0]) == pytest.approx(0.5 * 0.55 + 0.5 * 0.55)
    # with one bin it is |mean label − mean P|: the same pair averages out
    assert expected_calibration_error([0.45, 0.55], [1, 0], n_bins=1) == pytest.approx(0.0, abs=1e-12)
    # soft labels: the true probabilities themselves give 0
    p = np.linspace(0, 1, 101)
    assert expected_calibration_error(p, p, n_bins=10) == pytest.approx(0.0, abs=1e-12)


def test_reliability_table_bins_and_edges():
    rows = reliability_table([0.0, 0.05, 0.1, 0.95, 1.0], [0, 1, 1, 1, 0], n_bins=10)
    assert len(rows) == 10 and rows[0]["lo"] == 0.0 and rows[-1]["hi"] == 1.0
    assert [r["count"] for r in rows] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 2]  # 0.1 opens bin 1; 1.0 closes the last bin
    assert rows[0]["confidence"] == pytest.approx(0.025) and rows[0]["frequency"] == pytest.approx(0.5)
    assert np.isnan(rows[2]["confidence"]) and np.isnan(rows[2]["gap"])
    ece = sum(r["count"] * abs(r["gap"]) for r in rows if r["count"]) / 5
    assert expected_calibration_error([0.0, 0.05, 0.1, 0.95, 1.0], [0, 1, 1, 1, 0]) == pytest.approx(ece)


@pytest.mark.parametrize(
    ("probs", "labels", "n_bins", "match"),
    [
        ([0.5, 0.5], [1], 10, "2 probabilities for 1 labels"),
        ([], [], 10, "no predictions"),
        ([0.5, 1.2], [1, 0], 10, r"probability 1 is 1.2; must be in \[0, 1\]"),
        ([0.5], [-1], 10, r"label 0 is -1.0"),
        ([0.5], [1], 0, "n_bins must be an integer >= 1"),
    ],
)
def test_calibration_refuses_bad_input(probs, labels, n_bins, match):
    with pytest.raises(ValueError, match=match):
        expected_calibration_error(probs, labels, n_bins)
    with pytest.raises(ValueError, match=match):
        reliability_table(probs, labels, n_bins)


def test_anchored_reward_fn_scores_samples_against_each_prompts_anchor_and_caches_anchors():
    from prefkit.pairwise_rl import AnchoredReward

    emb = {w: torch.tensor([float(i), float(i) ** 2]) for i, w in enumerate(["a", "b", "c", "d"])}
    calls = []

    def featurize(prompts, responses):  # (B, K, 2): a lookup standing in for a language model's features
        calls.append([list(r) for r in responses])
        return torch.stack([torch.stack([emb[y] for y in ys]) for ys in responses])

    torch.manual_seed(0)
    bt = RewardMLP(2)
    reward = AnchoredReward(bt, featurize, {"p": "a", "q": "d"})
    got = reward(["p", "q"], [["b", "c"], ["a", "d"]])
    assert isinstance(got, np.ndarray) and got.shape == (2, 2)
    r = {w: float(bt.reward(f[None]).detach()) for w, f in emb.items()}
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    expected = [[sig(r["b"] - r["a"]), sig(r["c"] - r["a"])], [sig(r["a"] - r["d"]), 0.5]]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    again = reward(["q", "p"], [["b", "b"], ["c", "c"]])  # the other order: each prompt keeps its own anchor
    np.testing.assert_allclose(again[:, 0], [sig(r["b"] - r["d"]), sig(r["c"] - r["a"])], rtol=1e-5)
    assert calls.count([["a"], ["d"]]) == 1 and len(calls) == 3  # anchors featurised once, on first use
    assert reward.means == pytest.approx([float(np.mean(expected)), float(np.mean(again))])
    with pytest.raises(ValueError, match="no anchor for prompt 'z'"):
        reward(["z"], [["a", "b"]])
