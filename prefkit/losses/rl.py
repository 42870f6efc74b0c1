"""Policy-gradient losses for K responses sampled from the policy itself (on-policy RL with a reward).

They share the listwise signature (``policy_logps``, ``ref_logps`` and ``scores`` of shape (B, K); see
``prefkit.losses.listwise``), so the same trainer runs them: the K responses of prompt b are samples y_1..y_K ~ π(·|x_b)
and ``scores`` are their rewards r(x_b, y_i) from an oracle, a reward model or a judge. Each function returns
per-prompt surrogate losses (B,), whose gradient is the policy-gradient estimate (their values mean nothing on their
own), and, as every listwise loss does, the implicit rewards β log π(y_i|x)/π_ref(y_i|x) (B, K), detached: 0 while the
policy is its reference, which the trainer's step-0 check relies on. Only torch is imported.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def rloo_advantages(rewards: Tensor) -> Tensor:
    """Leave-one-out advantages (B, K): A_i = R_i - 1/(K-1) Σ_{j≠i} R_j, each sample's reward against the mean of the
    other K - 1 samples of its prompt. Zero-mean within each prompt; unchanged by adding a constant to a prompt's
    rewards."""
    k = rewards.shape[-1]
    if k < 2:
        raise ValueError(f"leave-one-out needs K >= 2 samples per prompt, got K = {k}")
    others = (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)
    return rewards - others


def rloo_loss(
    policy_logps: Tensor,  # (B, K) log π(y_i | x), summed over response tokens, with gradient
    ref_logps: Tensor,  # (B, K) log π_ref(y_i | x)
    scores: Tensor,  # (B, K) rewards r(x, y_i)
    beta: float = 0.05,
) -> tuple[Tensor, Tensor]:
    """REINFORCE Leave-One-Out (Ahmadian et al. 2024, arXiv:2402.14740; TRL's RLOOTrainer with the KL in the reward):
    the sequence-level reward carries the KL penalty, R_i = r_i - β (log π(y_i|x) - log π_ref(y_i|x)) (held fixed),
    and the gradient estimate is 1/K Σ_i A_i ∇ log π(y_i|x) with the leave-one-out advantages of
    :func:`rloo_advantages`.

    Returns the surrogate L = -1/K Σ_i A_i log π(y_i|x) per prompt (B,) and β log π/π_ref (B, K)."""
    penalty = beta * (policy_logps - ref_logps).detach()  # (B, K)
    advantages = rloo_advantages(scores.to(policy_logps.dtype) - penalty)
    return -(advantages * policy_logps).mean(-1), penalty
