"""Online rounds: the loop equals the hand-written sample -> label -> run_arm rounds, and each reference rule trains
against the log-probs it names."""

from __future__ import annotations

import copy

import pytest
import torch

from prefkit.generate import sample
from prefkit.losses import dpo_loss
from prefkit.models import Reference, TinyLlamaConfig, tiny_llama
from prefkit.online import extrapolate, margin_pair, online_rounds
from prefkit.toy import run_arm
from prefkit.train import TrainConfig

PROMPTS = ["reverse : a b c =", "sort : d a c =", "shift : a b =", "dedupe : a a b ="]


def _label(policy, prompts, ys, t):
    """Best vs worst by the share of "a" tokens (ties broken by position), a stand-in for a rater."""
    rows = []
    for p, group in zip(prompts, ys):
        share = [y.split().count("a") / max(1, len(y.split())) for y in group]
        best, worst = max(range(len(group)), key=share.__getitem__), min(range(len(group)), key=share.__getitem__)
        if group[best] != group[worst]:
            rows.append({"prompt": p, "chosen": group[best], "rejected": group[worst]})
    return rows


def _config(t: int) -> TrainConfig:
    return TrainConfig(steps=3, lr=1e-2, seed=10 + t, progress=False)


def _weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_the_loop_is_the_hand_written_rounds(tok, model):
    start = _weights(model)
    policy, log = online_rounds(model, tok, PROMPTS, _label, dpo_loss, _config, rounds=2, k=3, batch_size=2,
                                sample_seed=lambda t: 100 + t, sample_kw={"max_new_tokens": 6}, beta=0.1)  # fmt: skip
    by_hand = model
    for t in (1, 2):  # 07_osp's rounds before the loop existed
        ys = sample(by_hand, tok, PROMPTS, n=3, seed=100 + t, max_new_tokens=6)
        by_hand, _, _ = run_arm(by_hand, tok, _label(by_hand, PROMPTS, ys, t), dpo_loss, _config(t), batch_size=2,
                                beta=0.1)  # fmt: skip
    assert [r["round"] for r in log] == [1, 2] and all(r["pairs"] > 0 for r in log)
    for n, w in _weights(by_hand).items():
        assert torch.equal(_weights(policy)[n], w), n
    assert any(not torch.equal(start[n], w) for n, w in _weights(policy).items())
    assert all(torch.equal(start[n], w) for n, w in _weights(model).items())  # the starting policy is left alone


def _reference_of_round_2(tok, model, reference: str, alpha: float = 0.0) -> tuple[list[dict], list]:
    """Round 2's training rows, and the policies π_1, π_2 the rounds started from."""
    seen, starts = {}, []

    def label(policy, prompts, ys, t):
        starts.append(policy)
        return _label(policy, prompts, ys, t)

    def on_round(t, policy, rows, hist):
        seen[t] = rows
        return {"loss": float(hist.steps["loss"].iloc[-1])}

    _, log = online_rounds(model, tok, PROMPTS, label, dpo_loss, _config, rounds=2, k=3, batch_size=2,
                           reference=reference, alpha=alpha, on_round=on_round, sample_kw={"max_new_tokens": 6},
                           beta=0.1)  # fmt: skip
    assert "loss" in log[1]
    return seen[2], starts


def _logps(model, tok, rows) -> torch.Tensor:
    pre = Reference(model, mode="copy").precompute([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows],
                                                   tok)  # fmt: skip
    return torch.tensor([[r["ref_chosen_logps"], r["ref_rejected_logps"]] for r in pre])


def _ref(rows) -> torch.Tensor:
    return torch.tensor([[r["ref_chosen_logps"], r["ref_rejected_logps"]] for r in rows])


