"""Accelerated Preference Optimization (APO) on a tabular bandit, where each round's DPO optimum is exact.

He, Yuan & Gu 2024, "Accelerated Preference Optimization for Large Language Model Alignment" (arXiv:2410.06293;
equation numbers from the ICLR 2025 submission). Iterative preference optimisation is read as a proximal point
method: round t fits DPO with the current policy π_t as reference, on comparisons sampled from π_t (Algorithm 1,
lines 4-6, Eq. 3.5)

    π̂_{t+1} = argmin_π  E_{(x, y_w, y_l) ~ D_t} -log σ(β log π(y_w|x)/π_t(y_w|x) - β log π(y_l|x)/π_t(y_l|x)),

and APO then extrapolates like Nesterov's momentum (Catalyst), in log space (Eq. 3.7; normalised, Eq. 3.6)

    log π_{t+1} = log π̂_{t+1} + α (log π̂_{t+1} - log π̂_t)  (+ a normaliser),

with π_0 = π̂_0 = π_ref. The extrapolated π_{t+1} is both the next round's reference and its sampler; the output
after T rounds is π̂_T (before extrapolation). α = 0 is iterative DPO.

Unrolling the recursion (Theorem 4.1), with r_i = β log π̂_{i+1}/π_i the reward round i recovered,

    π̂_T ∝ π_ref exp( Σ_{i<T} (1 - α^{T-i})/(1 - α) · r_i / β ).

When every round recovers the true reward (the population limit, Bradley-Terry preferences, Eq. 2.1), r_i = r*
up to a per-prompt constant, so π̂_T is the tempered policy π_ref exp(S_α(T) r*/β) with
S_α(T) = Σ_{m=1..T} (1 - α^m)/(1 - α): APO after T rounds is iterative DPO after S_α(T) ≈ T/(1 - α) rounds.
Theorem 4.4 bounds the suboptimality by Õ((1 - α)β/T) plus a statistical term that grows with T and with
1/(1 - α); Theorem 4.8 (a minimal reward gap Δ) gives exp(-O(TΔ/((1 - α)β))).

Here a policy over prompts x and K responses is a table of log-probabilities (X, K), the softmax policy class
contains every iterate (Assumption 4.2 holds), and each round's DPO objective is convex in the implicit reward
h = β(log π - log π_t), so its optimum is found exactly: in closed form on the population (every pair compared,
preferences known), by Newton's method on sampled comparisons. Rewards are used to label comparisons (the rater)
and to evaluate; the methods see only the comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, log_expit, log_softmax, logsumexp


@dataclass
class Bandit:
    """A tabular preference bandit: true rewards r*(x, y) and the reference (starting) policy."""

    reward: np.ndarray  # (X, K) r*(x, y)
    logp_ref: np.ndarray  # (X, K) log π_ref(y|x), each row normalised


def make_bandit(
    n_prompts: int, n_responses: int, rng: np.random.Generator, reward_scale: float = 1.0, ref_scale: float = 1.0
) -> Bandit:
    """Rewards r* ~ N(0, reward_scale²) and a reference policy softmax(N(0, ref_scale²) logits), drawn independently,
    so the optimal response is usually not the reference's favourite."""
    if n_prompts < 1 or n_responses < 2:
        raise ValueError(f"need n_prompts >= 1 and n_responses >= 2, got {n_prompts} and {n_responses}")
    if reward_scale <= 0 or ref_scale < 0:
        raise ValueError(f"reward_scale must be > 0 and ref_scale >= 0, got {reward_scale} and {ref_scale}")
    reward = reward_scale * rng.standard_normal((n_prompts, n_responses))
    logp_ref = log_softmax(ref_scale * rng.standard_normal((n_prompts, n_responses)), axis=1)
    return Bandit(reward, logp_ref)


def _check_logp(logp: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    logp = np.asarray(logp, dtype=float)
    if logp.ndim != 2:
        raise ValueError(f"{name} must be a (prompts, responses) table of log-probabilities, got shape {logp.shape}")
    if shape is not None and logp.shape != shape:
        raise ValueError(f"{name} has shape {logp.shape}, expected {shape}")
    if not np.all(np.isfinite(logp)):
        raise ValueError(f"{name} must be finite (every response keeps some probability)")
    bad = np.abs(logsumexp(logp, axis=1)).argmax()
    if abs(logsumexp(logp[bad])) > 1e-6:
        raise ValueError(
            f"{name}: row {bad} is not normalised (its probabilities sum to {np.exp(logsumexp(logp[bad])):.6g})"
        )
    return logp


def _check_positive(value: float, name: str) -> None:
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value}")


