"""Ranking metrics and exact path decoding for list-ranking experiments.

- :func:`kendall_tau`: Kendall's τ-b between two score vectors (ties counted as in scipy's default).
- :func:`ndcg_at_k`: NDCG@k of a predicted order against graded relevance (gain 2^rel - 1, discount 1/log2(rank + 1),
  Järvelin and Kekäläinen 2002), 1 for the ideal order.
- :func:`held_karp_path`: the order of n items that maximises the sum of "j comes right after i" scores S[i, j] over
  consecutive items, an open travelling-salesman path, solved exactly by Held-Karp dynamic programming in
  O(2^n n^2) (n <= 12 here). TSPRank (KDD 2025) decodes its bilinear pair scores this way.
- :class:`BilinearPairScorer`: S[i, j] = h_iᵀ W h_j on item features h (n, d), the pair scorer TSPRank learns.
- :func:`held_karp_batch`: the same exact decoding for a batch of lists at once (vectorised over lists), and
  :func:`path_score`, the total pair score of given orders.
- TSPRank's training objectives (Luo et al., KDD 2025, arXiv:2411.12064; the paper's text was not read, these follow
  its official code): :func:`successor_ce_loss` (local: each item's row of S is a softmax over which item comes right
  after it), :func:`tsp_margin_loss` (global: structured max-margin with loss-augmented Held-Karp decoding), and
  :func:`fit_pair_scorer`, which trains with either or alternates them per epoch ("hybrid", the code's setting for
  the reported TSPRank-Global).
- :class:`ItemScorer`, :class:`PairScorer`: an MLP that scores each item, and an encoder with a bilinear pair head;
  :func:`fit_item_scorer` trains an item scorer with any listwise loss of ``prefkit.losses.ranking``;
  :func:`list_metrics` gives Kendall's τ and the exact-order rate of predicted orders per list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch


def _vector(x, name: str) -> np.ndarray:
    v = np.asarray(x, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"{name} must be one score per item (1-D), got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} has a non-finite value at index {int(np.flatnonzero(~np.isfinite(v))[0])}")
    return v


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's τ-b of two rankings given as scores over the same items: (C - D) / sqrt((P - T_a)(P - T_b)) over the
    P = n(n - 1)/2 pairs, C concordant, D discordant, T_a (T_b) the pairs tied in a (in b). NaN when either side is
    all ties."""
    a, b = _vector(a, "a"), _vector(b, "b")
    if a.shape != b.shape or len(a) < 2:
        raise ValueError(f"need two score vectors of the same length >= 2, got {len(a)} and {len(b)}")
    i, j = np.triu_indices(len(a), 1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    n_pairs = len(i)
    denom = np.sqrt((n_pairs - np.sum(da == 0)) * (n_pairs - np.sum(db == 0)))
    return float(np.sum(da * db) / denom) if denom > 0 else float("nan")


def ndcg_at_k(order: Sequence[int], relevance: Sequence[float], k: int | None = None) -> float:
    """NDCG@k of ``order`` (item indices, best first) against graded ``relevance`` (one value per item, >= 0):
    DCG = Σ_{r=1..k} (2^{rel(order[r])} - 1) / log2(r + 1), divided by the DCG of the items sorted by relevance.
    Returns 0 when no item is relevant."""
    rel = _vector(relevance, "relevance")
    order = np.asarray(order, dtype=int)
    if sorted(order.tolist()) != list(range(len(rel))):
        raise ValueError(f"order must be a permutation of the {len(rel)} items, got {order.tolist()}")
    if np.any(rel < 0):
        raise ValueError(f"relevance must be >= 0, got {rel.min()} at index {int(np.argmin(rel))}")
    k = len(rel) if k is None else k
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    discount = 1.0 / np.log2(np.arange(2, min(k, len(rel)) + 2))
    gain = lambda idx: np.sum((2.0 ** rel[idx[: len(discount)]] - 1.0) * discount)  # noqa: E731
    ideal = gain(np.argsort(-rel, kind="stable"))
    return float(gain(order) / ideal) if ideal > 0 else 0.0


def held_karp_path(S: np.ndarray, max_n: int = 12) -> tuple[list[int], float]:
    """The order of the n items (a Hamiltonian path, open at both ends) maximising Σ_t S[order[t], order[t + 1]],
    and that total, by Held-Karp dynamic programming over (subset, last item): exact, O(2^n n^2) time and O(2^n n)
    memory. Ties go to the lower index at each step. S[i, i] is ignored."""
    S = np.asarray(S, dtype=float)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"S must be a square (n, n) matrix of pair scores, got shape {S.shape}")
    n = len(S)
    if n > max_n:
        raise ValueError(f"exact decoding of {n} items needs 2^{n} subsets; raise max_n (now {max_n}) if you mean it")
    if not np.all(np.isfinite(S[~np.eye(n, dtype=bool)])):
        raise ValueError("S has a non-finite pair score")
    if n == 1:
        return [0], 0.0
    full = (1 << n) - 1
    best = np.full((1 << n, n), -np.inf)
    back = np.full((1 << n, n), -1, dtype=int)
    for i in range(n):
        best[1 << i, i] = 0.0  # a path of one item, starting anywhere
    for mask in range(1, full + 1):
        for last in range(n):
            value = best[mask, last]
            if value == -np.inf:
                continue
            for nxt in range(n):
                if mask >> nxt & 1:
                    continue
                cand = value + S[last, nxt]
                if cand > best[mask | 1 << nxt, nxt]:
                    best[mask | 1 << nxt, nxt], back[mask | 1 << nxt, nxt] = cand, last
    last = int(np.argmax(best[full]))
    total, order, mask = float(best[full, last]), [], full
    while last != -1:
        order.append(last)
        last, mask = int(back[mask, last]), mask & ~(1 << last)
    return order[::-1], total


