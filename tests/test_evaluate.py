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


# ---- oracle_eval: KL and win rate against the reference -------------------------------------------------------------

EVAL_PROMPTS = ["reverse : a b c =", "sort : d a c =", "reverse sort : h g =", "sort : b a ="] * 4


def _length_score(prompt: str, response: str) -> float:
    """A graded stand-in oracle: longer responses score higher, equal lengths tie (so ties do occur)."""
    return float(len(response.split()))


def _perturbed(model, scale: float = 0.3):
    import copy

    import torch

    policy = copy.deepcopy(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for q in policy.parameters():
            q.add_(scale * torch.randn_like(q))
    return policy


def test_oracle_eval_at_the_reference_gives_kl_zero_and_win_rate_one_half(tok, model):
    from prefkit.evaluate import oracle_eval

    out = oracle_eval(_length_score, model, tok, EVAL_PROMPTS, Reference(model), seed=3, max_new_tokens=6)
    # the reference is an identical copy and samples with the same seed: the same responses, every pair a tie
    assert out["kl"] == 0.0
    assert out["win_rate"] == 0.5
    assert out["ref_score"] == out["score"]
    assert len({len(y.split()) for y in out["samples"]}) > 1  # the scores are not all equal: a real test of ties


def test_oracle_eval_kl_is_the_mean_log_ratio_on_the_policys_own_samples(tok, model):
    from prefkit.evaluate import oracle_eval, response_logps

    ref = Reference(model)
    policy = _perturbed(model)
    out = oracle_eval(_length_score, policy, tok, EVAL_PROMPTS, ref, seed=3, max_new_tokens=6)
    ys = out["samples"]
    log_pi = response_logps(policy, tok, EVAL_PROMPTS, ys)[0]
    log_ref = response_logps(ref.model, tok, EVAL_PROMPTS, ys)[0]
    assert out["kl"] == pytest.approx(float(np.mean(log_pi - log_ref)), rel=1e-6)
    # a policy far from its reference puts more mass on its own samples: the estimate is positive (and large)
    assert out["kl"] > 1.0


def test_oracle_eval_win_rate_is_policy_against_reference_with_ties_half(tok, model):
    from prefkit.evaluate import oracle_eval
    from prefkit.generate import sample

    ref = Reference(model)
    policy = _perturbed(model)
    out = oracle_eval(_length_score, policy, tok, EVAL_PROMPTS, ref, seed=3, max_new_tokens=6)
    ref_ys = [r[0] for r in sample(ref.model, tok, EVAL_PROMPTS, n=1, max_new_tokens=6, seed=3)]
    pol = np.array([_length_score(p, y) for p, y in zip(EVAL_PROMPTS, out["samples"])])
    base = np.array([_length_score(p, y) for p, y in zip(EVAL_PROMPTS, ref_ys)])
    wins, ties = np.mean(pol > base), np.mean(pol == base)
    assert ties > 0 and wins + 0.5 * ties != 0.5  # the case tells policy from reference and ties from wins
    assert out["win_rate"] == pytest.approx(wins + 0.5 * ties)
    assert out["score"] == pytest.approx(pol.mean()) and out["ref_score"] == pytest.approx(base.mean())

    # fixed reference samples of known score (two words each): the same policy samples, so a hand count
    fixed = ["a b"] * len(EVAL_PROMPTS)
    got = oracle_eval(_length_score, policy, tok, EVAL_PROMPTS, ref, ref_samples=fixed, seed=3, max_new_tokens=6)
    assert got["samples"] == out["samples"]
    assert got["win_rate"] == pytest.approx(np.mean(pol > 2) + 0.5 * np.mean(pol == 2))
    assert got["ref_score"] == 2.0


def test_oracle_eval_without_reference_reports_score_length_and_exact(tok, model):
    from prefkit.evaluate import oracle_eval, response_logps

    exact = lambda p, y: 1.0 if len(y.split()) % 2 else 0.5  # noqa: E731
    out = oracle_eval(exact, model, tok, EVAL_PROMPTS, seed=3, max_new_tokens=6)
    assert "kl" not in out and "win_rate" not in out
    scores = np.array([exact(p, y) for p, y in zip(EVAL_PROMPTS, out["samples"])])
    assert out["score"] == pytest.approx(scores.mean())
    assert out["exact"] == pytest.approx(np.mean(scores == 1.0))
    assert out["score_sem"] == pytest.approx(scores.std(ddof=1) / np.sqrt(len(scores)))
    counts = response_logps(model, tok, EVAL_PROMPTS, out["samples"])[1]
    assert out["length"] == pytest.approx(counts.mean())  # response tokens, the closing EOS included


def test_win_rate_hand_cases_tell_the_arguments_and_ties_apart():
    # policy beats the baseline twice, loses once, ties once
    s, b = [3.0, 2.0, 0.0, 1.0], [1.0, 1.0, 2.0, 1.0]
    assert win_rate(s, b) == pytest.approx(2.5 / 4)  # ties counting 0 would give 0.5, counting 1 would give 0.75
    assert win_rate(b, s) == pytest.approx(1.5 / 4)
    assert win_rate(s, b) + win_rate(b, s) == pytest.approx(1.0)
    assert win_rate([0.3, 0.3], [0.3, 0.3]) == 0.5
    assert win_rate([1.0], [0.0]) == 1.0 and win_rate([0.0], [1.0]) == 0.0


# ---- ranking_report on hand-chosen log-probs ------------------------------------------------------------------------

# Five pairs, chosen so that every metric lands on a different number than any of its usual slips would give.
#            pair:      1     2     3     4     5
HAND_LOGPS = {
    "pc": np.array([-2.0, -6.0, -3.0, -4.0, -1.0]),  # policy, chosen
    "pr": np.array([-3.0, -4.0, -5.0, -4.0, -2.0]),  # policy, rejected (pair 4 tied)
    "rc": np.array([-2.5, -6.5, -3.5, -3.0, -2.0]),  # reference, chosen
    "rr": np.array([-2.0, -4.5, -5.5, -5.0, -1.5]),  # reference, rejected
    "nc": np.array([4, 6, 1, 4, 1]),  # response-token counts
    "nr": np.array([2, 2, 5, 2, 1]),
}


def test_ranking_report_hand_computed(monkeypatch):
    import prefkit.evaluate as ev

    monkeypatch.setattr(ev, "pair_logps", lambda policy, reference, tokenizer, rows: HAND_LOGPS)
    p_true = [0.6, 0.6, 0.5, 0.2, 0.55]
    rep = ranking_report(None, None, None, [{"p_true": p} for p in p_true], beta=0.5)
    # π(y_w) > π(y_l) strictly: pairs 1, 3, 5 (pair 4 is a tie, which is not "ranked right")
    assert rep["ranking_acc"] == pytest.approx(3 / 5)
    # per token: -0.5 > -1.5, -1 > -2, -3 < -1, -1 > -2, -1 > -2: pairs 1, 2, 4, 5 (plain and normalised disagree)
    assert rep["ranking_acc_norm"] == pytest.approx(4 / 5)
    assert rep["ref_ranking_acc"] == pytest.approx(2 / 5)  # the reference ranks pairs 3 and 4 right
    # implicit rewards r_w = pc - rc = [.5, .5, .5, -1, 1], r_l = pr - rr = [-1, .5, .5, 1, -.5]:
    # right, tie, tie, wrong, right -> (1 + .5 + .5 + 0 + 1) / 5
    assert rep["reward_acc"] == pytest.approx(3 / 5)
    # margin = β mean(r_w - r_l) = 0.5 * mean([1.5, 0, 0, -2, 1.5]) = 0.5 * 0.2
    assert rep["margin"] == pytest.approx(0.1)
    # the reference ranked pairs 1, 2, 5 wrong; the policy now ranks 1 and 5 of them right
    assert rep["flipped_to_right"] == pytest.approx(2 / 3)
    # the reference ranked pairs 3, 4 right; the policy lost pair 4 (a tie)
    assert rep["flipped_to_wrong"] == pytest.approx(1 / 2)
    # Cor. 3.3: rc - rr + logit(p)/β with rc - rr = [-.5, -2, 2, 2, -.5], logit(p)/β = [.81, .81, 0, -2.77, .40]
    assert rep["idealized_acc"] == pytest.approx(2 / 5)


def test_ranking_report_margin_scales_with_beta(monkeypatch):
    import prefkit.evaluate as ev

    monkeypatch.setattr(ev, "pair_logps", lambda policy, reference, tokenizer, rows: HAND_LOGPS)
    rows = [{}] * 5
    assert ranking_report(None, None, None, rows, beta=2.0)["margin"] == pytest.approx(0.4)
    assert ranking_report(None, None, None, rows, beta=0.1)["margin"] == pytest.approx(0.02)
    assert "idealized_acc" not in ranking_report(None, None, None, rows, beta=0.1)  # no p_true, no idealized


def test_ranking_report_flips_are_nan_when_the_reference_is_all_right_or_all_wrong(monkeypatch):
    import prefkit.evaluate as ev

    all_right = {**HAND_LOGPS, "rc": HAND_LOGPS["rr"] + 1.0}
    monkeypatch.setattr(ev, "pair_logps", lambda *a: all_right)
    rep = ranking_report(None, None, None, [{}] * 5, beta=1.0)
    assert rep["ref_ranking_acc"] == 1.0 and np.isnan(rep["flipped_to_right"])
    assert rep["flipped_to_wrong"] == pytest.approx(2 / 5)  # pairs 2 and 4 are not ranked right by the policy
    all_wrong = {**HAND_LOGPS, "rc": HAND_LOGPS["rr"] - 1.0}
    monkeypatch.setattr(ev, "pair_logps", lambda *a: all_wrong)
    rep = ranking_report(None, None, None, [{}] * 5, beta=1.0)
    assert np.isnan(rep["flipped_to_wrong"]) and rep["flipped_to_right"] == pytest.approx(3 / 5)


def test_ranking_report_reward_accuracy_is_one_half_at_the_reference(tok, model, pair_rows):
    rep = ranking_report(model, Reference(model), tok, pair_rows, beta=0.1)
    assert rep["reward_acc"] == 0.5  # every implicit reward is 0: all ties, each counting half
    assert rep["margin"] == 0.0
    assert rep["flipped_to_right"] in (0.0,) or np.isnan(rep["flipped_to_right"])


def test_ranking_report_on_a_trained_policy_matches_direct_log_probs(tok, model, pair_rows):
    from prefkit.evaluate import pair_logps, response_logps

    ref = Reference(model)
    policy = _perturbed(model, 0.1)
    rows = [{**r, "p_true": p} for r, p in zip(pair_rows * 2, [0.9, 0.6, 0.55, 0.7, 0.8, 0.95])]
    prompts = [r["prompt"] for r in rows]
    pc, nc = response_logps(policy, tok, prompts, [r["chosen"] for r in rows])
    pr, nr = response_logps(policy, tok, prompts, [r["rejected"] for r in rows])
    rc = response_logps(model, tok, prompts, [r["chosen"] for r in rows])[0]
    rr = response_logps(model, tok, prompts, [r["rejected"] for r in rows])[0]
    lp = pair_logps(policy, ref, tok, rows)
    for k, want in dict(pc=pc, pr=pr, rc=rc, rr=rr, nc=nc, nr=nr).items():
        np.testing.assert_allclose(lp[k], want, rtol=1e-6, err_msg=k)
    assert not np.allclose(pc, rc)  # the policy did move
    rep = ranking_report(policy, ref, tok, rows, beta=0.3)
    assert rep["ranking_acc"] == pytest.approx(np.mean(pc > pr))
    assert rep["ranking_acc_norm"] == pytest.approx(np.mean(pc / nc > pr / nr))
    assert rep["ref_ranking_acc"] == pytest.approx(np.mean(rc > rr))
    assert rep["reward_acc"] == pytest.approx(np.mean((pc - rc) > (pr - rr)))  # no ties once the policy moved
    assert rep["margin"] == pytest.approx(0.3 * np.mean((pc - rc) - (pr - rr)), rel=1e-6)
    p = np.array([r["p_true"] for r in rows])
    assert rep["idealized_acc"] == pytest.approx(np.mean(rc - rr + np.log(p / (1 - p)) / 0.3 > 0))


# ---- joint margins, auroc ---------------------------------------------------------------------------------------------


def test_joint_reward_accuracy_is_one_half_at_the_reference_and_counts_the_sign_after(tok, model):
    import torch

    from prefkit.evaluate import joint_margin_parts
    from prefkit.logps import encode_joint, sequence_logps

    rows = [
        {"prompt_chosen": "reverse : a b =", "chosen": "b a", "prompt_rejected": "sort : c a =", "rejected": "c a"},
        {"prompt_chosen": "sort : h g =", "chosen": "g h", "prompt_rejected": "reverse : b a =", "rejected": "b"},
        {"prompt_chosen": "sort : d c =", "chosen": "c d", "prompt_rejected": "sort : d c =", "rejected": "d"},
    ]
    ref = Reference(model)
    assert joint_margin_parts(model, ref, tok, rows, beta=0.1)["joint_reward_acc"] == 0.5
    policy = _perturbed(model, 0.1)
    parts = joint_margin_parts(policy, ref, tok, rows, beta=0.1)
    b = encode_joint(tok, rows)
    with torch.no_grad():
        ratio = (
            sequence_logps(policy, b["input_ids"], b["attention_mask"], b["response_mask"])[0]
            - sequence_logps(model, b["input_ids"], b["attention_mask"], b["response_mask"])[0]
        )
    h = ratio[:3] - ratio[3:]
    assert parts["joint_reward_acc"] == pytest.approx((h > 0).float().mean().item())
    assert parts["margin_prompt"] + parts["margin_response"] == pytest.approx(0.1 * h.mean().item(), abs=1e-5)


def test_auroc_hand_cases_and_edges():
    from prefkit.evaluate import auroc

    # positives [.9, .5], negatives [.5, .1]: pairs win, win, tie, win -> 3.5 / 4
    assert auroc([0.9, 0.5, 0.5, 0.1], [True, True, False, False]) == pytest.approx(0.875)
    assert auroc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert auroc([1, 2, 3, 4], [True, True, False, False]) == 0.0
    assert auroc([0.2] * 4, [True, False, True, False]) == 0.5  # all tied: chance
    assert auroc([3.0, 1.0, 2.0], [True, False, False]) == 1.0  # order of the inputs does not matter
    assert np.isnan(auroc([0.1, 0.2], [True, True])) and np.isnan(auroc([0.1, 0.2], [False, False]))
    assert np.isnan(auroc([], []))


def test_pair_logps_of_pairs_that_share_prompts_and_chosen_keep_their_own_rejected(tok, model, pair_rows):
    from prefkit.evaluate import pair_logps, response_logps

    ref = Reference(model)
    other = [{**r, "rejected": "h g f"} for r in pair_rows]  # the same prompts and chosen, another rejected
    prompts = [r["prompt"] for r in pair_rows]
    for rows in (pair_rows, other, pair_rows):  # the reference's log-probs are shared between evaluations
        got = pair_logps(model, ref, tok, rows)
        want = response_logps(model, tok, prompts, [r["rejected"] for r in rows])[0]
        np.testing.assert_allclose(got["rr"], want, rtol=1e-6)
        np.testing.assert_allclose(got["rr"], got["pr"], rtol=1e-6)  # the policy is its reference


def test_oracle_eval_per_prompt_units_are_what_the_means_average(tok, model):
    """The paired units of a comparison claim: aligned with the prompts, and their means are the reported ones."""
    from prefkit.evaluate import oracle_eval, response_logps

    ref = Reference(model)
    policy = _perturbed(model)
    out = oracle_eval(_length_score, policy, tok, EVAL_PROMPTS, ref, seed=3, max_new_tokens=6)
    u = out["per_prompt"]
    assert set(u) == {"score", "length", "win", "log_ratio", "ref_score"}
    assert all(len(v) == len(EVAL_PROMPTS) for v in u.values())
    assert u["score"] == [_length_score(p, y) for p, y in zip(EVAL_PROMPTS, out["samples"])]
    assert np.mean(u["score"]) == pytest.approx(out["score"]) and np.mean(u["length"]) == pytest.approx(out["length"])
    assert np.mean(u["win"]) == pytest.approx(out["win_rate"]) and set(u["win"]) <= {0.0, 0.5, 1.0}
    assert np.mean(u["log_ratio"]) == pytest.approx(out["kl"]) and np.mean(u["ref_score"]) == pytest.approx(
        out["ref_score"]
    )
    wins = [1.0 if s > r else 0.5 if s == r else 0.0 for s, r in zip(u["score"], u["ref_score"])]
    assert u["win"] == wins  # policy against reference, per prompt
    lp = response_logps(policy, tok, EVAL_PROMPTS[:1], out["samples"][:1])[0]
    lr = response_logps(ref.model, tok, EVAL_PROMPTS[:1], out["samples"][:1])[0]
    assert u["log_ratio"][0] == pytest.approx(float(lp[0] - lr[0]), rel=1e-6)
    alone = oracle_eval(_length_score, policy, tok, EVAL_PROMPTS, seed=3, max_new_tokens=6)["per_prompt"]
    assert set(alone) == {"score", "length"}  # without a reference there is nothing to pair with


def test_toy_evaluator_logs_means_and_keeps_the_last_per_prompt_units(tok, model):
    from types import SimpleNamespace

    from prefkit.evaluate import oracle_eval
    from prefkit.toy import OracleEval

    world = SimpleNamespace(tokenizer=tok, score=_length_score)
    ref = Reference(model)
    ref_ys = ["a b"] * len(EVAL_PROMPTS)
    ev = OracleEval(world, EVAL_PROMPTS, ref_ys, seed=1)
    assert ev.last_per_prompt is None
    policy = _perturbed(model)
    row = ev(ref)(policy, 2)  # evaluated with seed 1 + step
    assert "per_prompt" not in row and "samples" not in row  # the history gets numbers only
    direct = oracle_eval(_length_score, policy, tok, EVAL_PROMPTS, ref, ref_ys, seed=3)
    assert ev.last_per_prompt == direct["per_prompt"]
    assert row["score"] == pytest.approx(direct["score"]) and row["win_rate"] == pytest.approx(direct["win_rate"])
