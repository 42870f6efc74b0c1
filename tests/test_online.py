"""Online rounds: the loop equals the hand-written sample -> label -> run_arm rounds, and each reference rule trains
against the log-probs it names."""

from __future__ import annotations

import pytest
import torch

from prefkit.generate import sample
from prefkit.losses import dpo_loss
from prefkit.models import Reference
from prefkit.online import online_rounds
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
