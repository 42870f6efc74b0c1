"""The training loop: step-0 sanity check, deterministic step-indexed batches, checkpoints and exact resume."""

from __future__ import annotations

import math

import pytest
import torch

from prefkit.losses import dpo_loss, hinge_loss, ipo_loss, simpo_loss
from prefkit.models import Reference
from prefkit.train import (
    LN2,
    SanityCheckError,
    StepBatches,
    TrainConfig,
    pairwise_forward,
    preference_objective,
    sft_objective,
    train,
)


def _rows(pair_rows, n=4):
    return [dict(r) for r in pair_rows] * n


def test_initial_loss_is_the_loss_at_zero_log_ratios(model):
    ref = Reference(model)
    assert preference_objective(dpo_loss, ref, beta=0.1).initial_loss == pytest.approx(LN2)
    assert preference_objective(hinge_loss, ref, beta=0.1).initial_loss == pytest.approx(1.0)
    assert preference_objective(ipo_loss, ref, beta=0.5).initial_loss == pytest.approx(1.0)  # (0 - 1/(2τ))²
    assert not hasattr(preference_objective(simpo_loss, None), "initial_loss")  # reference-free: nothing to check


def test_dpo_run_starts_at_ln2_and_learns(tok, model, pair_rows):
    ref = Reference(model)
    batches = StepBatches(_rows(pair_rows), tok, batch_size=4, seed=0)
    hist = train(
        model, preference_objective(dpo_loss, ref, beta=0.5), batches, TrainConfig(steps=15, lr=1e-2, progress=False)
    )
    assert hist.steps["loss"].iloc[0] == pytest.approx(math.log(2), abs=1e-6)
    assert hist.steps["rewards/chosen"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert hist.steps["loss"].iloc[-3:].mean() < 0.6
    assert list(hist.steps["step"]) == list(range(15))


def test_sanity_check_fails_loudly_when_policy_is_not_its_reference(tok, model, pair_rows):
    ref = Reference(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # the policy moved before training: the reference is stale
    batches = StepBatches(_rows(pair_rows), tok, batch_size=4)
    with pytest.raises(SanityCheckError, match="does not start at its reference"):
        train(model, preference_objective(dpo_loss, ref, beta=0.5), batches, TrainConfig(steps=2, progress=False))


def test_step_batches_are_a_function_of_seed_and_step(tok, pair_rows):
    rows = [{**r, "prompt": r["prompt"] + f" {c}"} for r in pair_rows for c in "abcdefgh"]
    a, b = StepBatches(rows, tok, 4, seed=3), StepBatches(rows, tok, 4, seed=3)
    assert torch.equal(a[5]["input_ids"], b[5]["input_ids"])
    assert torch.equal(a[7]["input_ids"], StepBatches(rows, tok, 4, seed=3)[7]["input_ids"])
    assert not torch.equal(a[0]["input_ids"], StepBatches(rows, tok, 4, seed=4)[0]["input_ids"])
    with pytest.raises(ValueError, match="kind"):
        StepBatches(rows, tok, 4, kind="triplewise")
    with pytest.raises(ValueError, match="no rows"):
        StepBatches([], tok, 4)


def test_precomputed_reference_logps_give_the_same_loss(tok, model, pair_rows):
    ref = Reference(model)
    rows = _rows(pair_rows, 1)
    plain = StepBatches(rows, tok, 3)[0]
    pre = StepBatches(ref.precompute(rows, tok), tok, 3)[0]
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.mul_(1.1)  # move the policy away from the reference
    l1, _ = pairwise_forward(model, ref, plain, dpo_loss, beta=0.1)
    l2, _ = pairwise_forward(model, None, pre, dpo_loss, beta=0.1)
    torch.testing.assert_close(l1, l2)


def test_soft_labels_and_label_smoothing_together_are_refused(tok, model, pair_rows):
    rows = [{**r, "strength": 0.8} for r in pair_rows]
    batch = StepBatches(rows, tok, 3)[0]
    assert "strength" in batch
    with pytest.raises(ValueError, match="strength"):
        pairwise_forward(model, Reference(model), batch, dpo_loss, beta=0.1, label_smoothing=0.1)


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tok, pair_rows, tmp_path):
    from conftest import make_model

    rows = [{"prompt": r["prompt"], "response": r["chosen"]} for r in pair_rows] * 4
    batches = StepBatches(rows, tok, 4, seed=1, kind="sft")
    full = make_model(tok)
    h_full = train(full, sft_objective(), batches, TrainConfig(steps=8, lr=5e-3, progress=False))

    part = make_model(tok)
    ckpt = tmp_path / "ckpt"
    train(part, sft_objective(), batches, TrainConfig(steps=4, lr=5e-3, progress=False, checkpoint_dir=str(ckpt)))
    assert (ckpt / "trainable.safetensors").exists() and (ckpt / "state.json").exists()
    resumed = make_model(tok)  # a fresh process: weights come from the checkpoint
    h_res = train(
        resumed, sft_objective(), batches, TrainConfig(steps=8, lr=5e-3, progress=False, checkpoint_dir=str(ckpt))
    )
    assert list(h_res.steps["step"]) == list(range(8))
    torch.testing.assert_close(
        torch.tensor(h_res.steps["loss"].values), torch.tensor(h_full.steps["loss"].values), rtol=1e-4, atol=1e-5
    )
    for (n, a), b in zip(full.named_parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=n)


def test_non_finite_loss_stops_the_run(tok, model, pair_rows):
    def bad_loss(policy, batch):
        return torch.tensor(float("nan"), requires_grad=True), {}

    with pytest.raises(FloatingPointError, match="step 0"):
        train(model, bad_loss, StepBatches(_rows(pair_rows), tok, 4), TrainConfig(steps=1, progress=False))


def test_lr_schedules_warm_up_then_decay():
    from prefkit.train import lr_factor

    lin = lr_factor(TrainConfig(steps=10, warmup_steps=2, schedule="linear"))
    assert [round(lin(s), 4) for s in range(10)] == [0.5, 1.0, 0.8889, 0.7778, 0.6667, 0.5556, 0.4444, 0.3333,
                                                     0.2222, 0.1111]  # fmt: skip
    cos = lr_factor(TrainConfig(steps=10, warmup_steps=2, schedule="cosine"))
    assert cos(1) == 1.0 and 0 < cos(9) < lin(9) and abs(cos(5) - 0.5 * (1 + math.cos(math.pi * 4 / 9))) < 1e-12
    const = lr_factor(TrainConfig(steps=10, warmup_steps=4))
    assert [const(s) for s in (0, 3, 9)] == [0.25, 1.0, 1.0]
    with pytest.raises(ValueError, match="schedule must be"):
        lr_factor(TrainConfig(schedule="step"))
