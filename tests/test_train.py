"""The training loop: step-0 sanity check, deterministic step-indexed batches, checkpoints and exact resume."""

from __future__ import annotations

import json
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
    assert (ckpt / "latest").read_text().strip() == "step-00000004"
    assert sorted(f.name for f in (ckpt / "step-00000004").iterdir()) == [
        "optimizer.pt",
        "state.json",
        "trainable.safetensors",
    ]
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


def test_a_half_precision_model_is_refused_before_the_first_step(tok, pair_rows):
    from conftest import make_model

    policy = make_model(tok).half()
    with pytest.raises(ValueError, match=r"trainable parameters are float16 .* Load the model in float32 or bfloat16"):
        train(policy, sft_objective(), _sft_batches(tok, pair_rows), TrainConfig(steps=1, progress=False))
    hist = train(policy.bfloat16(), sft_objective(), _sft_batches(tok, pair_rows), TrainConfig(steps=1, progress=False))
    assert len(hist.steps) == 1


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


# ---- resume: an interrupted run continues exactly where it stopped ------------------------------------------------


class Interrupted(Exception):
    """Stands for a killed process: raised by :class:`StopAt` in the middle of a run."""


class StopAt:
    """``batches[step]``, except that asking for step ``stop`` kills the run (after the last checkpoint, before
    ``stop`` finishes)."""

    def __init__(self, batches, stop: int):
        self.batches, self.stop = batches, stop

    def __getitem__(self, step: int):
        if step == self.stop:
            raise Interrupted(f"killed at step {step}")
        return self.batches[step]


def _sft_batches(tok, pair_rows):
    rows = [{"prompt": r["prompt"], "response": r[k]} for r in pair_rows for k in ("chosen", "rejected")] * 2
    return StepBatches(rows, tok, 4, seed=1, kind="sft")


def _nll_eval(tok):
    """An eval_fn: the policy's mean NLL on a fixed batch (a deterministic function of the weights)."""
    from prefkit.logps import encode, sequence_logps

    b = encode(tok, ["sort : c b a ="], ["a b c"])

    @torch.no_grad()
    def eval_fn(policy, step):
        return {"nll": -sequence_logps(policy, b["input_ids"], b["attention_mask"], b["response_mask"])[0].item()}

    return eval_fn


def _assert_same_history(a, b):
    import pandas as pd

    pd.testing.assert_frame_equal(
        a.steps.drop(columns="time"), b.steps.drop(columns="time"), check_exact=False, rtol=1e-4, atol=1e-6
    )
    pd.testing.assert_frame_equal(a.evals, b.evals, check_exact=False, rtol=1e-4, atol=1e-6)


def _assert_same_weights(a, b):
    for (n, x), y in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_interrupted_run_with_warmup_and_decay_resumes_exactly(tok, pair_rows, tmp_path, schedule):
    from conftest import make_model

    from prefkit.train import lr_factor

    batches = _sft_batches(tok, pair_rows)
    cfg = dict(steps=8, lr=5e-3, warmup_steps=3, schedule=schedule, eval_every=2, progress=False)
    full = make_model(tok)
    h_full = train(full, sft_objective(), batches, TrainConfig(**cfg), eval_fn=_nll_eval(tok))

    ckpt = str(tmp_path / "ckpt")
    resumable = TrainConfig(**cfg, checkpoint_dir=ckpt, checkpoint_every=2)
    with pytest.raises(Interrupted, match="killed at step 5"):  # step 4 ran but was not checkpointed: redone
        train(make_model(tok), sft_objective(), StopAt(batches, 5), resumable, eval_fn=_nll_eval(tok))
    resumed = make_model(tok)  # a fresh process: weights, optimizer, schedule and history come from the checkpoint
    h_res = train(resumed, sft_objective(), batches, resumable, eval_fn=_nll_eval(tok))

    assert list(h_res.steps["step"]) == list(range(8))
    assert list(h_res.evals["step"]) == [0, 2, 4, 6, 8]  # restored, step 0 not evaluated twice
    # the learning rate each step used: warm-up 1/3, 2/3, 1, then the decay, in both runs
    factor = lr_factor(TrainConfig(**cfg))
    assert h_res.steps["lr"].tolist() == pytest.approx([5e-3 * factor(s) for s in range(8)], rel=1e-12)
    assert h_res.steps["lr"].tolist() == h_full.steps["lr"].tolist()
    _assert_same_history(h_full, h_res)
    _assert_same_weights(full, resumed)


