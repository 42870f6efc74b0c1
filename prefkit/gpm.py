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
    """P (n, n) with P[i, j] = σ(s(v_i ≻ v_j) / τ): P[i, i] = 1/2 and P + Pᵀ = 1 by construction."""
    v = torch.as_tensor(np.asarray(embeddings, dtype=float))
    n = len(v)
    a, b = v.repeat_interleave(n, 0), v.repeat(n, 1)  # all ordered pairs (i, j), i-major
    return torch.sigmoid(gpm_score(a, b) / tau).view(n, n).numpy()


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