@pytest.mark.parametrize("reference", ["previous", "initial", "extrapolated"])
def test_each_rule_trains_round_2_against_the_log_probs_it_names(tok, model, reference):
    alpha = 0.5 if reference == "extrapolated" else 0.0
    rows, (pi1, pi2) = _reference_of_round_2(tok, model, reference, alpha)
    expected = {
        "previous": lambda: _logps(pi2, tok, rows),
        "initial": lambda: _logps(pi1, tok, rows),
        "extrapolated": lambda: 1.5 * _logps(pi2, tok, rows) - 0.5 * _logps(pi1, tok, rows),
    }[reference]()
    torch.testing.assert_close(_ref(rows), expected, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(_logps(pi1, tok, rows), _logps(pi2, tok, rows), atol=1e-3)  # the rules do differ here


def test_bad_settings_and_empty_rounds_are_refused(tok, model):
    args = (model, tok, PROMPTS)
    with pytest.raises(ValueError, match="reference must be one of"):
        online_rounds(*args, _label, dpo_loss, _config, rounds=1, reference="latest")
    with pytest.raises(ValueError, match="alpha = 0.3 extrapolates the reference"):
        online_rounds(*args, _label, dpo_loss, _config, rounds=1, alpha=0.3)
    with pytest.raises(ValueError, match="round 1: label returned no pairs from 4 prompts x 2 samples"):
        online_rounds(*args, lambda *a: [], dpo_loss, _config, rounds=1, k=2, sample_kw={"max_new_tokens": 4})


def _run(tok, model, **kw):
    """Three rounds that record each round's sampler (π_t), its training rows and the policy it hands on."""
    starts, rows_of, handed = [], {}, []

    def label(policy, prompts, ys, t):
        starts.append(_weights(policy))
        return _label(policy, prompts, ys, t)

    def on_round(t, policy, rows, hist):
        rows_of[t] = rows
        handed.append(_weights(policy))

    policy, _ = online_rounds(model, tok, PROMPTS, label, dpo_loss, _config, rounds=3, k=3, batch_size=2,
                              sample_seed=lambda t: 100 + t, on_round=on_round, sample_kw={"max_new_tokens": 6},
                              beta=0.1, **kw)  # fmt: skip
    return policy, starts, rows_of, handed


def test_momentum_zero_is_plain_rounds(tok, model):
    plain, *_ = _run(tok, model)
    zero, *_ = _run(tok, model, momentum=0.0)
    for n, w in _weights(plain).items():
        assert torch.equal(_weights(zero)[n], w), n


def test_momentum_extrapolates_the_weights_as_apo_eq_3_7(tok, model):
    """θ_{t+1} = θ̂_{t+1} + α(θ̂_{t+1} - θ̂_t) with θ̂_1 = θ_1, written out by hand from run_arm rounds; θ_{t+1} is the
    next round's sampler and reference. Using θ_t (the extrapolated start) in place of θ̂_t fails from round 2 on."""
    alpha = 0.5
    policy, starts, rows_of, handed = _run(tok, model, momentum=alpha)
    theta, hat_prev = model, _weights(model)  # θ_1, θ̂_1
    for t in (1, 2, 3):
        for n, w in _weights(theta).items():  # round t samples from θ_t
            torch.testing.assert_close(starts[t - 1][n], w, rtol=0, atol=1e-6)
        torch.testing.assert_close(_ref(rows_of[t]), _logps(theta, tok, rows_of[t]), rtol=1e-5, atol=1e-4)
        ys = sample(theta, tok, PROMPTS, n=3, seed=100 + t, max_new_tokens=6)
        trained, _, _ = run_arm(theta, tok, _label(theta, PROMPTS, ys, t), dpo_loss, _config(t), batch_size=2,
                                beta=0.1)  # fmt: skip
        hat = _weights(trained)  # θ̂_{t+1}
        closed = {n: hat[n] + alpha * (hat[n] - hat_prev[n]) for n in hat}  # Eq. 3.7
        for n, w in closed.items():
            torch.testing.assert_close(handed[t - 1][n], w, rtol=0, atol=1e-6)
        if t > 1:  # the planted bug's value differs from Eq. 3.7's by α (θ̂_t - θ_t), which is not small here
            wrong = {n: hat[n] + alpha * (hat[n] - _weights(theta)[n]) for n in hat}
            assert max(float((wrong[n] - closed[n]).abs().max()) for n in hat) > 1e-3
        theta, hat_prev = copy.deepcopy(trained), hat
        with torch.no_grad():
            for n, p in theta.named_parameters():
                p.copy_(closed[n])
    for n, w in _weights(theta).items():
        torch.testing.assert_close(_weights(policy)[n], w, rtol=0, atol=1e-6)


def test_extrapolate_is_the_closed_form_and_leaves_its_inputs_alone(tok, model):
    from conftest import make_model

    other = make_model(tok, seed=1)
    new, old = _weights(model), _weights(other)
    out = extrapolate(model, other, 0.3)
    for n, p in out.named_parameters():
        torch.testing.assert_close(p.detach(), new[n] + 0.3 * (new[n] - old[n]), rtol=0, atol=1e-7)
    assert all(torch.equal(p.detach(), new[n]) for n, p in model.named_parameters())
    assert all(torch.equal(p.detach(), old[n]) for n, p in other.named_parameters())
    wider = tiny_llama(tok, TinyLlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                            intermediate_size=64))  # fmt: skip
    with pytest.raises(ValueError, match="extrapolate: parameter 'model.embed_tokens.weight' has no counterpart"):
        extrapolate(model, wider, 0.3)