def test_a_kill_while_a_checkpoint_is_saved_leaves_the_previous_one_whole(tok, pair_rows, tmp_path, monkeypatch):
    """Killed after the new weights are written but before the optimizer state and step count: the run resumes from
    the previous checkpoint, weights and step together, and ends where an uninterrupted run ends."""
    from conftest import make_model

    import prefkit.train as train_module

    batches = _sft_batches(tok, pair_rows)
    cfg = dict(steps=6, lr=5e-3, warmup_steps=2, schedule="linear", progress=False)
    full = make_model(tok)
    h_full = train(full, sft_objective(), batches, TrainConfig(**cfg))
    ckpt = tmp_path / "ckpt"
    resumable = TrainConfig(**cfg, checkpoint_dir=str(ckpt), checkpoint_every=2)
    real_save, calls = torch.save, []

    def killed_on_second_save(obj, path, *a, **kw):
        calls.append(path)
        if len(calls) == 2:
            raise Interrupted("killed while saving step 4")
        return real_save(obj, path, *a, **kw)

    monkeypatch.setattr(train_module.torch, "save", killed_on_second_save)
    with pytest.raises(Interrupted):
        train(make_model(tok), sft_objective(), batches, resumable)
    monkeypatch.setattr(train_module.torch, "save", real_save)
    assert (ckpt / "latest").read_text().strip() == "step-00000002"  # the half-written step 4 is not the checkpoint
    assert json.loads((ckpt / "step-00000002" / "state.json").read_text())["step"] == 2
    resumed = make_model(tok)
    h_res = train(resumed, sft_objective(), batches, resumable)
    assert list(h_res.steps["step"]) == list(range(6))
    _assert_same_history(h_full, h_res)
    _assert_same_weights(full, resumed)
    assert sorted(f.name for f in ckpt.iterdir()) == ["latest", "step-00000006"]  # the half-written one cleared