class BilinearPairScorer(torch.nn.Module):
    """S[i, j] = h_iᵀ W h_j for the items of one list, h (n, d) -> S (n, n): the score that item j comes right after
    item i. W starts at zero (every order scores 0)."""

    def __init__(self, dim: int):
        super().__init__()
        self.W = torch.nn.Parameter(torch.zeros(dim, dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: (n, d) or (B, n, d)
        return h @ self.W @ h.transpose(-1, -2)  # (n, n) or (B, n, n)


def held_karp_batch(S: np.ndarray) -> np.ndarray:
    """:func:`held_karp_path` for a batch: S (B, n, n) -> orders (B, n), each the open Hamiltonian path maximising
    Σ_t S[b, order[t], order[t + 1]], with the same tie-breaking (lower index first). The dynamic programme runs over
    subsets in increasing order and is vectorised over the lists and the last item: best[b, mask, j] =
    max_i best[b, mask without j, i] + S[b, i, j]."""
    S = np.asarray(S, dtype=float)
    if S.ndim != 3 or S.shape[1] != S.shape[2]:
        raise ValueError(f"S must be a batch (B, n, n) of square pair-score matrices, got shape {S.shape}")
    B, n, _ = S.shape
    if n > 12:
        raise ValueError(f"exact decoding of {n} items needs 2^{n} subsets per list; at most 12 here")
    off = ~np.eye(n, dtype=bool)
    if not np.all(np.isfinite(S[:, off])):
        bad = int(np.flatnonzero(~np.isfinite(S[:, off]).all(-1))[0])
        raise ValueError(f"S has a non-finite pair score in list {bad}")
    if n == 1:
        return np.zeros((B, 1), dtype=int)
    full, bits = (1 << n) - 1, 1 << np.arange(n)
    best = np.full((B, 1 << n, n), -np.inf)
    back = np.full((B, 1 << n, n), -1, dtype=np.int64)
    best[:, bits, np.arange(n)] = 0.0  # a path of one item, starting anywhere
    St = S.transpose(0, 2, 1)  # (B, n, n): St[b, j, i] = S[b, i, j]
    for mask in range(1, full + 1):
        if mask & (mask - 1) == 0:
            continue  # single items are the start
        js = np.flatnonzero(mask & bits)  # the possible last items
        prev = mask ^ bits[js]  # (m,) the subset before j was added
        cand = best[:, prev, :] + St[:, js, :]  # (B, m, n): [b, j, i] = best[prev_j, i] + S[i, j]
        back[:, mask, js] = np.argmax(cand, -1)  # first maximum: the lower index on ties
        best[:, mask, js] = np.max(cand, -1)
    last = np.argmax(best[:, full], -1)  # (B,)
    orders, mask, rows = np.empty((B, n), dtype=np.int64), np.full(B, full), np.arange(B)
    for t in range(n - 1, -1, -1):
        orders[:, t] = last
        nxt = back[rows, mask, last]
        mask, last = mask & ~(1 << last), nxt
    return orders


def path_score(S: torch.Tensor, orders: torch.Tensor) -> torch.Tensor:
    """Σ_t S[b, order[t], order[t + 1]]: the total pair score of each list's order. S (B, n, n), orders (B, n) -> (B,)."""
    src, dst = orders[:, :-1], orders[:, 1:]  # (B, n - 1) consecutive items
    return torch.gather(torch.gather(S, 1, src[:, :, None].expand(-1, -1, S.shape[2])), 2, dst[:, :, None]).sum((1, 2))


def _check_orders(S: torch.Tensor, orders: torch.Tensor) -> None:
    if S.dim() != 3 or S.shape[1] != S.shape[2]:
        raise ValueError(f"S must be (B, n, n), got {tuple(S.shape)}")
    if orders.shape != S.shape[:2]:
        raise ValueError(f"orders must be (B, n) = {tuple(S.shape[:2])}, got {tuple(orders.shape)}")
    ok = torch.sort(orders, -1).values == torch.arange(S.shape[1], device=orders.device)
    if not bool(ok.all()):
        bad = int((~ok.all(-1)).nonzero()[0, 0])
        raise ValueError(f"orders[{bad}] = {orders[bad].tolist()} is not a permutation of the {S.shape[1]} items")


def successor_ce_loss(
    S: torch.Tensor,  # (B, n, n) pair scores, S[b, i, j]: j comes right after i
    orders: torch.Tensor,  # (B, n) true orders, item indices best first
) -> torch.Tensor:
    """TSPRank's local objective (Luo et al. 2025, arXiv:2411.12064; as in its official code for event ordering):
    every item but the last has a true successor, and its row of S is read as a softmax over the other items,
    L = (1 / (n - 1)) Σ_{t < n} -log softmax_{j != π_t}(S[π_t, j])[π_{t+1}]. Losses (B,)."""
    _check_orders(S, orders)
    n = S.shape[1]
    eye = torch.eye(n, dtype=torch.bool, device=S.device)
    logp = torch.log_softmax(S.masked_fill(eye, float("-inf")), -1)  # (B, n, n), row i: which item follows i
    src, dst = orders[:, :-1], orders[:, 1:]  # (B, n - 1)
    picked = torch.gather(torch.gather(logp, 1, src[:, :, None].expand(-1, -1, n)), 2, dst[:, :, None])  # (B, n-1, 1)
    return -picked.squeeze(-1).mean(-1)  # (B,)


def tsp_margin_loss(
    S: torch.Tensor,  # (B, n, n) pair scores
    orders: torch.Tensor,  # (B, n) true orders, best first
    decode: Callable[[np.ndarray], np.ndarray] = held_karp_batch,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TSPRank's global objective, a structured max-margin loss (as in its official code): decode the loss-augmented
    problem S + (1 - A*) with A*[i, j] = 1 when j is the true successor of i, so a path pays one for every edge that
    is not a true edge (Δ = the Hamming loss on edges), then

    L = (score(π̂) + Δ(π̂, π*) - score(π*)) / n >= 0,  π̂ = argmax_π score_{S + 1 - A*}(π).

    Gradients reach S through the edges of π̂ and π* only. Returns losses (B,) and the decoded orders π̂ (B, n)."""
    _check_orders(S, orders)
    B, n, _ = S.shape
    gold = torch.zeros_like(S, dtype=torch.bool)
    gold[torch.arange(B)[:, None], orders[:, :-1], orders[:, 1:]] = True  # (B, n, n) A*
    augmented = (S.detach() + (~gold).to(S.dtype)).cpu().numpy()  # (B, n, n)
    pred = torch.as_tensor(decode(augmented), device=S.device)  # (B, n) π̂
    hit = torch.zeros_like(gold)
    hit[torch.arange(B)[:, None], pred[:, :-1], pred[:, 1:]] = True
    delta = ((hit & ~gold).sum((1, 2))).to(S.dtype)  # (B,) edges of π̂ that are not true edges
    return (path_score(S, pred) + delta - path_score(S, orders)) / n, pred  # (B,), (B, n)


class ItemScorer(torch.nn.Module):
    """An MLP giving each item one score: x (..., d) -> (...)."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, n, d)
        return self.net(x).squeeze(-1)  # (B, n)


class PairScorer(torch.nn.Module):
    """TSPRank's pair scorer on an item encoder: h = [A x, MLP(x), 1] (a linear and a non-linear view of each item,
    and a constant, which plays the bilinear layer's bias) and S[i, j] = h_iᵀ W h_j. x (B, n, d) -> S (B, n, n)."""

    def __init__(self, dim: int, hidden: int = 64, width: int = 32):
        super().__init__()
        self.linear = torch.nn.Linear(dim, width, bias=False)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, width))
        self.pair = BilinearPairScorer(2 * width + 1)
        torch.nn.init.normal_(self.pair.W, std=0.01)  # zero W would give the encoder no gradient

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, n, d)
        one = torch.ones_like(x[..., :1])
        return self.pair(torch.cat([self.linear(x), self.mlp(x), one], -1))  # (B, n, n)


