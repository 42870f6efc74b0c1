"""General preference embeddings for a fixed set of responses (the tabular counterpart of a GPM head).

:func:`prefkit.selfplay.fit_bradley_terry` fits one score per response; :func:`fit_preference_embeddings` fits one
vector v_i ∈ R^2k per response to the same comparisons (i, j, y), with P(i ≻ j) = σ(s(v_i ≻ v_j) / τ) and s the
skew-symmetric score of :func:`prefkit.losses.scorer.gpm_score`. Bradley-Terry can only express transitive
preferences; k = 1 already expresses any preference over three responses, a cycle included.
"""

from __future__ import annotations

import numpy as np
import torch

from .losses.scorer import gpm_loss, gpm_score


def fit_preference_embeddings(
    comparisons: np.ndarray,
    n: int,
    k: int = 1,
    tau: float = 1.0,
    l2: float = 1e-3,
    max_iter: int = 500,
    seed: int = 0,
) -> np.ndarray:
    """Embeddings (n, 2k) maximising Σ_rows [y log P(i ≻ j) + (1 - y) log P(j ≻ i)] - (l2 / 2) Σ_i ‖v_i‖² over rows
    (i, j, y) (y = 1 if i won, 0 if j won, 0.5 a tie), by full-batch L-BFGS (strong Wolfe line search) from a small
    random start (``seed``). The likelihood is not concave in v (it is bilinear), hence the iterative fit from a
    start that breaks the symmetry; the ridge keeps v finite when a response never loses. Only identifiable up to a
    rotation within each 2-D block."""
    rows = np.asarray(comparisons, dtype=float).reshape(-1, 3)
    i, j, y = rows[:, 0].astype(int), rows[:, 1].astype(int), rows[:, 2]
    if np.any(rows[:, :2] != np.stack([i, j], 1)) or np.any((i < 0) | (i >= n) | (j < 0) | (j >= n)):
        raise ValueError(f"comparison indices must be integers in [0, {n})")
    if np.any((y < 0) | (y > 1)):
        raise ValueError("comparison outcomes y must be in [0, 1]")
    if k < 1 or not tau > 0:
        raise ValueError(f"need k >= 1 blocks and tau > 0, got k = {k}, tau = {tau}")
    g = torch.Generator().manual_seed(seed)
    v = torch.nn.Parameter(0.1 * torch.randn(n, 2 * k, generator=g, dtype=torch.float64))
    # the cross-entropy is linear in y, so the rows of one ordered pair add up to count x (their mean y): one term
    # per distinct pair (at most n(n - 1)) instead of one per row, the same objective
    pairs, inverse, counts = np.unique(
        np.stack([i, j], 1).reshape(-1, 2), axis=0, return_inverse=True, return_counts=True
    )
    mean_y = np.bincount(inverse.reshape(-1), weights=y, minlength=len(pairs)) / np.maximum(counts, 1)
    ii, jj = torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])
    yy, ww = torch.as_tensor(mean_y), torch.as_tensor(counts, dtype=torch.float64)
    m = max(1, len(rows))
    opt = torch.optim.LBFGS([v], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-10,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")  # fmt: skip

    def objective():
        opt.zero_grad()
        losses, _ = gpm_loss(v[ii], v[jj], tau=tau, strength=yy)
        value = (ww * losses).sum() / m + 0.5 * l2 * (v**2).sum() / m
        value.backward()
        return value

    opt.step(objective)
    return v.detach().numpy()


def preference_matrix(embeddings: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """P (n, n) with P[i, j] = σ(s(v_i ≻ v_j) / τ) = σ(S[i, j] / τ) (:func:`score_matrix`): P[i, i] = 1/2 and
    P + Pᵀ = 1 by construction."""
    return torch.sigmoid(torch.as_tensor(score_matrix(embeddings)) / tau).numpy()


@torch.no_grad()
def response_features(model, tokenizer, prompts, responses, batch_size: int = 64) -> torch.Tensor:
    """The last layer's hidden state at each response's last token (the EOS that closes it), (B, K, H) for B prompts
    with K responses each: what a reward head reads, as the GPM code and TRL's reward models read the last token."""
    from .logps import encode_lists, response_states

    out = []
    for s in range(0, len(prompts), batch_size):
        batch = encode_lists(
            tokenizer, list(prompts[s : s + batch_size]), [list(r) for r in responses[s : s + batch_size]]
        )
        _, hidden = response_states(model, batch, shared_prompt=True)  # (b*K, R, H)
        last = batch["response_mask"].sum(-1) - 1  # (b*K,) the final response token
        feats = hidden[torch.arange(len(last)), last.to(hidden.device)]  # (b*K, H)
        out.append(feats.view(len(batch["prompt_ids"]), -1, feats.shape[-1]).float().cpu())
    return torch.cat(out)


def fit_head(
    chosen: torch.Tensor,  # (N, H) features of the preferred responses
    rejected: torch.Tensor,  # (N, H)
    dim: int = 1,  # 1: a Bradley-Terry reward head; 2k: a general preference head with k blocks
    tau: float = 1.0,
    strength: torch.Tensor | None = None,  # (N,) soft labels P(chosen ≻ rejected)
    steps: int = 500,
    lr: float = 0.01,
    weight_decay: float = 0.0,
    seed: int = 0,
    bias: bool | None = None,
) -> torch.nn.Linear:
    """A linear head on frozen features, fitted by full-batch AdamW: scores ``head(f)`` (N, 1) under
    :func:`prefkit.losses.scorer.bt_scorer_loss`, or embeddings (N, 2k) under :func:`prefkit.losses.scorer.gpm_loss`.

    ``bias`` (default: only for the general preference head; a reward head's bias cancels within a pair): with a bias
    c the score gains the linear terms cᵀRᵀW f_b - cᵀRᵀW f_a, so the head can express any reward difference
    r(a) - r(b) (v = (r, 1)); without one it needs a constant direction in the features, which centred features
    lack (a transitive rule then fails). The official GPM value head has no bias and reads LM states, whose mean is
    far from 0."""
    from .losses.scorer import bt_scorer_loss

    if dim != 1 and (dim < 2 or dim % 2):
        raise ValueError(f"dim must be 1 (Bradley-Terry) or an even number (general preference), got {dim}")
    torch.manual_seed(seed)
    head = torch.nn.Linear(chosen.shape[-1], dim, bias=dim > 1 if bias is None else bias).to(chosen.dtype)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        if dim == 1:
            losses, _ = bt_scorer_loss(head(chosen)[:, 0], head(rejected)[:, 0], tau=tau, strength=strength)
        else:
            losses, _ = gpm_loss(head(chosen), head(rejected), tau=tau, strength=strength)
        opt.zero_grad()
        losses.mean().backward()
        opt.step()
    return head.requires_grad_(False)


def head_prob(head: torch.nn.Linear, a: torch.Tensor, b: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """P(a ≻ b) (N,) under a head from :func:`fit_head`."""
    if head.out_features == 1:
        return torch.sigmoid((head(a) - head(b))[:, 0] / tau)
    return torch.sigmoid(gpm_score(head(a), head(b)) / tau)


def majority_is_transitive(P: np.ndarray) -> bool:
    """Whether the majority relation i ≻ j ⇔ P[i, j] > 1/2 orders the responses (no cycle): a tournament is
    transitive exactly when its win counts are 0, 1, ..., n - 1."""
    wins = (np.asarray(P) > 0.5).sum(1)
    return sorted(wins.tolist()) == list(range(len(P)))


def condorcet_winner(P: np.ndarray) -> int | None:
    """The response that beats every other one by majority (P[w, j] > 1/2 for all j ≠ w), or None. With one, the
    Minimax Winner is that pure response and a reward model can rank it first; without one, the majority's top cycle
    has several responses and the Minimax Winner is mixed."""
    P = np.asarray(P, dtype=float)
    beats = (P > 0.5).sum(1)  # (n,) majority wins of each response
    winners = np.flatnonzero(beats == len(P) - 1)
    return int(winners[0]) if len(winners) else None


def random_rater_groups(n: int, groups: int, rng: np.random.Generator, transitive: bool, tries: int = 10_000):
    """A :class:`prefkit.worlds.raters.RaterGroups` over ``n`` responses with ``groups`` groups, uniformly random
    strict rankings and Dirichlet(1) weights, drawn until its majority is transitive (``transitive=True``) or has a
    cycle (``False``). Raises RuntimeError after ``tries`` draws (e.g. one group can never cycle)."""
    from .worlds.raters import RaterGroups

    names = tuple(chr(ord("A") + i) for i in range(n))
    for _ in range(tries):
        world = RaterGroups(
            [tuple(rng.permutation(n)) for _ in range(groups)], list(rng.dirichlet(np.ones(groups))), names
        )
        P = world.preference_matrix()
        if np.any(np.abs(P - 0.5)[~np.eye(n, dtype=bool)] < 1e-9):
            continue  # an exact tie has no majority
        if majority_is_transitive(P) == transitive:
            return world
    kind = "transitive" if transitive else "cyclic"
    raise RuntimeError(f"no {kind} majority in {tries} draws of {groups} groups over {n} responses")


# ---- GPO: self-play on a general preference score ---------------------------------------------------------------------
#
# Zhang, Zhang, Wu, Xu & Gu 2025, "Beyond Bradley-Terry Models: A General Preference Model for Language Model
# Alignment" (ICML, arXiv:2410.02197), Sec. 5. General Preference Optimization (GPO) is SPPO's self-play with the
# preference score s in place of the win probability minus 1/2: a policy is pulled towards responses that score well
# against its own samples, and the average of its iterates approaches the Minimax Winner (von Neumann winner) of the
# game with payoff s (Theorem 5.1).


def score_matrix(embeddings: np.ndarray) -> np.ndarray:
    """S (n, n) with S[i, j] = s(v_i ≻ v_j) = v_iᵀ Rᵀ v_j (Eq. 4.1) for embeddings (n, 2k), so that
    :func:`preference_matrix` is σ(S / τ). S is skew-symmetric (S = -Sᵀ, zero diagonal) for any embeddings."""
    v = torch.as_tensor(np.asarray(embeddings, dtype=float))  # (n, 2k)
    if v.dim() != 2:
        raise ValueError(f"embeddings must be a (n, 2k) array, got shape {tuple(v.shape)}")
    n = len(v)
    a, b = v.repeat_interleave(n, 0), v.repeat(n, 1)  # (n², 2k) all ordered pairs (i, j), i-major
    return gpm_score(a, b).view(n, n).numpy()  # Eq. 4.1


def check_skew_symmetric(S: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """S as a float (n, n) array, or a ValueError naming the entry that breaks S = -Sᵀ (a score of i over j must be
    minus that of j over i, and a response scores 0 against itself)."""
    S = np.asarray(S, dtype=float)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"a score matrix must be square (n, n), got shape {S.shape}")
    if not np.all(np.isfinite(S)):
        i, j = np.argwhere(~np.isfinite(S))[0]
        raise ValueError(f"score S[{i}, {j}] = {S[i, j]} is not finite")
    gap = np.abs(S + S.T)
    if gap.max() > tol:
        i, j = np.unravel_index(int(gap.argmax()), gap.shape)
        raise ValueError(
            f"S must be skew-symmetric (S[i, j] = -S[j, i], zero diagonal): S[{i}, {j}] = {S[i, j]:.4g} but "
            f"S[{j}, {i}] = {S[j, i]:.4g}"
        )
    return S


def gpo_selfplay(
    S: np.ndarray,  # (n, n) skew-symmetric score, S[i, j] = s(i ≻ j)
    iterations: int,
    beta: float,
    init: np.ndarray | None = None,  # (n,) π_0; uniform when None
    samples: int | None = None,
    rng: np.random.Generator | None = None,
) -> dict:
    """General Preference Optimization (Zhang et al. 2025, arXiv:2410.02197, Sec. 5) on a tabular policy over n
    responses, from a fixed (learned) score matrix S. Each iteration scores every response against the current policy,

        s(y ≻ π_t) = (1/K) Σ_k s(y ≻ y_k),  y_k ~ π_t                       (Eq. 5.2; K = ``samples``),

    or exactly, s(y ≻ π_t) = Σ_j π_t(j) S[y, j], when ``samples`` is None (the K → ∞ limit), and then solves GPO's
    squared loss

        π_{t+1} = argmin_π E_{y~π_t} [(log π(y)/π_t(y) - (s(y ≻ π_t) / β - log Z_t))²]      (Eq. 5.3)

    exactly: a tabular policy reaches zero loss at π_{t+1}(y) = π_t(y) exp(s(y ≻ π_t) / β) / Z_t, the multiplicative-
    weights step the paper reads the loss as (App. B), with Z_t the normaliser (the paper's code sets log Z to 0, which
    a policy of n probabilities cannot follow). The guarantee (Theorem 5.1) is for the *average* of π_1..π_T with
    β = Θ(√T); the last iterate circles the equilibrium when S has a cycle.

    Returns ``last`` (iterations+1, n) π_0..π_T and ``average`` (iterations+1, n) their running means (row t: the mean
    of π_0..π_t)."""
    S = check_skew_symmetric(S)
    n = len(S)
    if iterations < 0 or not beta > 0:
        raise ValueError(f"need iterations >= 0 and beta > 0, got iterations = {iterations}, beta = {beta}")
    if samples is not None and (samples < 1 or rng is None):
        raise ValueError("samples (K opponents per iteration) must be >= 1 and needs an rng; None: exact expectation")
    p = np.full(n, 1.0 / n) if init is None else np.asarray(init, dtype=float)
    if p.shape != (n,) or np.any(p <= 0) or abs(p.sum() - 1) > 1e-6:
        raise ValueError(f"init must be a policy of shape ({n},) with every probability > 0, summing to 1")
    log_p = np.log(p / p.sum())  # (n,) log π_t, up to a constant
    last = np.empty((iterations + 1, n))
    last[0] = np.exp(log_p)
    draws = None if samples is None else rng.random((iterations, samples))  # (T, K) uniforms for y_k ~ π_t
    for t in range(iterations):
        pi = last[t]  # (n,) π_t
        if draws is None:
            s = S @ pi  # (n,) s(y ≻ π_t) = E_{y'~π_t} s(y ≻ y')
        else:
            ys = np.minimum(np.searchsorted(np.cumsum(pi), draws[t], side="right"), n - 1)  # (K,) y_k ~ π_t
            s = S[:, ys].mean(1)  # (n,) Eq. 5.2: mean score against the K samples
        log_p = log_p + s / beta  # Eq. 5.3 at its zero-loss solution: log π_{t+1} = log π_t + s / β - log Z_t
        log_p -= log_p.max()  # keeps exp finite; the constant is absorbed into Z_t
        q = np.exp(log_p)
        last[t + 1] = q / q.sum()  # / Z_t
    average = np.cumsum(last, 0) / np.arange(1, iterations + 2)[:, None]  # (T+1, n)
    return {"last": last, "average": average}


def sample_comparisons(world, n_comparisons: int, rng: np.random.Generator) -> np.ndarray:
    """Rows (i, j, y) (m, 3): uniformly drawn distinct pairs, each judged once by ``world.compare``. The draws are
    made in the order :func:`prefkit.selfplay.bt_rl` makes them, so the same rng state gives both the same rows."""
    n = world.n
    i = rng.integers(n, size=n_comparisons)
    j = (i + rng.integers(1, n, size=n_comparisons)) % n  # uniform over the n - 1 other responses
    y = [world.compare(int(a), int(b), rng) for a, b in zip(i, j)]
    return np.c_[i, j, y].reshape(-1, 3)


def gpo(
    world,
    n_comparisons: int,
    rng: np.random.Generator,
    iterations: int,
    beta: float,
    k: int = 1,
    tau: float = 1.0,
    l2: float = 1e-3,
    max_iter: int = 100,
    init: np.ndarray | None = None,
    samples: int | None = None,
    fit_seed: int = 0,
) -> dict:
    """The GPM + GPO pipeline (Zhang et al. 2025, arXiv:2410.02197, Secs. 4-5) at a budget of rater comparisons: ask
    ``world.compare`` about ``n_comparisons`` uniformly drawn distinct pairs (:func:`sample_comparisons`), fit
    preference embeddings with k blocks to them (:func:`fit_preference_embeddings`), then run
    :func:`gpo_selfplay` on the fitted log-odds S / τ (so P̂ = σ(S / τ)), which asks the rater nothing more.

    Returns ``policy`` (n,) the average iterate (the policy Theorem 5.1 is about), ``last`` (n,) the last iterate,
    ``P`` (n, n) the fitted preference matrix and ``comparisons`` (m, 3) the rows it was fitted to."""
    rows = sample_comparisons(world, n_comparisons, rng)
    v = fit_preference_embeddings(rows, world.n, k=k, tau=tau, l2=l2, max_iter=max_iter, seed=fit_seed)
    run = gpo_selfplay(score_matrix(v) / tau, iterations, beta, init=init, samples=samples, rng=rng)
    return {"policy": run["average"][-1], "last": run["last"][-1], "P": preference_matrix(v, tau), "comparisons": rows}


class PreferenceMatrixWorld:
    """A world that answers comparisons from a given preference matrix P (n, n): ``compare(i, j)`` is 1 with
    probability P[i, j]. :meth:`bradley_terry` builds one that *is* a Bradley-Terry model, P[i, j] = σ(r_i - r_j)."""

    def __init__(self, P: np.ndarray):
        from .selfplay import check_preference_matrix

        self.P = check_preference_matrix(P)
        self.n = len(self.P)

    @classmethod
    def bradley_terry(cls, rewards: np.ndarray) -> PreferenceMatrixWorld:
        r = np.asarray(rewards, dtype=float)  # (n,)
        return cls(1 / (1 + np.exp(-(r[:, None] - r[None, :]))))

    def preference_matrix(self) -> np.ndarray:
        return self.P.copy()

    def compare(self, i: int, j: int, rng: np.random.Generator) -> float:
        if i == j:
            return 0.5
        return float(rng.random() < self.P[i, j])