def test_resume_restores_the_auxiliary_head_of_the_objective(tok, pair_rows, tmp_path):
    from conftest import make_model

    x = torch.linspace(-1.0, 1.0, 8)[None]  # (1, 8) fixed input of the head

    def objective(head):
        base = sft_objective()

        def fn(policy, batch):
            loss, metrics = base(policy, batch)
            aux = ((head(x) - 1.0) ** 2).mean()  # the head learns to output 1
            return loss + aux, {**metrics, "aux": aux.item()}

        fn.modules = (head,)
        return fn

    def head(seed):
        torch.manual_seed(seed)
        return torch.nn.Linear(8, 1)

    batches = _sft_batches(tok, pair_rows)
    cfg = dict(steps=6, lr=1e-2, warmup_steps=2, schedule="linear", progress=False)
    full, full_head = make_model(tok), head(0)
    h_full = train(full, objective(full_head), batches, TrainConfig(**cfg))
    assert h_full.steps["aux"].iloc[-1] < h_full.steps["aux"].iloc[0]  # the head trains with the policy

    resumable = TrainConfig(**cfg, checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_every=3)
    with pytest.raises(Interrupted, match="killed at step 4"):
        train(make_model(tok), objective(head(0)), StopAt(batches, 4), resumable)
    resumed, resumed_head = make_model(tok), head(123)  # initialised differently: only the checkpoint can fix it
    h_res = train(resumed, objective(resumed_head), batches, resumable)
    torch.testing.assert_close(resumed_head.weight, full_head.weight, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(resumed_head.bias, full_head.bias, rtol=1e-4, atol=1e-6)
    _assert_same_history(h_full, h_res)
    _assert_same_weights(full, resumed)


def test_a_finished_run_started_again_changes_nothing(tok, pair_rows, tmp_path):
    from conftest import make_model

    batches = _sft_batches(tok, pair_rows)
    cfg = TrainConfig(steps=3, lr=5e-3, progress=False, checkpoint_dir=str(tmp_path / "c"), eval_every=1)
    first = make_model(tok)
    h1 = train(first, sft_objective(), batches, cfg, eval_fn=_nll_eval(tok))
    again = make_model(tok)
    h2 = train(again, sft_objective(), batches, cfg, eval_fn=_nll_eval(tok))
    assert list(h2.evals["step"]) == [0, 1, 2, 3]
    _assert_same_history(h1, h2)
    _assert_same_weights(first, again)


# ---- one optimizer step in closed form: warm-up, clipping, the logged columns ---------------------------------------


def _first_step_closed_form(model, batch, lr: float, max_norm: float):
    """AdamW's first step, Δθ = -lr ĝ / (|ĝ| + ε) (bias-corrected moments m̂ = ĝ, v̂ = ĝ²), on the clipped gradient
    ĝ = g min(1, c / (‖g‖ + 1e-6)). Returns the expected new weights and the pre-clip norm ‖g‖."""
    import copy

    m = copy.deepcopy(model)
    loss, _ = sft_objective()(m, batch)
    loss.backward()
    grads = [p.grad for p in m.parameters()]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()
    coef = min(1.0, max_norm / (norm + 1e-6))
    new = [p.detach() - lr * (coef * g) / ((coef * g).abs() + 1e-8) for p, g in zip(m.parameters(), grads)]
    return new, norm


@pytest.mark.parametrize("max_grad_norm", [1e-9, 1e9])
def test_one_step_equals_adamw_on_the_clipped_gradient(tok, model, pair_rows, max_grad_norm):
    import copy

    batches = _sft_batches(tok, pair_rows)
    before = copy.deepcopy(model)
    want, norm = _first_step_closed_form(model, batches[0], lr=0.25 * 1e-2, max_norm=max_grad_norm)
    cfg = TrainConfig(steps=1, lr=1e-2, warmup_steps=4, max_grad_norm=max_grad_norm, progress=False)
    hist = train(model, sft_objective(), batches, cfg)
    assert hist.steps["grad_norm"].iloc[0] == pytest.approx(norm, rel=1e-5)  # the norm before clipping
    assert norm > 1.0  # ... which the tiny threshold does clip
    assert hist.steps["lr"].iloc[0] == pytest.approx(0.25 * 1e-2)  # step 0 of a 4-step warm-up: lr / 4
    for (n, p), w in zip(model.named_parameters(), want):
        torch.testing.assert_close(p.detach(), w, rtol=1e-5, atol=1e-7, msg=n)
    moved = max((p - q).abs().max().item() for p, q in zip(model.parameters(), before.parameters()))
    if max_grad_norm > 1:  # unclipped, Adam's first step moves every weight with a gradient by lr
        assert moved == pytest.approx(0.25e-2, rel=1e-3)
    else:  # clipped to norm 1e-9, the gradient is below Adam's ε = 1e-8 and the weights barely move
        assert moved < 0.1 * 0.25e-2


def test_gradient_clipping_changes_the_trained_weights(tok, pair_rows):
    from conftest import make_model

    batches = _sft_batches(tok, pair_rows)
    runs = {}
    for c in (1e-3, 1e3):
        m = make_model(tok)
        h = train(m, sft_objective(), batches, TrainConfig(steps=4, lr=1e-2, max_grad_norm=c, progress=False))
        runs[c] = (m, h)
    diff = max((p - q).abs().max().item() for p, q in zip(runs[1e-3][0].parameters(), runs[1e3][0].parameters()))
    assert diff > 1e-3
    assert (runs[1e-3][1].steps["grad_norm"] > 1e-3).all()  # logged before clipping, not the clipped 1e-3
    assert runs[1e-3][1].steps["grad_norm"].iloc[0] == pytest.approx(runs[1e3][1].steps["grad_norm"].iloc[0])


def test_lr_column_is_the_learning_rate_each_step_used(tok, model, pair_rows):
    from prefkit.train import lr_factor

    cfg = TrainConfig(steps=6, lr=1e-3, warmup_steps=2, schedule="linear", progress=False)
    hist = train(model, sft_objective(), _sft_batches(tok, pair_rows), cfg)
    f = lr_factor(cfg)
    assert hist.steps["lr"].tolist() == pytest.approx([1e-3 * f(s) for s in range(6)], rel=1e-12)
    assert hist.steps["lr"].iloc[0] == pytest.approx(0.5e-3)  # half-way through the warm-up
    assert hist.steps["lr"].iloc[-1] > 0  # the last step still learns


def test_lr_factor_exact_values():
    from prefkit.train import lr_factor

    # no warm-up: linear decay from 1 at step 0 to 1/steps at the last step, never 0 while training
    lin = lr_factor(TrainConfig(steps=4, warmup_steps=0, schedule="linear"))
    assert [lin(s) for s in range(4)] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    cos = lr_factor(TrainConfig(steps=4, warmup_steps=0, schedule="cosine"))
    assert [cos(s) for s in range(4)] == pytest.approx(
        [1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))]
    )
    # warm-up of 3 then cosine over 6 steps: 1/3, 2/3, 1, then cos at done = 1/4, 2/4, 3/4
    cw = lr_factor(TrainConfig(steps=6, warmup_steps=3, schedule="cosine"))
    want = [1 / 3, 2 / 3, 1.0] + [0.5 * (1 + math.cos(math.pi * d / 4)) for d in (1, 2, 3)]
    assert [cw(s) for s in range(6)] == pytest.approx(want)
    lw = lr_factor(TrainConfig(steps=6, warmup_steps=3, schedule="linear"))
    assert [lw(s) for s in range(6)] == pytest.approx([1 / 3, 2 / 3, 1.0, 0.75, 0.5, 0.25])
    const = lr_factor(TrainConfig(steps=6, warmup_steps=0))
    assert [const(s) for s in range(6)] == [1.0] * 6


