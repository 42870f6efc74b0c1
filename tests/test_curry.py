"""Curry-DPO: pairs ordered by score gap, stages easy -> hard (or hard -> easy), and staged training on the online loop
with the previous stage's model (or the starting model) as reference."""

from __future__ import annotations

import copy

import pytest
import torch

from prefkit.curry import curriculum_stages, gap_pairs, staged_dpo
from prefkit.data import PreferenceDataError
from prefkit.losses import dpo_loss
from prefkit.models import Reference
from prefkit.online import online_rounds
from prefkit.toy import run_arm
from prefkit.train import StepBatches, TrainConfig, preference_objective, train

LISTS = [
    {"prompt": "sort : d a c =", "responses": ["a c d", "d a c", "a d c", "c"], "scores": [1.0, 0.2, 0.7, 0.0]},
    {"prompt": "reverse : a b c =", "responses": ["c b a", "a b c", "c a b", "b"], "scores": [0.9, 0.9, 0.4, 0.1]},
]


def _config(t: int) -> TrainConfig:
    return TrainConfig(steps=3, lr=1e-2, seed=10 + t, progress=False)


def _weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_gap_pairs_put_the_largest_gap_first_and_drop_ties_with_the_best():
    first, second = gap_pairs(LISTS)
    assert [(p["chosen"], p["rejected"]) for p in first] == [("a c d", "c"), ("a c d", "d a c"), ("a c d", "a d c")]
    assert [p["gap"] for p in first] == pytest.approx([1.0, 0.8, 0.3])
    assert [p["rejected"] for p in second] == ["b", "c a b"]  # "a b c" ties with the best: no pair
    assert all(p["chosen"] == "c b a" for p in second)


def test_stages_run_easy_to_hard_and_the_anti_curriculum_reverses_them():
    easy = curriculum_stages(LISTS)
    hard = curriculum_stages(LISTS, order="hard_first")
    assert [[p["rejected"] for p in s] for s in easy] == [["c", "b"], ["d a c", "c a b"], ["a d c"]]
    assert [[p["rejected"] for p in s] for s in hard] == [["a d c", "c a b"], ["d a c", "b"], ["c"]]
    for stages in (easy, hard):  # the same pairs, only in another order
        assert sorted(p["rejected"] for s in stages for p in s) == sorted(p["rejected"] for s in easy for p in s)
    mean_gap = [sum(p["gap"] for p in s) / len(s) for s in easy]
    assert mean_gap == sorted(mean_gap, reverse=True)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="order must be one of"):
        curriculum_stages(LISTS, order="random")
    with pytest.raises(PreferenceDataError, match="row 0"):
        curriculum_stages([{"prompt": "p", "responses": ["a"], "scores": [1.0]}])
    with pytest.raises(PreferenceDataError, match="row 1"):
        gap_pairs([LISTS[0], {"prompt": "p", "responses": ["a", "b"], "scores": [float("nan"), 1.0]}])


def test_previous_reference_is_a_chain_of_dpo_runs(tok, model):
    stages = curriculum_stages(LISTS)
    policy, log = staged_dpo(model, tok, stages, dpo_loss, _config, batch_size=2, beta=0.1)
    by_hand = model
    for t, rows in enumerate(stages, 1):  # each stage: DPO from the last model, which is also its reference
        rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows]
        by_hand, _, _ = run_arm(by_hand, tok, rows, dpo_loss, _config(t), batch_size=2, beta=0.1)
    assert [r["pairs"] for r in log] == [2, 2, 1]
    for n, w in _weights(by_hand).items():
        assert torch.equal(_weights(policy)[n], w), n
    assert all(torch.equal(w, _weights(model)[n]) for n, w in _weights(model).items())


def test_initial_reference_keeps_the_starting_model_as_reference(tok, model):
    stages = curriculum_stages(LISTS)[:2]
    policy, _ = staged_dpo(model, tok, stages, dpo_loss, _config, reference="initial", batch_size=2, beta=0.1)
    rows = [[{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in s] for s in stages]
    first, _, _ = run_arm(model, tok, rows[0], dpo_loss, _config(1), batch_size=2, beta=0.1)
    by_hand = copy.deepcopy(first)  # stage 2 trains the stage-1 model against the *starting* model's log-probs
    pre = Reference(model, mode="copy").precompute(rows[1], tok)
    cfg = TrainConfig(steps=3, lr=1e-2, seed=12, progress=False, sanity_check=False)
    train(by_hand, preference_objective(dpo_loss, Reference(first, mode="copy"), beta=0.1),
          StepBatches(pre, tok, 2, cfg.seed, "pairwise"), cfg)  # fmt: skip
    for n, w in _weights(by_hand).items():
        torch.testing.assert_close(_weights(policy)[n], w, rtol=0, atol=1e-6, msg=n)
    previous, _ = staged_dpo(model, tok, stages, dpo_loss, _config, batch_size=2, beta=0.1)
    assert any(not torch.allclose(_weights(previous)[n], w) for n, w in _weights(policy).items())


def test_the_loop_refuses_negative_k_and_stages_without_pairs(tok, model):
    with pytest.raises(ValueError, match="k must be >= 0"):
        online_rounds(model, tok, ["p"], lambda *a: [], dpo_loss, _config, rounds=1, k=-1)
    with pytest.raises(ValueError, match="every stage needs pairs"):
        staged_dpo(model, tok, [curriculum_stages(LISTS)[0], []], dpo_loss, _config, beta=0.1)