def _batches(n: int, size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    return [perm[i : i + size] for i in range(0, n, size)]


def _adam_epochs(
    model: torch.nn.Module, n: int, epochs: int, lr: float, batch_size: int, seed: int,
    batch_loss: Callable[[int, torch.Tensor], torch.Tensor],
) -> list[float]:  # fmt: skip
    """The loop both fits share: Adam over ``epochs`` passes of shuffled batches of the ``n`` lists, minimising
    ``batch_loss(epoch, indices)`` (a scalar); returns the mean loss per epoch."""
    gen, opt, history = torch.Generator().manual_seed(seed), torch.optim.Adam(model.parameters(), lr=lr), []
    for epoch in range(epochs):
        total = 0.0
        for b in _batches(n, batch_size, gen):
            loss = batch_loss(epoch, b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        history.append(total / n)
    return history


def fit_item_scorer(
    model: torch.nn.Module,
    x: torch.Tensor,  # (L, K, d) item features of L training lists
    y: torch.Tensor,  # (L, K) labels, higher is better
    loss_fn: Callable[..., torch.Tensor],
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    loss_kwargs: Callable[[int], dict] | None = None,
) -> list[float]:
    """Adam on the mean of ``loss_fn(model(x_b), y_b, **loss_kwargs(epoch))`` over shuffled batches of lists; returns
    the mean loss per epoch. ``loss_kwargs`` gives per-epoch settings (a skip curriculum)."""
    if x.dim() != 3 or y.shape != x.shape[:2]:
        raise ValueError(f"x must be (L, K, d) and y (L, K), got {tuple(x.shape)} and {tuple(y.shape)}")

    def batch_loss(epoch: int, b: torch.Tensor) -> torch.Tensor:
        return loss_fn(model(x[b]), y[b], **(loss_kwargs(epoch) if loss_kwargs else {})).mean()

    return _adam_epochs(model, len(x), epochs, lr, batch_size, seed, batch_loss)


def fit_pair_scorer(
    model: torch.nn.Module,
    x: torch.Tensor,  # (L, n, d) item features of L training lists
    orders: torch.Tensor,  # (L, n) true orders, best first
    objective: str = "hybrid",
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
) -> list[float]:
    """Adam on TSPRank's objective: ``"local"`` (successor cross-entropy every epoch), ``"global"`` (max-margin with
    Held-Karp in the loop every epoch) or ``"hybrid"`` (local on even epochs, global on odd ones, the official code's
    setting behind the reported TSPRank-Global). Returns the mean loss per epoch."""
    objectives = {"local": ("local",), "global": ("global",), "hybrid": ("local", "global")}
    if objective not in objectives:
        raise ValueError(f"objective must be one of {sorted(objectives)}, got {objective!r}")
    if x.dim() != 3 or orders.shape != x.shape[:2]:
        raise ValueError(f"x must be (L, n, d) and orders (L, n), got {tuple(x.shape)} and {tuple(orders.shape)}")

    def batch_loss(epoch: int, b: torch.Tensor) -> torch.Tensor:
        S = model(x[b])  # (B, n, n)
        local = objectives[objective][epoch % len(objectives[objective])] == "local"
        return (successor_ce_loss(S, orders[b]) if local else tsp_margin_loss(S, orders[b])[0]).mean()

    return _adam_epochs(model, len(x), epochs, lr, batch_size, seed, batch_loss)


def list_metrics(orders: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per list: Kendall's τ-b between a predicted order and the true values (higher is better), and whether the order
    is exactly the true one (ties in ``truth`` accept either order). orders (L, n) best first, truth (L, n) ->
    ``{"tau": (L,), "exact": (L,)}``."""
    orders, truth = np.asarray(orders), np.asarray(truth, dtype=float)
    if orders.shape != truth.shape or orders.ndim != 2:
        raise ValueError(f"orders and truth must both be (L, n), got {orders.shape} and {truth.shape}")
    n = orders.shape[1]
    pred = np.empty_like(truth)
    np.put_along_axis(pred, orders, np.arange(n, 0, -1, dtype=float)[None].repeat(len(orders), 0), 1)
    tau = np.array([kendall_tau(p, t) for p, t in zip(pred, truth)])
    ordered = np.take_along_axis(truth, orders, 1)  # true values in predicted order
    exact = np.all(np.diff(ordered, axis=1) <= 0, axis=1).astype(float)
    return {"tau": tau, "exact": exact}


def scores_to_orders(scores: torch.Tensor) -> np.ndarray:
    """Sort each list by score, best first (stable): scores (L, n) -> orders (L, n)."""
    return torch.sort(scores.detach(), dim=-1, descending=True, stable=True).indices.cpu().numpy()


@torch.no_grad()
def item_orders(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """Orders (L, n) of an item scorer on lists x (L, n, d): each list sorted by score, best first."""
    return scores_to_orders(model(x))


@torch.no_grad()
def pair_orders(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    """Orders (L, n) of a pair scorer on lists x (L, n, d): the exact best open path of each list's S."""
    return held_karp_batch(model(x).cpu().numpy())


def run_arms(
    arms: dict[str, dict],
    x: torch.Tensor,  # (L, n, d) training lists
    labels: torch.Tensor,  # (L, n) training labels, higher is better
    evals: dict[str, tuple[torch.Tensor, np.ndarray]],  # name -> (lists (M, m, d), true values (M, m))
    seed: int,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 32,
    hidden: int = 64,
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Train every arm from the same seed on the same lists and score it on every evaluation set. An arm is
    ``{"loss": fn}`` (an :class:`ItemScorer` trained with a listwise loss, then sorted; optional ``"kwargs"``: epoch ->
    loss settings) or ``{"objective": "local" | "global" | "hybrid"}`` (a :class:`PairScorer` trained with TSPRank's
    objective on the order of ``labels``, decoded by Held-Karp). Returns ``{arm: {eval: list_metrics(...)}}``."""
    orders = torch.sort(labels, dim=-1, descending=True, stable=True).indices  # (L, n) true orders, best first
    results = {}
    for name, arm in arms.items():
        torch.manual_seed(seed)
        fit = dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        if "loss" in arm:
            model = ItemScorer(x.shape[-1], hidden)
            fit_item_scorer(model, x, labels, arm["loss"], loss_kwargs=arm.get("kwargs"), **fit)
            predict = item_orders
        elif "objective" in arm:
            model = PairScorer(x.shape[-1], hidden)
            fit_pair_scorer(model, x, orders, arm["objective"], **fit)
            predict = pair_orders
        else:
            raise ValueError(f"arm {name!r} needs a 'loss' (item scorer) or an 'objective' (pair scorer), got {arm}")
        model.eval()
        results[name] = {ev: list_metrics(predict(model, xe), te) for ev, (xe, te) in evals.items()}
    return results


def skip_curriculum(epochs: int, list_size: int, ramp: float = 0.5) -> Callable[[int], dict]:
    """A skip-wise curriculum for :func:`prefkit.losses.ranking.ranklist_loss`: ``max_skip`` rises linearly from 1
    (adjacent pairs only) to ``list_size - 1`` (the whole list) over the first ``ramp`` of the epochs, then stays."""
    if not 0 < ramp <= 1 or epochs < 1 or list_size < 2:
        raise ValueError(f"need 0 < ramp <= 1, epochs >= 1, list_size >= 2; got {ramp}, {epochs}, {list_size}")
    top = list_size - 1
    return lambda epoch: {"max_skip": min(top, 1 + int(epoch * top / max(1.0, ramp * epochs)))}
