"""Evaluation metrics: win rate with ties, idealized ranking accuracy (Chen et al. Cor. 3.3), ranking report."""

from __future__ import annotations

import numpy as np
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
