"""Small helpers the notebooks share: held-out splits, the claims table, training curves, sample tables."""

from __future__ import annotations

import pandas as pd
import pytest

from prefkit.data import PreferenceDataError, split_held_out
from prefkit.generate import sample_table
from prefkit.plot import training_curves
from prefkit.repro import claims_table, make_claim


def test_split_held_out_takes_the_first_rows():
    rows = list(range(100))
    train, held = split_held_out(rows)
    assert held == list(range(10)) and train == list(range(10, 100))
    train, held = split_held_out(rows[:20], min_rows=8)
    assert len(held) == 8 and len(train) == 12
    with pytest.raises(PreferenceDataError, match="none to train on"):
        split_held_out(rows[:8])


def test_claims_table_has_one_row_per_claim():
    claims = [
        make_claim("C1", "a beats b", "diff", [0.1, -0.1], lambda v: v > 0, "> 0"),
        make_claim("C2", "sanity", "acc", [0.9], lambda v: v > 0.5, "> 0.5"),
    ]
    t = claims_table(claims)
    assert list(t["id"]) == ["C1", "C2"]
    assert list(t["status"]) == ["old rule: 1/2 seeds", "old rule: 1/1 seeds"]
    assert list(t.columns) == ["id", "kind", "statement", "paper", "metric", "ours", "test", "status"]
    assert list(t["ours"]) == ["0 ± 0.14 (n=2)", "0.9 ± 0 (n=1)"]


def test_training_curves_plots_each_column():
    steps = pd.DataFrame({"step": [0, 1, 2], "loss": [0.7, 0.6, 0.5], "rewards/accuracy": [0.0, 0.5, 1.0]})
    fig = training_curves(steps, {"loss": "loss", "rewards/accuracy": "accuracy"}, "title")
    (ax,) = fig.axes
    assert [line.get_label() for line in ax.get_lines()] == ["loss", "accuracy"]
    assert list(ax.get_lines()[1].get_ydata()) == [0.0, 0.5, 1.0]


def test_sample_table_pairs_prompts_with_samples(tok, model):
    prompts = ["reverse : a b =", "sort : b a ="]
    t = sample_table(model, tok, prompts, max_new_tokens=4, seed=0)
    assert list(t["prompt"]) == prompts and len(t["response"]) == 2
    assert t.equals(sample_table(model, tok, prompts, max_new_tokens=4, seed=0))  # seeded
