"""Evaluation metrics: win rate with ties, idealized ranking accuracy (Chen et al. Cor. 3.3), ranking report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prefkit.evaluate import idealized_ranking_accuracy, ranking_report, win_rate
from prefkit.models import Reference


def test_win_rate_counts_ties_half():
    assert win_rate([1, 0, 0.5, 0.2], [0, 1, 0.5, 0.1]) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    with pytest.raises(ValueError, match="aligned"):
        win_rate([1, 2], [1])


def test_idealized_ranking_accuracy_closed_form():
    # π_ref prefers y_l by 1 nat; with P(y_w > y_l) = 0.75 and β = 1, logit(0.75) = ln 3 ≈ 1.0986 > 1: ranked right.
    assert idealized_ranking_accuracy(np.array([-2.0]), np.array([-1.0]), np.array([0.75]), beta=1.0) == 1.0
    # With β = 2 the preference term halves to 0.549 < 1: the exact DPO optimum still ranks the pair wrong.
    assert idealized_ranking_accuracy(np.array([-2.0]), np.array([-1.0]), np.array([0.75]), beta=2.0) == 0.0
    # A coin-flip preference leaves π_ref's order.
    assert idealized_ranking_accuracy(np.array([-1.0, -3.0]), np.array([-2.0, -1.0]), np.array([0.5, 0.5]), 0.1) == 0.5


def test_ranking_report_at_the_reference(tok, model, pair_rows):
    rows = [{**r, "p_true": 0.9} for r in pair_rows]
    rep = ranking_report(model, Reference(model), tok, rows, beta=0.1)
    assert rep["ranking_acc"] == rep["ref_ranking_acc"]  # the policy is its reference
    assert rep["margin"] == pytest.approx(0.0, abs=1e-6)
    assert rep["flipped_to_wrong"] in (0.0,) or np.isnan(rep["flipped_to_wrong"])
    assert 0.0 <= rep["idealized_acc"] <= 1.0


def test_margin_tracking_against_a_hand_computation(tok, model, pair_rows):
    import copy

    from prefkit.evaluate import margin_tracking, response_logps

    rows = [
        {**r, "prompt": r["prompt"], "score_chosen": sc, "score_rejected": sr}
        for r, (sc, sr) in zip(
            pair_rows * 3,
            [(1, 0), (0.2, 0.6), (0.5, 0.4), (0.9, 0.1), (0.3, 0.35), (0.8, 0.2), (0, 1), (1, 0.7), (0.6, 0.6)],
        )
    ]
    ref = Reference(model)
    policy = copy.deepcopy(model)
    torch_seed_perturb(policy)
    out = margin_tracking(policy, ref, tok, rows, beta=0.5, n_bins=2)
    kept = [r for r in rows if r["score_chosen"] != r["score_rejected"]]  # the tied pair carries no order
    p = [r["prompt"] for r in kept]
    lp = lambda m, k: response_logps(m, tok, p, [r[k] for r in kept])[0]  # noqa: E731
    m = 0.5 * ((lp(policy, "chosen") - lp(model, "chosen")) - (lp(policy, "rejected") - lp(model, "rejected")))
    dr = np.array([r["score_chosen"] - r["score_rejected"] for r in kept])
    ranks = lambda x: pd.Series(x).rank().to_numpy()  # noqa: E731  average ranks for ties (repeated pairs)
    assert out["spearman"] == pytest.approx(np.corrcoef(ranks(m), ranks(dr))[0, 1], abs=1e-9)
    assert out["oracle_reward_acc"] == pytest.approx(np.mean(m * np.sign(dr) > 0))
    small = np.argsort(np.abs(dr), kind="stable")[:4]
    assert out["bins"][0]["margin"] == pytest.approx(np.mean((m * np.sign(dr))[small]), abs=1e-9)
    assert [b["gap"] for b in out["bins"]] == sorted(b["gap"] for b in out["bins"])
    with pytest.raises(ValueError, match="at least 8 pairs"):
        margin_tracking(policy, ref, tok, kept[:5], beta=0.5)


def torch_seed_perturb(model):
    import torch

    torch.manual_seed(1)
    with torch.no_grad():
        for q in model.parameters():
            q.add_(0.3 * torch.randn_like(q))
