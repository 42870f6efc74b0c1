"""RLOO: leave-one-out advantages, the surrogate's gradient, a bandit it solves, and on-policy batches in the loop."""

from __future__ import annotations

import pytest
import torch

from prefkit.losses.rl import rloo_advantages, rloo_loss
from prefkit.train import TrainConfig, preference_objective, train


def test_advantages_are_each_reward_against_the_mean_of_the_others():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [3.0, 5.0, 4.0, 0.0]])
    expected = torch.tensor([[1 - 1 / 3, -2 / 3, -2 / 3, 1 - 1 / 3], [3 - 3, 5 - 7 / 3, 4 - 8 / 3, 0 - 4]])
    a = rloo_advantages(r)
    torch.testing.assert_close(a, expected)
    torch.testing.assert_close(a.sum(-1), torch.zeros(2))  # zero-mean within each prompt
    torch.testing.assert_close(rloo_advantages(r + torch.tensor([[7.0], [-2.0]])), a)  # a prompt's constant cancels
    with pytest.raises(ValueError, match="K >= 2 samples per prompt, got K = 1"):
        rloo_advantages(torch.ones(3, 1))


def test_the_surrogates_gradient_is_the_leave_one_out_estimate_with_the_kl_in_the_reward():
    g = torch.Generator().manual_seed(0)
    logps = torch.randn(3, 4, generator=g, dtype=torch.float64).requires_grad_()
    ref = torch.randn(3, 4, generator=g, dtype=torch.float64)
    scores = torch.rand(3, 4, generator=g, dtype=torch.float64)
    losses, implicit = rloo_loss(logps, ref, scores, beta=0.5)
    (grad,) = torch.autograd.grad(losses.sum(), logps)
    reward = scores - 0.5 * (logps.detach() - ref)
    others = (reward.sum(-1, keepdim=True) - reward) / 3
    torch.testing.assert_close(grad, -(reward - others) / 4)  # d/d log π(y_i): -A_i / K
    torch.testing.assert_close(implicit, 0.5 * (logps.detach() - ref))
    assert not implicit.requires_grad
    at_reference, zero = rloo_loss(ref, ref, scores, beta=0.5)
    assert torch.equal(zero, torch.zeros_like(zero))  # the trainer's step-0 check reads these


def _bandit(beta: float, steps: int = 300) -> tuple[float, float]:
    """Softmax policy over 6 arms with rewards 0..1, 4 samples per step: (expected reward, KL(π || π_ref)) after."""
    values = torch.linspace(0.0, 1.0, 6)
    ref_logits = torch.zeros(6)
    logits = torch.nn.Parameter(ref_logits.clone())
    opt = torch.optim.SGD([logits], lr=0.5)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        logp = torch.log_softmax(logits, -1)
        arms = torch.multinomial(logp.exp().detach(), 4, replacement=True, generator=g)[None]  # (1, 4)
        losses, _ = rloo_loss(logp[arms], torch.log_softmax(ref_logits, -1)[arms], values[arms], beta=beta)
        opt.zero_grad()
        losses.mean().backward()
        opt.step()
    p = torch.softmax(logits.detach(), -1)
    return float(p @ values), float((p * (p.log() - torch.log_softmax(ref_logits, -1))).sum())


def test_rloo_solves_a_bandit_and_the_kl_penalty_holds_it_near_the_reference():
    free_reward, free_kl = _bandit(beta=0.0)
    held_reward, held_kl = _bandit(beta=1.0)
    assert free_reward > 0.9  # from 0.5 under the uniform reference
    assert 0.5 < held_reward < free_reward and held_kl < free_kl / 2


@pytest.fixture
def on_policy(tok, model):
    from prefkit.rl import OnPolicyBatches

    prompts = ["reverse : a b c =", "sort : d a c =", "shift : a b =", "dedupe : a a b ="]

    def reward(ps, responses):  # the share of "a" tokens: enough for a test of the plumbing
        return [[r.split().count("a") / max(1, len(r.split())) for r in rs] for rs in responses]

    return OnPolicyBatches(model, tok, prompts, reward, k=3, batch_size=2, seed=5, max_new_tokens=6)


def test_on_policy_batches_sample_k_per_prompt_and_repeat_for_the_same_weights(on_policy, tok):
    from prefkit.rl import OnPolicyBatches

    b0 = on_policy[0]
    assert len(b0["prompts"]) == 2 and [len(r) for r in b0["responses"]] == [3, 3]
    assert b0["scores"].shape == (2, 3) and b0["response_ids"].shape[0] == 6 and b0["prompt_ids"].shape[0] == 2
    again = on_policy[0]
    assert again["responses"] == b0["responses"] and torch.equal(again["response_ids"], b0["response_ids"])
    assert on_policy[1]["prompts"] != b0["prompts"]  # the epoch's other half
    short = OnPolicyBatches(on_policy.policy, tok, on_policy.prompts, on_policy.reward_fn, k=3, max_new_tokens=2)[0]
    cut = sum(len(tok(y, add_special_tokens=False)["input_ids"]) >= 2 for ys in short["responses"] for y in ys)
    assert short["truncated"] == cut > 0  # samples that hit max_new_tokens (no EOS of their own)


def test_rloo_trains_through_the_one_loop(on_policy, model):
    from prefkit.models import Reference

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    hist = train(model, preference_objective(rloo_loss, Reference(model), beta=0.1), on_policy,
                 TrainConfig(steps=3, lr=1e-2, progress=False))  # fmt: skip
    assert len(hist.steps) == 3 and hist.steps["rewards/best"].iloc[0] == 0.0  # the step-0 check passed
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())


@pytest.mark.parametrize(
    ("reward", "match"),
    [
        (lambda ps, rs: [[0.0, 1.0] for _ in ps], r"shape \(2, 2\) for 2 prompts x 3 samples"),
        (lambda ps, rs: [[0.0, float("nan"), 1.0] for _ in ps], "non-finite score \\(nan\\) to sample 1 of prompt 0"),
    ],
)
def test_bad_rewards_are_refused_naming_the_sample(tok, model, reward, match):
    from prefkit.rl import OnPolicyBatches

    batches = OnPolicyBatches(model, tok, ["sort : b a =", "reverse : a b ="], reward, k=3, max_new_tokens=4)
    with pytest.raises(ValueError, match=match):
        batches[0]
    with pytest.raises(ValueError, match="k >= 2"):
        OnPolicyBatches(model, tok, ["sort : b a ="], reward, k=1)