def suboptimality(reward: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """Per-prompt suboptimality max_y r*(x, y) - E_{y~π(·|x)} r*(x, y) (Theorem 4.4's left side, per x). (X,)"""
    logp = _check_logp(logp, "logp", np.shape(reward))
    return reward.max(axis=1) - (np.exp(logp) * reward).sum(axis=1)


def kl(logp: np.ndarray, logp_ref: np.ndarray) -> np.ndarray:
    """Per-prompt KL(π(·|x) ‖ π_ref(·|x)) in nats. (X,)"""
    logp, logp_ref = _check_logp(logp, "logp"), _check_logp(logp_ref, "logp_ref", np.shape(logp))
    return (np.exp(logp) * (logp - logp_ref)).sum(axis=1)


def bt_preferences(reward: np.ndarray) -> np.ndarray:
    """P[x, a, b] = P(y_a ≻ y_b | x) = σ(r*(x, a) - r*(x, b)) under Bradley-Terry (Eq. 2.1). (X, K, K)"""
    reward = np.asarray(reward, dtype=float)
    return expit(reward[:, :, None] - reward[:, None, :])


def population_wins(reward: np.ndarray) -> np.ndarray:
    """Comparison weights of the population: every ordered pair (a, b), a ≠ b, drawn uniformly and judged by
    Bradley-Terry; W[x, a, b] = P(pair) · P(a ≻ b). Any pair distribution that connects all responses has the same
    DPO optimum. (X, K, K)"""
    k = np.shape(reward)[1]
    off = 1.0 - np.eye(k)
    return bt_preferences(reward) * off / (k * (k - 1))


def sample_wins(reward: np.ndarray, logp_sampler: np.ndarray, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """Counts W[x, a, b] of sampled comparisons where y_a beat y_b: per prompt, ``n_pairs`` pairs of independent
    draws from the sampler π_t (Algorithm 1, line 4), each labelled by a Bradley-Terry rater (Eq. 2.1). A pair of
    two identical responses is drawn and counted on the diagonal; it carries no information. (X, K, K)"""
    reward = np.asarray(reward, dtype=float)
    logp_sampler = _check_logp(logp_sampler, "logp_sampler", reward.shape)
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    n, k = reward.shape
    cdf = np.cumsum(np.exp(logp_sampler), axis=1)  # (X, K)
    cdf[:, -1] = 1.0
    draws = rng.random((2, n, n_pairs))
    y = np.stack([np.minimum((cdf[:, None, :] < d[:, :, None]).sum(axis=2), k - 1) for d in draws])  # (2, X, n_pairs)
    rows = np.arange(n)[:, None]
    first_wins = rng.random((n, n_pairs)) < expit(reward[rows, y[0]] - reward[rows, y[1]])  # Eq. 2.1
    w, lo = np.where(first_wins, y[0], y[1]), np.where(first_wins, y[1], y[0])
    wins = np.zeros((n, k, k))
    np.add.at(wins, (np.broadcast_to(rows, w.shape), w, lo), 1.0)
    return wins


def _check_wins(wins: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    wins = np.asarray(wins, dtype=float)
    if wins.shape != (shape[0], shape[1], shape[1]):
        raise ValueError(f"wins must have shape (prompts, responses, responses) = {(shape[0], shape[1], shape[1])}, "
                         f"got {wins.shape}")  # fmt: skip
    if not np.all(np.isfinite(wins)) or np.any(wins < 0):
        x = int(np.argwhere(~(wins >= 0))[0][0]) if np.any(~(wins >= 0)) else 0
        raise ValueError(f"wins are comparison counts or weights: each must be finite and >= 0 (prompt {x})")
    return wins


def dpo_objective(
    logp: np.ndarray, logp_ref: np.ndarray, wins: np.ndarray, beta: float, ridge: float = 0.0
) -> np.ndarray:
    """The DPO objective of each prompt for a tabular policy (Eq. 3.5 with ℓ_DPO, Example 3.1), summed over the
    comparisons in ``wins``, plus an optional ridge (ridge/2)·‖h - mean(h)‖² on the centred implicit reward
    h = β(log π - log π_ref). ``logp`` may be unnormalised logits: the objective depends on differences only. (X,)"""
    _check_positive(beta, "beta")
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be finite and >= 0, got {ridge}")
    h = beta * (np.asarray(logp, dtype=float) - np.asarray(logp_ref, dtype=float))  # (X, K)
    return _objective_h(h, wins, ridge)  # Eq. 3.5


def dpo_optimum(
    logp_ref: np.ndarray,
    wins: np.ndarray,
    beta: float,
    ridge: float = 0.0,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> np.ndarray:
    """The exact minimiser over tabular softmax policies of the DPO objective with reference π_t = exp(logp_ref)
    (Eq. 3.5), by Newton's method on the implicit reward h = β(log π - log π_t), which it is convex in.

    The Hessian in h is the graph Laplacian of the comparisons (weights w_ab σ(d_ab) σ(-d_ab)) plus the ridge on the
    centred h; its null space holds the per-prompt constant (and, without a ridge, one constant per group of
    responses never compared with each other), which Newton's minimum-norm step leaves untouched, so a response
    that was never compared keeps its reference log-ratio. Without a ridge the optimum is infinite when some
    response always wins (or loses) its comparisons; a ridge > 0 keeps it finite. Returns log π̂_{t+1} (X, K)."""
    logp_ref = _check_logp(logp_ref, "logp_ref")
    wins = _check_wins(wins, logp_ref.shape)
    _check_positive(beta, "beta")
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be finite and >= 0, got {ridge}")
    n, k = logp_ref.shape
    centre = np.eye(k) - 1.0 / k
    h = np.zeros((n, k))
    for _ in range(max_iter):
        d = h[:, :, None] - h[:, None, :]  # (X, K, K)
        s = wins * expit(-d)  # (X, K, K) w_ab σ(-(h_a - h_b))
        grad = -s.sum(axis=2) + s.sum(axis=1) + ridge * (h - h.mean(axis=1, keepdims=True))  # (X, K)
        if np.abs(grad).max() < tol:
            break
        c = wins * expit(d) * expit(-d)
        c = c + c.transpose(0, 2, 1)  # (X, K, K) symmetric Laplacian weights
        hess = np.eye(k) * c.sum(axis=2)[:, :, None] - c + ridge * centre  # (X, K, K)
        step = -np.einsum("xab,xb->xa", np.linalg.pinv(hess, rcond=1e-12, hermitian=True), grad)
        obj = _objective_h(h, wins, ridge)
        t = np.ones((n, 1))
        for _ in range(40):  # backtracking (Armijo) per prompt: Newton's full step can overshoot far from the optimum
            ok = _objective_h(h + t * step, wins, ridge) <= obj + 1e-4 * t[:, 0] * (grad * step).sum(axis=1) + 1e-12
            if ok.all():
                break
            t[~ok] *= 0.5
        h = h + t * step
    return log_softmax(logp_ref + h / beta, axis=1)  # h = β log π̂_{t+1}/π_t


def _objective_h(h: np.ndarray, wins: np.ndarray, ridge: float) -> np.ndarray:
    """Eq. 3.5 in the implicit reward h (X, K): Σ_ab w_ab (-log σ(h_a - h_b)) + (ridge/2)·‖h - mean(h)‖², (X,)."""
    d = h[:, :, None] - h[:, None, :]  # (X, K, K) h_a - h_b
    hc = h - h.mean(axis=1, keepdims=True)
    return -(wins * log_expit(d)).sum(axis=(1, 2)) + 0.5 * ridge * (hc**2).sum(axis=1)


def dpo_population_optimum(logp_ref: np.ndarray, reward: np.ndarray, beta: float) -> np.ndarray:
    """DPO's optimum on the population in closed form: Bradley-Terry preferences over every pair are matched
    exactly when β log π̂/π_t = r* + c(x), so π̂_{t+1} ∝ π_t exp(r*/β) (Rafailov et al. 2023, Theorem 1; the
    closed form after Eq. 3.2). Returns log π̂_{t+1} (X, K)."""
    logp_ref = _check_logp(logp_ref, "logp_ref", np.shape(reward))
    _check_positive(beta, "beta")
    return log_softmax(logp_ref + np.asarray(reward, dtype=float) / beta, axis=1)


def extrapolate(logp_new: np.ndarray, logp_old: np.ndarray, alpha: float) -> np.ndarray:
    """APO's Nesterov extrapolation (Eq. 3.7), normalised (Eq. 3.6):
    log π_{t+1} = log π̂_{t+1} + α(log π̂_{t+1} - log π̂_t) - log Z'_t(x). α = 0 returns π̂_{t+1}. (X, K)"""
    logp_new = _check_logp(logp_new, "logp_new")
    logp_old = _check_logp(logp_old, "logp_old", logp_new.shape)
    if not (np.isfinite(alpha) and 0 <= alpha < 1):
        raise ValueError(f"alpha (Nesterov's extrapolation parameter) must be in [0, 1), got {alpha}")
    return log_softmax((1 + alpha) * logp_new - alpha * logp_old, axis=1)  # Eq. 3.7


def effective_rounds(alpha: float, rounds: int | np.ndarray) -> np.ndarray:
    """S_α(T) = Σ_{m=1..T} (1 - α^m)/(1 - α): the total weight Theorem 4.1 puts on a reward every round recovers
    exactly, i.e. the number of iterative-DPO rounds that T APO rounds equal in the population limit."""
    if not (np.isfinite(alpha) and 0 <= alpha < 1):
        raise ValueError(f"alpha must be in [0, 1), got {alpha}")
    t = np.asarray(rounds, dtype=float)
    if np.any(t < 0):
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    return (t - alpha * (1 - alpha**t) / (1 - alpha)) / (1 - alpha)  # Thm 4.1 with r_i = r*


def tempered(bandit: Bandit, s: float | np.ndarray, beta: float) -> np.ndarray:
    """The policy π_ref exp(s r*/β) (normalised): where iterative DPO is after s exact rounds, and APO after T
    rounds when s = S_α(T) (Theorem 4.1). ``s`` is a number or one per prompt. (X, K)"""
    _check_positive(beta, "beta")
    s = np.asarray(s, dtype=float).reshape(-1, 1) if np.ndim(s) else float(s)
    return log_softmax(bandit.logp_ref + s * bandit.reward / beta, axis=1)


def equivalent_rounds(bandit: Bandit, gap: float, beta: float, s_max: float = 1e3) -> float:
    """The s at which exact iterative DPO's mean suboptimality (over prompts) equals ``gap``: how many exact
    rounds a run's policy is worth. The mean suboptimality of π_ref exp(s r*/β) falls monotonically in s
    (its derivative is -Var_π(r*)/β), so bisection finds it; clipped to [0, s_max]."""
    lo, hi = 0.0, s_max
    if gap >= suboptimality(bandit.reward, tempered(bandit, 0.0, beta)).mean():
        return 0.0
    if gap <= suboptimality(bandit.reward, tempered(bandit, s_max, beta)).mean():
        return s_max
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if suboptimality(bandit.reward, tempered(bandit, mid, beta)).mean() > gap:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def apo(
    bandit: Bandit,
    alpha: float,
    beta: float,
    rounds: int,
    n_pairs: int | None = None,
    rng: np.random.Generator | None = None,
    ridge: float = 0.0,
) -> dict[str, np.ndarray]:
    """Algorithm 1 for ``rounds`` rounds. Each round collects comparisons with the sampler π_t (``n_pairs`` per
    prompt, Bradley-Terry labels; ``n_pairs=None``: the population), fits DPO with reference π_t exactly
    (Eq. 3.5), and extrapolates (Eq. 3.7) to the next round's reference and sampler. α = 0 is iterative DPO.

    Returns ``logp_hat`` (T+1, X, K): π̂_0 = π_ref, ..., π̂_T (the outputs); ``logp_sampler`` (T+1, X, K): π_0, ..., π_T;
    ``gap`` and ``kl`` (T+1, X): per-prompt suboptimality (Theorem 4.4) and KL(π̂_t ‖ π_ref) of each output."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if n_pairs is not None and rng is None:
        raise ValueError("sampled comparisons (n_pairs given) need a random generator rng")
    logp_ref = _check_logp(bandit.logp_ref, "bandit.logp_ref", np.shape(bandit.reward))
    extrapolate(logp_ref, logp_ref, alpha)  # validates alpha before any work
    hats, samplers = [logp_ref], [logp_ref]  # π̂_0 = π_0 = π_ref
    for _ in range(rounds):
        pi_t = samplers[-1]
        if n_pairs is None:
            hat = dpo_population_optimum(pi_t, bandit.reward, beta)  # Eq. 3.5, population
        else:
            hat = dpo_optimum(pi_t, sample_wins(bandit.reward, pi_t, n_pairs, rng), beta, ridge)  # Eq. 3.5
        samplers.append(extrapolate(hat, hats[-1], alpha))  # Eq. 3.7: the next reference and sampler
        hats.append(hat)
    logp_hat = np.stack(hats)
    return {
        "logp_hat": logp_hat,
        "logp_sampler": np.stack(samplers),
        "gap": np.stack([suboptimality(bandit.reward, lp) for lp in logp_hat]),
        "kl": np.stack([kl(lp, logp_ref) for lp in logp_hat]),
    }