def test_each_round_gets_its_own_prompts(tok, model):
    seen = {}

    def label(policy, prompts, ys, t):
        seen[t] = prompts
        return _label(policy, prompts, ys, t)

    splits = {1: PROMPTS[:2], 2: PROMPTS[2:]}
    online_rounds(model, tok, splits.__getitem__, label, dpo_loss, _config, rounds=2, k=3, batch_size=2,
                  sample_kw={"max_new_tokens": 6}, beta=0.1)  # fmt: skip
    assert seen == splits


@pytest.mark.parametrize("reference", ["initial", "extrapolated"])
def test_momentum_is_refused_with_another_reference(tok, model, reference):
    with pytest.raises(ValueError, match=f"momentum = 0.3 extrapolates the weights .* not '{reference}'"):
        online_rounds(model, tok, PROMPTS, _label, dpo_loss, _config, rounds=1, reference=reference,
                      alpha=0.3 if reference == "extrapolated" else 0.0, momentum=0.3)  # fmt: skip
    with pytest.raises(ValueError, match="round 1: no prompts"):
        online_rounds(model, tok, lambda t: [], _label, dpo_loss, _config, rounds=1)


def test_margin_pair_keeps_dno_large_margin_pairs_only():
    # students 0-2, teacher 3: a teacher positive needs a 2-point gap, a student positive 1 point, both need >= 5
    assert margin_pair([4, 3, 4, 6], teacher=3) == (3, 1)
    assert margin_pair([5, 5, 5, 6], teacher=3) is None  # teacher best, gap 1 < 2
    assert margin_pair([6, 5, 5, 5], teacher=3) == (0, 1)  # student best, gap 1 >= 1
    assert margin_pair([4, 3, 3, 4], teacher=3) is None  # best below 5
    assert margin_pair([6, 4, 2, 6], teacher=3) == (0, 2)  # a tie at the top goes to the first in order
    assert margin_pair([6, 4, 2, 6], teacher=3, order=[3, 2, 1, 0]) == (3, 2)
    assert margin_pair([5, 5, 5], teacher=None) is None  # no preference at all
    # without the filter (min_positive = gap = gap_student = the smallest step): any strict (best, worst)
    assert margin_pair([2, 3, 1], min_positive=-1, gap=1, gap_student=1) == (1, 2)
    with pytest.raises(ValueError, match="order must be a permutation of the 3 candidates"):
        margin_pair([1, 2, 3], order=[0, 0, 1])
