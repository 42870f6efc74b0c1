"""Self-Play Preference Optimization against Bradley-Terry reward learning, exactly, over n fixed responses.

Swamy, Dann, Kidambi, Wu & Agarwal 2024, "A Minimaximalist Approach to Reinforcement Learning from Human Feedback"
(arXiv:2401.04056). A preference function P[i, j] = P(i ≻ j) with P + Pᵀ = 1 defines a symmetric two-player
zero-sum game with antisymmetric payoff M = P - 1/2 (the paper writes the same game with the preference itself as
payoff). Its solution is the Minimax Winner

    MW(P) = argmax_{p ∈ Δ} min_{q ∈ Δ} pᵀ M q,

a policy that no other policy beats more often than not. The game's value is 0 because M = -Mᵀ, so a policy p is
a Minimax Winner exactly when its exploitability max_j (P p)_j - 1/2 is 0. When P has a Condorcet winner (a
response that beats every other one) the MW is that pure response; when the majority cycles it is mixed, and no
reward model σ(r_i - r_j) can represent P.

SPO exploits the symmetry: rather than duel two learners, one policy plays against itself, its reward for a response
being the response's win rate against the policy's own samples. The average of the iterates of any no-regret learner
on that reward converges to a Minimax Winner. Here a policy is a softmax over n responses, the learner is
REINFORCE, and the rater is only ever asked for sampled comparisons (``world.compare``); P is used only to evaluate.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from scipy.optimize import linprog
from scipy.special import expit, log_expit, softmax


class ComparisonWorld(Protocol):
    """What a learner may ask of a world: the number of responses and one sampled judgement at a time."""

    n: int

    def compare(self, i: int, j: int, rng: np.random.Generator) -> float: ...


def check_preference_matrix(P: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """P as a float (n, n) array, or a ValueError saying which property of a preference matrix it lacks."""
    P = np.asarray(P, dtype=float)
    if P.ndim != 2 or P.shape[0] != P.shape[1]:
        raise ValueError(f"P must be a square (n, n) matrix, got shape {P.shape}")
    if np.any(P < 0) or np.any(P > 1) or not np.all(np.isfinite(P)):
        raise ValueError("entries of P are probabilities: each must be in [0, 1]")
    gap = np.abs(P + P.T - 1).max()
    if gap > tol:
        raise ValueError(f"P + P.T must equal 1 (P[i, j] = P(i > j) = 1 - P(j > i)); off by up to {gap:.3g}")
    return P


def _check_policy(p: np.ndarray, n: int) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    if p.shape != (n,):
        raise ValueError(f"a policy over {n} responses has shape ({n},), got {p.shape}")
    if np.any(p < 0) or abs(p.sum() - 1) > 1e-6:
        raise ValueError("a policy must be non-negative and sum to 1")
    return p


def minimax_winner(P: np.ndarray) -> tuple[np.ndarray, float]:
    """The Minimax Winner of P (Swamy et al. 2024, arXiv:2401.04056) and the game's value, by linear programming:

        maximise v  over (p, v)  subject to  Σ_i p_i M[i, j] ≥ v for every column j,  p ∈ Δ,    M = P - 1/2.

    Checking the pure columns suffices because pᵀ M q is linear in q. The value is 0 up to solver tolerance.
    """
    M = check_preference_matrix(P) - 0.5  # (n, n), antisymmetric
    n = len(M)
    c = np.r_[np.zeros(n), -1.0]  # variables (p_1..p_n, v); linprog minimises, so minimise -v
    A_ub = np.c_[-M.T, np.ones(n)]  # row j: v - Σ_i p_i M[i, j] <= 0
    A_eq = np.r_[np.ones(n), 0.0][None]  # Σ_i p_i = 1
    bounds = [(0, None)] * n + [(None, None)]
    res = linprog(c, A_ub=A_ub, b_ub=np.zeros(n), A_eq=A_eq, b_eq=[1.0], bounds=bounds, method="highs")
    if not res.success:
        raise RuntimeError(f"linprog failed: {res.message}")
    p = np.clip(res.x[:n], 0.0, None)  # remove -1e-12 round-off before renormalising
    return p / p.sum(), float(res.x[n])


def exploitability(P: np.ndarray, p: np.ndarray) -> float:
    """How much the best pure response beats p: max_j Σ_i p_i P[j, i] - 1/2. It is ≥ 0 for every p (the game's
    value is 0) and 0 exactly at a Minimax Winner."""
    P = check_preference_matrix(P)
    return float(np.max(P @ _check_policy(p, len(P))) - 0.5)


def fit_bradley_terry(
    comparisons: np.ndarray, n: int, l2: float = 1e-2, tol: float = 1e-10, max_iter: int = 100
) -> np.ndarray:
    """Maximum-likelihood Bradley-Terry scores s (n,) from rows (i, j, y), y = 1 if i won, 0 if j won (0.5 a tie):

        max_s  Σ_rows [y log σ(s_i - s_j) + (1 - y) log σ(s_j - s_i)] - (l2 / 2) ‖s‖²

    (Bradley & Terry 1952). The small ridge fixes the otherwise free shift of s and keeps s finite when one response
    never loses; it also leaves Σ s = 0 at the optimum, since the likelihood's gradient sums to 0. Solved by Newton's
    method with step halving; raises RuntimeError if the step has not shrunk below ``tol`` in ``max_iter`` steps.
    """
    rows = np.asarray(comparisons, dtype=float)
    rows = rows.reshape(0, 3) if rows.size == 0 else rows  # no comparisons: the ridge alone gives s = 0
    if rows.ndim != 2 or rows.shape[1] != 3:
        raise ValueError(f"comparisons must be rows (i, j, y) of shape (m, 3), got {rows.shape}")
    i, j, y = rows[:, 0].astype(int), rows[:, 1].astype(int), rows[:, 2]
    if np.any(rows[:, :2] != np.stack([i, j], 1)) or np.any((i < 0) | (i >= n) | (j < 0) | (j >= n)):
        raise ValueError(f"comparison indices must be integers in [0, {n})")
    if np.any((y < 0) | (y > 1)):
        raise ValueError("comparison outcomes y must be in [0, 1]")
    if not l2 > 0:
        raise ValueError("l2 must be > 0: without it the scores are only defined up to a shift")
    D = np.zeros((len(rows), n))  # (m, n): row k is e_i - e_j, so D @ s = s_i - s_j
    np.add.at(D, (np.arange(len(rows)), i), 1.0)
    np.add.at(D, (np.arange(len(rows)), j), -1.0)

    def objective(s: np.ndarray) -> float:
        d = D @ s
        return float(np.sum(y * log_expit(d) + (1 - y) * log_expit(-d)) - 0.5 * l2 * s @ s)

    s = np.zeros(n)
    for _ in range(max_iter):
        q = expit(D @ s)  # (m,) modelled P(i ≻ j)
        grad = D.T @ (y - q) - l2 * s  # (n,)
        H = D.T @ (D * (q * (1 - q))[:, None]) + l2 * np.eye(n)  # (n, n) minus the Hessian, positive definite
        step, t = np.linalg.solve(H, grad), 1.0
        while objective(s + t * step) < objective(s) and t > 1e-6:  # halve until the likelihood does not fall
            t /= 2
        s = s + t * step
        if np.max(np.abs(t * step)) < tol:
            return s - s.mean()
    raise RuntimeError(f"Bradley-Terry fit did not converge to {tol} in {max_iter} Newton steps")


def bt_rl(
    world: ComparisonWorld,
    n_comparisons: int,
    rng: np.random.Generator,
    alpha: float = 0.05,
    reference: np.ndarray | None = None,
) -> dict:
    """The reward-model baseline: fit Bradley-Terry to ``n_comparisons`` sampled comparisons of uniformly drawn
    distinct pairs, then return the KL-regularised RL optimum against the reference policy π_ref (``reference``,
    uniform when None; give it the policy the other learner starts from, so both start at the same place),

        π(i) ∝ π_ref(i) exp(r_i / α)        (Rafailov et al. 2023, arXiv:2305.18290, Eq. 4),

    which is what PPO-style RLHF converges to. α = 0.05 is small next to the score gaps the rater groups produce
    (tenths), so π is close to the reward model's argmax, as a lightly regularised RLHF policy would be; a larger α
    only moves π towards uniform, not towards the Minimax Winner. Returns ``policy`` (n,) and ``scores`` (n,).
    """
    n = world.n
    log_ref = np.zeros(n) if reference is None else np.log(_check_policy(reference, n))  # log π_ref (up to a constant)
    i = rng.integers(n, size=n_comparisons)
    j = (i + rng.integers(1, n, size=n_comparisons)) % n  # uniform over the n - 1 other responses
    y = [world.compare(int(a), int(b), rng) for a, b in zip(i, j)]
    scores = fit_bradley_terry(np.c_[i, j, y], n)
    return {"policy": softmax(log_ref + scores / alpha), "scores": scores}  # Eq. 4


def spo(
    world: ComparisonWorld,
    iterations: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
    init: np.ndarray | None = None,
    max_comparisons: int | None = None,
) -> dict:
    """Self-Play Preference Optimization (Swamy et al. 2024, arXiv:2401.04056), in the form of the paper's practical
    algorithm (sample from the policy, ask for comparisons, reward = win rate, any RL step), with a tabular softmax
    policy π_θ = softmax(θ) over ``world.n`` responses and REINFORCE as the RL step.

    Each iteration t draws ``batch_size`` responses y_1..y_B ~ π_t, asks the rater about every pair of them, and gives
    each sample its win rate against the rest of the batch,

        r_k = 1/(B-1) Σ_{l≠k} 1[y_k ≻ y_l],

    an unbiased estimate of the self-play reward E_{y'~π_t} P(y_k ≻ y'). A REINFORCE step with the batch mean as
    baseline then updates the logits: θ ← θ + lr · 1/B Σ_k (r_k - r̄) ∇_θ log π_θ(y_k).

    The paper's guarantee is for the average iterate of a no-regret learner; the last iterate circles the Minimax
    Winner. Plain softmax policy gradient is not a no-regret learner: its step for response a scales with π(a), so
    the orbit lingers near the simplex's edges, and in the small-lr, exact-reward limit on ``RaterGroups.cyclic()``
    the average settles at an exploitability of 0.010 (from uniform) or 0.022 (from (0.1, 0.1, 0.8)) instead of 0.
    A large lr can also push a response's probability so close to 0 that it is never sampled again.

    Only ``world.compare`` is used. Returns ``last`` (iterations+1, n) iterates π_0..π_T, ``average`` (iterations+1,
    n) their running means, and ``comparisons`` (iterations+1,) the cumulative number of rater queries: pairs of
    equal responses are ties that need no rater and are not counted. With ``max_comparisons`` the run stops after
    the first iteration whose cumulative queries reach it (the arrays are then shorter).
    """
    if batch_size < 2 or iterations < 0 or not lr > 0:
        raise ValueError("need batch_size >= 2 (a sample needs an opponent), iterations >= 0 and lr > 0")
    n = world.n
    if init is not None and (np.shape(init) != (n,) or np.any(np.asarray(init) <= 0)):
        raise ValueError(f"init must be a policy of shape ({n},) with every probability > 0 (θ = log init)")
    theta = np.zeros(n) if init is None else np.log(np.asarray(init, dtype=float))
    last, comparisons = [softmax(theta)], [0]
    for _ in range(iterations):
        if max_comparisons is not None and comparisons[-1] >= max_comparisons:
            break
        pi = softmax(theta)  # (n,) π_t
        ys = rng.choice(n, size=batch_size, p=pi)  # (B,) y_k ~ π_t
        wins, asked = np.zeros((batch_size, batch_size)), 0  # wins[k, l] = 1[y_k ≻ y_l]; the diagonal stays 0
        for k in range(batch_size):
            for m in range(k + 1, batch_size):
                wins[k, m] = world.compare(int(ys[k]), int(ys[m]), rng)
                wins[m, k] = 1.0 - wins[k, m]
                asked += int(ys[k] != ys[m])
        r = wins.sum(1) / (batch_size - 1)  # (B,) r_k, the self-play reward: win rate against the rest of the batch
        score = np.eye(n)[ys] - pi  # (B, n) ∇_θ log π_θ(y_k) for a softmax
        theta = theta + lr * ((r - r.mean())[:, None] * score).mean(0)  # REINFORCE with the batch-mean baseline
        last.append(softmax(theta))
        comparisons.append(comparisons[-1] + asked)
    last = np.array(last)  # (T+1, n)
    average = np.cumsum(last, 0) / np.arange(1, len(last) + 1)[:, None]  # (T+1, n) mean of π_0..π_t
    return {"last": last, "average": average, "comparisons": np.array(comparisons)}