# ---- the step-0 check and non-finite losses --------------------------------------------------------------------------


def _stub_loss(loss_value: float, **metrics):
    """A loss_fn whose loss and metrics are given, differentiable through the policy (with zero gradient)."""

    def loss_fn(policy, batch):
        zero = sum(p.sum() for p in policy.parameters()) * 0.0
        return zero + loss_value, {"loss": loss_value, **metrics}

    loss_fn.initial_loss = LN2
    return loss_fn


@pytest.mark.parametrize(
    "loss, rewards",
    [
        (LN2, {"rewards/chosen": 0.05, "rewards/rejected": 0.05}),  # the loss looks right, the rewards are not 0
        (LN2 + 0.01, {"rewards/chosen": 0.0, "rewards/rejected": 0.0}),  # zero rewards, but the wrong loss
        (LN2, {"rewards/best": 0.0, "rewards/worst": -0.01}),  # listwise reward names count too
    ],
    ids=["rewards_off", "loss_off", "listwise_rewards_off"],
)
def test_step0_check_needs_both_the_initial_loss_and_zero_rewards(model, loss, rewards):
    batches = [{}] * 2
    with pytest.raises(SanityCheckError, match="does not start at its reference"):
        train(model, _stub_loss(loss, **rewards), batches, TrainConfig(steps=2, progress=False))
    fine = _stub_loss(LN2 + 5e-4, **{"rewards/chosen": -5e-4, "rewards/rejected": 5e-4})  # within sanity_tol 1e-3
    assert len(train(model, fine, batches, TrainConfig(steps=2, progress=False)).steps) == 2
    off = TrainConfig(steps=2, progress=False, sanity_check=False)
    assert len(train(model, _stub_loss(loss, **rewards), batches, off).steps) == 2


def test_infinite_loss_later_in_the_run_stops_it_naming_the_step(model):
    def loss_fn(policy, batch):
        zero = sum(p.sum() for p in policy.parameters()) * 0.0
        return zero + batch["value"], {}

    batches = [{"value": 1.0}, {"value": 1.0}, {"value": float("inf")}, {"value": 1.0}]
    with pytest.raises(FloatingPointError, match="step 2: loss is inf"):
        train(model, loss_fn, batches, TrainConfig(steps=4, progress=False, sanity_check=False))


# ---- batches ---------------------------------------------------------------------------------------------------------


def test_step_batches_cover_every_row_once_per_epoch_in_a_fresh_order(tok):
    rows = [{"prompt": "sort : a b =", "response": "a b", "id": i} for i in range(10)]
    batches = StepBatches(
        rows, tok, 4, seed=2, kind="sft", extra=lambda rs: {"id": torch.tensor([r["id"] for r in rs])}
    )
    ids = [batches[s]["id"].tolist() for s in range(6)]  # 10 // 4 = 2 full batches per epoch; 2 rows sit out
    assert all(len(b) == 4 for b in ids)
    epochs = [ids[0] + ids[1], ids[2] + ids[3], ids[4] + ids[5]]
    assert all(len(set(e)) == 8 for e in epochs)  # no row twice within an epoch
    assert len({tuple(e) for e in epochs}) == 3  # each epoch is a new permutation
    assert batches[3]["id"].tolist() == ids[3]  # going back to an earlier step gives the same batch


# ---- the pairwise forward: soft labels and logged metrics ------------------------------------------------------------


def test_strength_is_the_soft_label_one_minus_label_smoothing(tok, model, pair_rows):
    import copy

    from prefkit.logps import encode_pairs
    from prefkit.losses import dpo_loss

    ref = Reference(copy.deepcopy(model))
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.mul_(1.5)  # policy != reference, so the label matters
    plain = encode_pairs(tok, pair_rows)
    soft = {**plain, "strength": torch.tensor([1.0, 0.7, 0.2])}  # P(chosen > rejected) per pair
    got, _ = pairwise_forward(model, ref, soft, dpo_loss, beta=0.5)
    eps = torch.tensor([0.0, 0.3, 0.8])
    want, _ = pairwise_forward(model, ref, plain, dpo_loss, beta=0.5, label_smoothing=eps)
    torch.testing.assert_close(got, want)
    hard, _ = pairwise_forward(model, ref, plain, dpo_loss, beta=0.5)
    torch.testing.assert_close(got[0], hard[0])  # strength 1 is a hard label
    assert not torch.allclose(got[1:], hard[1:])


def test_pairwise_metrics_are_the_losss_rewards(tok, model, pair_rows):
    import copy

    from prefkit.logps import sequence_logps
    from prefkit.losses import dpo_loss

    ref = Reference(copy.deepcopy(model))
    batch = StepBatches(pair_rows, tok, 3)[0]
    _, at_start = pairwise_forward(model, ref, batch, dpo_loss, beta=0.5)
    assert at_start["rewards/accuracy"] == 0.0  # all rewards tie at 0: none counts as right (TRL's convention)
    assert at_start["rewards/margin"] == 0.0 and at_start["loss"] == pytest.approx(LN2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        pol = sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])[0]
        old = sequence_logps(ref.model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])[0]
    losses, m = pairwise_forward(model, ref, batch, dpo_loss, beta=0.5)
    rc, rr = 0.5 * (pol[:3] - old[:3]), 0.5 * (pol[3:] - old[3:])
    assert m["rewards/chosen"] == pytest.approx(rc.mean().item(), abs=1e-6)
    assert m["rewards/rejected"] == pytest.approx(rr.mean().item(), abs=1e-6)
    assert m["rewards/margin"] == pytest.approx((rc - rr).mean().item(), abs=1e-6)
    assert m["rewards/accuracy"] == pytest.approx((rc > rr).float().mean().item())
    assert m["logps/chosen"] == pytest.approx(pol[:3].mean().item(), rel=1e-6)
    assert m["logps/rejected"] == pytest.approx(pol[3:].mean().item(), rel=1e-6)
    assert m["loss"] == pytest.approx(-torch.nn.functional.logsigmoid(rc - rr).mean().item(), rel=1e-5)


def test_fsdp_refuses_an_objective_that_trains_modules_of_its_own(tok):
    from conftest import make_model

    from prefkit.train import _shard_parameters

    with pytest.raises(NotImplementedError, match=r"modules of its own \(Linear\)"):
        _shard_parameters(make_model(tok), [torch.nn.Linear(2, 2)])


def test_a_checkpoint_saved_under_fsdp_is_not_resumed_without_it(tok, pair_rows, tmp_path):
    from conftest import make_model

    batches, ckpt = _sft_batches(tok, pair_rows), tmp_path / "ckpt"
    cfg = TrainConfig(steps=2, lr=5e-3, progress=False, checkpoint_dir=str(ckpt))
    train(make_model(tok), sft_objective(), batches, cfg)
    state = ckpt / "step-00000002" / "state.json"
    record = json.loads(state.read_text())
    assert record["sharded"] is False
    state.write_text(json.dumps({**record, "sharded": True}))  # as a 2-process FSDP run writes it
    with pytest.raises(
        ValueError, match="saved with FSDP and this run is without it: resume it the way it was started"
    ):
        train(
            make_model(tok),
            sft_objective(),
            batches,
            TrainConfig(steps=4, lr=5e-3, progress=False, checkpoint_dir=str(ckpt)),
        )


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"ACCELERATE_USE_FSDP": "true"}, True),
        ({"PREFKIT_FSDP": "1"}, True),
        ({"PREFKIT_FSDP": "0"}, False),
    ],
)
def test_fsdp_is_asked_for_by_accelerate_launch_or_by_prefkit_fsdp(monkeypatch, env, wanted):
    from prefkit.train import _wants_fsdp

    for name in ("ACCELERATE_USE_FSDP", "PREFKIT_FSDP"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # accelerate launch --use_fsdp sets ACCELERATE_USE_FSDP=true
    assert _wants_fsdp() is wanted
