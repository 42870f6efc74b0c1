"""Prefer to Classify (P2C): a text classifier trained with auxiliary pairwise preferences.

Kim, Shin, Kang 2023, "Prefer to Classify: Improving Text Classifiers via Auxiliary Preference Learning", ICML,
arXiv:2306.04925; official code github.com/minnesotanlp/p2c (``model.py``, ``src/train.py``, ``sampling.py``).

Two inputs x1, x2 with the same label y are compared: "which is more {y}?", with target t = 1 (x1), 0 (x2) or 1/2
(a tie). H preference heads f_h score [features; label] with an MLP ending in tanh, and on top of the classifier's
cross-entropy the model learns

    Eq. 1   P_h(x1 ≻ x2 | y) = exp f_h(x1, y) / (exp f_h(x1, y) + exp f_h(x2, y)) = σ(f_h(x1, y) - f_h(x2, y))
    Eq. 2   L_pref = (1/H) Σ_h CE((t, 1 - t), (P_h(x1 ≻ x2), P_h(x2 ≻ x1)))
    Eq. 3   L_div  = 1/(H(H-1)) Σ_{h≠h'} CE(sg[P_h], P_h')        (sg: stop-gradient; subtracted in Eq. 5)
    Eq. 4   L_cons = max(0, m - Δ) if t = 1,  max(0, m + Δ) if t = 0,  |Δ| if t = 1/2,
            Δ = p(y | x1) - p(y | x2)                    (the classifier's probabilities of the pair's label y)
    Eq. 4b  L_cons = Σ_k [Δv_k ≥ 0] max(0, Δv_k - Δp_k) + [Δv_k < 0] max(0, Δp_k - Δv_k)   (annotation records:
            Δv, Δp the vote-share and probability gaps of the pair on every class k)
    Eq. 5   L = L_cls + λ_cons L_cons + λ_pref L_pref - λ_div L_div

The equation numbers are this module's (in the order the method is presented); each line follows the official
``src/train.py`` (``train_preference`` and ``diversity_loss``): consistency is a hinge with no margin there (m = 0),
ties are pulled to equal probabilities, the diversity term is a cross-entropy between heads with the first head's
probabilities detached, maximised (subtracted) so that the heads stay different. For annotation records the official
run (``run_extractive.sh``: ``--sampling disagreement --pair_loss``; ``src/train_ext.py``) replaces Eq. 4 by Eq. 4b,
a margin on the soft vote-share differences, and re-picks each input's partner every epoch where the heads disagree
(:func:`train_p2c_records`). Because each head ends in tanh,
f_h ∈ [-1, 1] and P_h ∈ [σ(-2), σ(2)], which keeps the subtracted L_div bounded.

Pairs are drawn within one (observed) class, at random (:func:`random_pairs`) or where the heads disagree
(:func:`disagreement_pairs`, after the official ``sampling.py``). Preferences can come from annotation records
(:func:`preferences_from_votes`: more votes for the label is preferred), from crowd comparisons, or from an LLM
asked which sentence is more {label} (see :mod:`prefkit.worlds.sentiment` for simulated ones).

This is a classifier, not a generator: it trains on fixed encoder features (:mod:`prefkit.encoders`) through a small
trainable top, with its own loop (:func:`train_p2c`), and leaves the language-model contracts of prefkit alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import PreferenceDataError

Tensor = torch.Tensor


@dataclass
class P2CConfig:
    n_heads: int = 3  # H preference heads (official model.py: net_prefs1..3)
    lambda_pref: float = 1.0  # λ_pref (official common.py default)
    lambda_cons: float = 1.0  # λ_cons (official run_subjective.sh: cons=1.0)
    lambda_div: float = 0.1  # λ_div (official run_subjective.sh: div=0.1; common.py default 1.0)
    margin: float = 0.0  # m of the consistency hinge (official src/train.py: none, i.e. 0)
    head_layers: int = 2  # hidden Linear+ReLU layers per head, as wide as the features (official model.py: 2)
    label_encoding: str = "index"  # label input of a head: "index" = y·1 as wide as the features (official), "onehot"
    dropout: float = 0.1  # before the classifier (official model.py)
    hidden: int = 768  # width of the trainable top (ours: the paper fine-tunes all of RoBERTa-base, width 768)
    lr: float = 1e-5  # Adam, no weight decay (official train_*.py, model_lr for fine-tuning RoBERTa)
    batch_size: int = 16  # labelled inputs per step, and as many pairs (official common.py)
    epochs: int = 20  # passes over the labelled inputs (official common.py)


# ---------------------------------------------------------------------------------------------------- losses


def preference_probs(s1: Tensor, s2: Tensor) -> Tensor:
    """Eq. 1: P_h(x1 ≻ x2) per head from scores ``s1``, ``s2`` (H, B) of the two inputs; returns (H, B)."""
    return torch.sigmoid(s1 - s2)  # Eq. 1  softmax over the two scores


def preference_loss(s1: Tensor, s2: Tensor, target: Tensor) -> Tensor:
    """Eq. 2 of Kim et al. 2023 (arXiv:2306.04925): cross-entropy of each head's P(x1 ≻ x2) against the target,
    averaged over heads.

    s1, s2: (H, B) head scores f_h(x, y) of x1 and x2; target: (B,) P(x1 ≻ x2) wanted, 1, 0 or 1/2 for a tie.
    Returns (B,) per-pair losses. With s1 = s2 it is ln 2 for any target.
    """
    log_p1 = F.logsigmoid(s1 - s2)  # (H, B) log P_h(x1 ≻ x2), Eq. 1
    log_p2 = F.logsigmoid(s2 - s1)  # (H, B) log P_h(x2 ≻ x1)
    return -(target * log_p1 + (1 - target) * log_p2).mean(0)  # Eq. 2


def diversity_loss(s1: Tensor, s2: Tensor) -> Tensor:
    """Eq. 3 of Kim et al. 2023: mean over ordered pairs of different heads (h, h') of CE(sg[P_h], P_h'), the
    cross-entropy of head h' against head h's detached preference distribution. P2C *subtracts* it (Eq. 5), so the
    heads are pushed apart. One head has no pair: the term is 0.

    s1, s2: (H, B) head scores. Returns (B,).
    """
    H = s1.shape[0]
    if H < 2:
        return s1.new_zeros(s1.shape[1])
    log_p = torch.stack([F.logsigmoid(s1 - s2), F.logsigmoid(s2 - s1)], -1)  # (H, B, 2)
    p = log_p.detach().exp()  # (H, B, 2) sg[P_h]
    ce = -(p[:, None] * log_p[None]).sum(-1)  # (H, H, B): ce[h, h'] = CE(sg[P_h], P_h')
    off = ~torch.eye(H, dtype=torch.bool, device=s1.device)  # (H, H) h ≠ h'
    return ce[off].mean(0)  # Eq. 3


def consistency_loss(p1: Tensor, p2: Tensor, target: Tensor, margin: float = 0.0) -> Tensor:
    """Eq. 4 of Kim et al. 2023: the classifier must agree with the preference. The preferred input should have the
    higher probability of the (shared) label, by ``margin``; a tie asks for equal probabilities.

    p1, p2: (B,) classifier probabilities p(y | x1), p(y | x2) of the pair's label; target: (B,) 1, 0 or 1/2 (a soft
    target counts for the side it leans to). Returns (B,).
    """
    delta = p1 - p2  # (B,) Δ
    win = F.relu(margin - delta)  # x1 preferred: Δ ≥ m costs nothing
    lose = F.relu(margin + delta)  # x2 preferred: Δ ≤ -m costs nothing
    return torch.where(target > 0.5, win, torch.where(target < 0.5, lose, delta.abs()))  # Eq. 4


def vote_margin_loss(p1: Tensor, p2: Tensor, v1: Tensor, v2: Tensor) -> Tensor:
    """Eq. 4b, the consistency term of Kim et al. 2023 for annotation records (official ``src/train_ext.py``,
    ``train_preference_extractive`` with ``--pair_loss``): on every class k the classifier's probability gap
    Δp_k = p_k(x1) - p_k(x2) must reach the vote-share gap Δv_k = v_k(x1) - v_k(x2) on the same side,

        L_cons = Σ_k [Δv_k ≥ 0] max(0, Δv_k - Δp_k) + [Δv_k < 0] max(0, Δp_k - Δv_k).

    As in the official code an equal share (Δv_k = 0, e.g. a class neither sentence got a vote for) falls on the
    first side and asks Δp_k ≥ 0; the pair's order is random, so this pull has no preferred direction on average.

    p1, p2: (B, C) classifier probabilities of x1 and x2; v1, v2: (B, C) their vote shares. Returns (B,).
    """
    dv = v1 - v2  # (B, C) Δv
    dp = p1 - p2  # (B, C) Δp
    return torch.where(dv >= 0, F.relu(dv - dp), F.relu(dp - dv)).sum(-1)  # Eq. 4b


def p2c_objective(l_cls: Tensor, l_cons: Tensor, l_pref: Tensor, l_div: Tensor, lambda_cons: float,
                  lambda_pref: float, lambda_div: float) -> Tensor:  # fmt: skip
    """Eq. 5 of Kim et al. 2023: L = L_cls + λ_cons L_cons + λ_pref L_pref - λ_div L_div, from the four terms
    already reduced by the caller (scalars: the labelled batch and the pair batch need not have the same size)."""
    return l_cls + lambda_cons * l_cons + lambda_pref * l_pref - lambda_div * l_div  # Eq. 5


# ---------------------------------------------------------------------------------------------------- model


class PreferenceHeads(nn.Module):
    """H heads f_h(x, y), each [features; label input] -> (Linear, ReLU) x layers -> Linear -> tanh, a score in
    [-1, 1] (official ``model.py``: ``net_prefs1..3``). The H heads' weights are stacked so one batched matmul runs
    them all; head h alone is ``x -> relu(x W_h[0] + b_h[0]) -> ... -> tanh(. W_h[-1] + b_h[-1])``."""

    def __init__(self, n_heads: int, in_dim: int, width: int, layers: int = 2):
        super().__init__()
        dims = [in_dim] + [width] * layers + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:]):
            lin = [nn.Linear(a, b) for _ in range(n_heads)]  # nn.Linear's initialisation, per head
            self.weights.append(nn.Parameter(torch.stack([m.weight.data.T for m in lin])))  # (H, a, b)
            self.biases.append(nn.Parameter(torch.stack([m.bias.data for m in lin])[:, None]))  # (H, 1, b)
        self.n_heads = n_heads

    def forward(self, z: Tensor) -> Tensor:  # (B, in_dim) -> (H, B)
        out = z.expand(self.n_heads, *z.shape)  # (H, B, in_dim)
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            out = torch.baddbmm(b, out, w)  # (H, B, out)
            out = torch.relu(out) if k < len(self.weights) - 1 else torch.tanh(out)
        return out[..., 0]


class P2CModel(nn.Module):
    """Frozen encoder features (N, d) -> a trainable top h (N, hidden) -> the classifier's logits, and H preference
    heads on [h; label]. The top stands in for the fine-tuned encoder the heads and the classifier share."""

    def __init__(self, in_dim: int, n_classes: int, config: P2CConfig | None = None):
        super().__init__()
        c = config or P2CConfig()
        if c.n_heads < 1:
            raise ValueError(f"n_heads must be >= 1, got {c.n_heads} (train without pairs for the baseline)")
        if c.label_encoding not in ("index", "onehot"):
            raise ValueError(f"label_encoding must be 'index' or 'onehot', got {c.label_encoding!r}")
        self.n_classes, self.label_encoding = n_classes, c.label_encoding
        self.top = nn.Sequential(nn.Linear(in_dim, c.hidden), nn.GELU())
        self.drop = nn.Dropout(c.dropout)
        self.cls = nn.Linear(c.hidden, n_classes)
        label_dim = c.hidden if c.label_encoding == "index" else n_classes
        # built last, so the top and the classifier start the same whatever the number of heads
        self.heads = PreferenceHeads(c.n_heads, c.hidden + label_dim, c.hidden, c.head_layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # (B, d) -> logits (B, C), h (B, hidden)
        h = self.top(x)
        return self.cls(self.drop(h)), h

    def scores(self, h: Tensor, y: Tensor) -> Tensor:  # (B, hidden), (B,) -> (H, B)
        """f_h(x, y) of every head."""
        if self.label_encoding == "index":  # official: the label index broadcast to the feature width
            lab = y.to(h.dtype)[:, None].expand_as(h)  # (B, hidden)
        else:
            lab = F.one_hot(y, self.n_classes).to(h.dtype)  # (B, C)
        return self.heads(torch.cat([h, lab], -1))  # (H, B)


# ---------------------------------------------------------------------------------------------------- data


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_labels(labels, n: int, n_classes: int, field: str = "label") -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise PreferenceDataError(None, field, f"must have shape ({n},), got {y.shape}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating) or y.dtype == bool):
        raise PreferenceDataError(None, field, f"must hold class indices, got dtype {y.dtype}")
    yf = y.astype(float)
    bad = ~np.isfinite(yf) | (yf != np.round(yf)) | (yf < 0) | (yf >= n_classes)
    if bad.any():
        i = _first(bad)
        raise PreferenceDataError(i, field, f"must be a class index in [0, {n_classes}), got {y[i]}")
    return y.astype(np.int64)


def check_inputs(features, labels, n_classes: int) -> tuple[Tensor, Tensor]:
    """Finite float features (N, d) and integer labels (N,) in [0, n_classes); raises :class:`PreferenceDataError`
    naming the first bad row."""
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    if x.ndim != 2:
        raise PreferenceDataError(None, "features", f"must have shape (N, d), got {tuple(x.shape)}")
    bad = (~torch.isfinite(x)).any(1)
    if bad.any():
        raise PreferenceDataError(_first(bad.numpy()), "features", "is not finite")
    return x, torch.as_tensor(_check_labels(labels, len(x), n_classes))


def check_pairs(pairs, targets, labels) -> tuple[Tensor, Tensor]:
    """Pairs (P, 2) of distinct indices into the labelled inputs, both of the same label, and targets (P,) in
    [0, 1]; raises :class:`PreferenceDataError` naming the first bad row and its field (x1, x2 or target)."""
    y = np.asarray(labels)
    n = len(y)
    pr = np.asarray(pairs)
    t = np.asarray(targets, dtype=float)
    if pr.size == 0 and t.size == 0:
        return torch.zeros(0, 2, dtype=torch.long), torch.zeros(0)
    if pr.ndim != 2 or pr.shape[1] != 2:
        raise PreferenceDataError(None, "pairs", f"must have shape (P, 2), got {pr.shape}")
    if t.shape != (len(pr),):
        raise PreferenceDataError(None, "target", f"must have shape ({len(pr)},), got {t.shape}")
    pf = pr.astype(float)
    for col, f in ((0, "x1"), (1, "x2")):
        bad = ~np.isfinite(pf[:, col]) | (pf[:, col] != np.round(pf[:, col])) | (pf[:, col] < 0) | (pf[:, col] >= n)
        if bad.any():
            r = _first(bad)
            raise PreferenceDataError(r, f, f"index {pr[r, col]} is out of range for {n} labelled inputs")
    pr = pr.astype(np.int64)
    if (same := pr[:, 0] == pr[:, 1]).any():
        r = _first(same)
        raise PreferenceDataError(r, "x2", f"pairs input {pr[r, 0]} with itself")
    if (cross := y[pr[:, 0]] != y[pr[:, 1]]).any():
        r = _first(cross)
        raise PreferenceDataError(r, "x2", f"has label {y[pr[r, 1]]} but x1 has {y[pr[r, 0]]}: P2C compares inputs "
                                  "of the same class")  # fmt: skip
    if (bad := ~np.isfinite(t) | (t < 0) | (t > 1)).any():
        r = _first(bad)
        raise PreferenceDataError(r, "target", f"must be a probability in [0, 1], got {t[r]}")
    return torch.as_tensor(pr), torch.as_tensor(t, dtype=torch.float32)


def preferences_from_votes(fractions, labels, pairs) -> np.ndarray:
    """Preferences extracted from annotation records: for a pair of inputs labelled y, the one with the larger share of
    votes for y is preferred, equal shares are a tie. ``fractions`` (N, C) vote shares, ``labels`` (N,), ``pairs``
    (P, 2). Returns targets (P,) in {1, 0, 1/2}."""
    fr = np.asarray(fractions, dtype=float)
    if fr.ndim != 2:
        raise PreferenceDataError(None, "votes", f"must have shape (N, C), got {fr.shape}")
    if (bad := ~np.isfinite(fr).all(1)).any():
        i = _first(bad)
        raise PreferenceDataError(i, "votes", f"holds a non-finite vote share: {fr[i].tolist()}")
    pr, _ = check_pairs(pairs, np.full(len(pairs), 0.5), labels)
    pr = pr.numpy()
    y = np.asarray(labels)[pr[:, 0]]
    a, b = fr[pr[:, 0], y], fr[pr[:, 1], y]
    return np.where(a > b, 1.0, np.where(a < b, 0.0, 0.5))


def _class_pairs(labels: np.ndarray) -> np.ndarray:
    """Every unordered within-class pair (i < j), (M, 2)."""
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        a, b = np.triu_indices(len(idx), 1)
        out.append(np.stack([idx[a], idx[b]], 1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def random_pairs(labels, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``n_pairs`` distinct pairs (P, 2) drawn uniformly from all within-class pairs of ``labels``, each in a random
    order. The first k rows of a draw are a uniform draw of k, so budgets can be nested."""
    cand = _class_pairs(np.asarray(labels))
    if n_pairs > len(cand):
        raise ValueError(f"asked for {n_pairs} pairs but the labels allow only {len(cand)} within-class pairs")
    pick = cand[rng.choice(len(cand), n_pairs, replace=False)]
    flip = rng.random(n_pairs) < 0.5
    return np.where(flip[:, None], pick[:, ::-1], pick).astype(np.int64)


@torch.no_grad()
def disagreement_pairs(model: P2CModel, features, labels, n_pairs: int, rng: np.random.Generator,
                       exclude=None) -> np.ndarray:  # fmt: skip
    """The ``n_pairs`` within-class pairs whose order the preference heads disagree on most (random among equals),
    skipping the pairs in ``exclude``: the disagreement-based sampling of Kim et al. 2023 (official ``sampling.py``
    counts, for every candidate pair, the pairs of heads whose predicted orders differ). With a budget of queries the
    pairs are chosen here and then labelled; the official code instead picks one partner per input each epoch from
    preferences known for every pair."""
    x, y = check_inputs(features, labels, model.n_classes)
    model.eval()
    s = model.scores(model(x)[1], y)  # (H, N)
    cand = _class_pairs(y.numpy())
    if exclude is not None and len(exclude):
        seen = {(int(min(i, j)), int(max(i, j))) for i, j in np.asarray(exclude)}
        cand = cand[[tuple(c) not in seen for c in cand.tolist()]] if len(cand) else cand
    if n_pairs > len(cand):
        raise ValueError(f"asked for {n_pairs} pairs but only {len(cand)} unused within-class pairs remain")
    order = torch.sign(s[:, cand[:, 0]] - s[:, cand[:, 1]])  # (H, M): each head's order of each pair
    H = len(order)
    dis = sum((order[a] != order[b]).float() for a in range(H) for b in range(a + 1, H)) if H > 1 else 0.0
    key = torch.as_tensor(dis, dtype=torch.float64) + torch.as_tensor(rng.random(len(cand))) * 0.5  # random tie-break
    return cand[key.argsort(descending=True)[:n_pairs].numpy()]


def _class_members(labels: np.ndarray) -> list[np.ndarray]:
    """Indices of each class present in ``labels``; every class needs two members to form a pair."""
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            raise ValueError(f"class {c} has {len(idx)} labelled input(s); a within-class partner needs at least 2")
        out.append(idx)
    return out


def random_partners(labels, rng: np.random.Generator) -> np.ndarray:
    """One partner per input (N,): another input of the same label, uniformly (the official per-epoch random
    partners, ``pref_gen.ipynb``'s ``idx_pref_random20``)."""
    y = np.asarray(labels)
    out = np.empty(len(y), dtype=np.int64)
    for idx in _class_members(y):
        k = rng.integers(0, len(idx) - 1, size=len(idx))  # a position among the other len(idx) - 1 members
        k += k >= np.arange(len(idx))  # skip the input itself
        out[idx] = idx[k]
    return out


def disagreement_partners(scores, labels, rng: np.random.Generator) -> np.ndarray:
    """One partner per input (N,): the input of the same label whose order against it the preference heads disagree
    on most, uniformly among the most disagreed (official ``sampling.py``, ``select_ensemble`` with
    ``--sampling disagreement``). A head orders (i, j) by sign(f_h(x_i) - f_h(x_j)) (equal scores are a third order);
    the disagreement of (i, j) is the number of pairs of heads whose orders differ.

    scores: (H, N) head scores f_h(x_i, y_i), as recorded in the last epoch. With one head there is no disagreement
    and the partner is random. An input is never its own partner (the official code excludes it only by giving it
    no disagreement)."""
    f = torch.as_tensor(np.asarray(scores), dtype=torch.float64)
    y = np.asarray(labels)
    if f.ndim != 2 or f.shape[1] != len(y):
        raise ValueError(f"scores must have shape (H, {len(y)}), got {tuple(f.shape)}")
    out = np.empty(len(y), dtype=np.int64)
    H = f.shape[0]
    for idx in _class_members(y):
        g = f[:, idx]  # (H, n)
        order = torch.sign(g[:, :, None] - g[:, None, :])  # (H, n, n) each head's order of (i, j)
        dis = sum((order[a] != order[b]).double() for a in range(H) for b in range(a + 1, H)) if H > 1 else 0.0
        dis = torch.as_tensor(dis, dtype=torch.float64).expand(len(idx), len(idx)).clone()  # (n, n)
        dis += torch.as_tensor(rng.random((len(idx), len(idx)))) * 0.5  # uniform among the most disagreed
        dis.fill_diagonal_(-1.0)  # never itself
        out[idx] = idx[dis.argmax(1).numpy()]
    return out


def permute_within_class(labels, rng: np.random.Generator) -> np.ndarray:
    """A permutation π (N,) with labels[π[i]] == labels[i]: gives each input another same-label input's annotation
    record, for a control that keeps every statistic of the records but their link to the inputs."""
    y = np.asarray(labels)
    out = np.arange(len(y))
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        out[idx] = rng.permutation(idx)
    return out


def _check_fractions(fractions, n: int, n_classes: int) -> Tensor:
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (n, n_classes):
        raise PreferenceDataError(None, "votes", f"must have shape ({n}, {n_classes}), got {fr.shape}")
    bad = ~np.isfinite(fr).all(1) | (fr < 0).any(1) | (np.abs(fr.sum(1) - 1) > 1e-6)
    if bad.any():
        i = _first(bad)
        raise PreferenceDataError(i, "votes", f"must be vote shares (>= 0, summing to 1), got {fr[i].tolist()}")
    return torch.as_tensor(fr, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------- training


def train_p2c(features, labels, n_classes: int, pairs=None, targets=None, config: P2CConfig | None = None,
              seed: int = 0, progress: bool = False, desc: str = "P2C") -> tuple[P2CModel, pd.DataFrame]:  # fmt: skip
    """Train a :class:`P2CModel` on labelled features and within-class preference pairs (indices into them).

    Every step takes ``batch_size`` labelled inputs for L_cls and, when there are pairs, ``batch_size`` pairs
    (uniformly, with replacement) for L_pref, L_cons and L_div; the number of steps depends only on the labelled set
    (``epochs`` passes), so arms with and without pairs get the same number of updates. Returns the model (in eval
    mode) and a per-step history of the four terms.
    """
    c = config or P2CConfig()
    x, y = check_inputs(features, labels, n_classes)
    pr, t = check_pairs(np.zeros((0, 2)) if pairs is None else pairs,
                        np.zeros(0) if targets is None else targets, y.numpy())  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = P2CModel(x.shape[1], n_classes, c)
    opt = torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=0.0, foreach=True)
    use_pairs = len(pr) > 0
    steps_per_epoch = math.ceil(len(x) / c.batch_size)
    rows = []
    model.train()
    bar = tqdm(total=c.epochs * steps_per_epoch, desc=desc, disable=not progress, leave=False)
    for _ in range(c.epochs):
        perm = torch.randperm(len(x), generator=g)
        for b in range(steps_per_epoch):
            idx = perm[b * c.batch_size : (b + 1) * c.batch_size]
            if not use_pairs:
                logits, _ = model(x[idx])
                l_cls = F.cross_entropy(logits, y[idx])
                l_cons = l_pref = l_div = l_cls.new_zeros(())
            else:
                k = torch.randint(len(pr), (c.batch_size,), generator=g)
                i, j, tk = pr[k, 0], pr[k, 1], t[k]
                yk = y[i]
                logits, h = model(torch.cat([x[idx], x[i], x[j]]))  # one forward: labelled batch, x1, x2
                logits, lg1, lg2 = logits.split([len(idx), len(k), len(k)])
                _, h1, h2 = h.split([len(idx), len(k), len(k)])
                l_cls = F.cross_entropy(logits, y[idx])
                s1, s2 = model.scores(h1, yk), model.scores(h2, yk)  # (H, B)
                p1 = lg1.softmax(-1).gather(1, yk[:, None])[:, 0]  # (B,) p(y | x1)
                p2 = lg2.softmax(-1).gather(1, yk[:, None])[:, 0]  # (B,) p(y | x2)
                l_pref = preference_loss(s1, s2, tk).mean()
                l_cons = consistency_loss(p1, p2, tk, c.margin).mean()
                l_div = diversity_loss(s1, s2).mean()
            loss = p2c_objective(l_cls, l_cons, l_pref, l_div, c.lambda_cons, c.lambda_pref, c.lambda_div)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            rows.append(torch.stack([l_cls, l_pref, l_cons, l_div, loss]).detach())
            bar.update()
    bar.close()
    model.eval()
    hist = pd.DataFrame(torch.stack(rows).numpy(), columns=["cls", "pref", "cons", "div", "loss"])
    hist.insert(0, "step", range(len(hist)))
    return model, hist


def train_p2c_records(features, labels, n_classes: int, fractions, config: P2CConfig | None = None, seed: int = 0,
                      sampling: str = "disagreement") -> tuple[P2CModel, pd.DataFrame]:  # fmt: skip
    """P2C on annotation records as the official code runs it (``train_extractive.py`` with ``--pref_type ext
    --sampling disagreement --pair_loss``, ``src/train_ext.py``): every epoch each labelled input x1 gets one
    partner x2 of its label, and one pass over the inputs trains

        L = ½ CE(x1) + ½ CE(x2) + λ_cons L_cons (Eq. 4b, vote shares) + λ_pref L_pref - λ_div L_div,

    with the preference target from the shares of the label (:func:`preferences_from_votes`; equal shares a tie).
    The first epoch's partners are random; later ones come from :func:`disagreement_partners` on the head scores
    recorded during the previous epoch (``sampling="disagreement"``), or are drawn afresh at random
    (``sampling="random"``, the official run without ``--sampling``). ``fractions`` (N, C): vote shares. Same number
    of steps as :func:`train_p2c` without pairs (``epochs`` passes of ``batch_size``). Returns the model (eval mode)
    and the per-step history."""
    c = config or P2CConfig()
    if sampling not in ("disagreement", "random"):
        raise ValueError(f"sampling must be 'disagreement' or 'random', got {sampling!r}")
    x, y = check_inputs(features, labels, n_classes)
    v = _check_fractions(fractions, len(x), n_classes)  # (N, C)
    vy = v.gather(1, y[:, None])[:, 0]  # (N,) share of the votes for the input's label
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = P2CModel(x.shape[1], n_classes, c)
    opt = torch.optim.Adam(model.parameters(), lr=c.lr, weight_decay=0.0, foreach=True)
    recorded = torch.zeros(c.n_heads, len(x))  # (H, N) f_h(x1, y) of every anchor, as seen in its epoch
    rows = []
    model.train()
    for epoch in range(c.epochs):
        first = epoch == 0 or sampling == "random"
        partner = torch.as_tensor(random_partners(y.numpy(), rng) if first else
                                  disagreement_partners(recorded, y.numpy(), rng))  # fmt: skip
        perm = torch.randperm(len(x), generator=g)
        for b in range(math.ceil(len(x) / c.batch_size)):
            i = perm[b * c.batch_size : (b + 1) * c.batch_size]
            j, yk = partner[i], y[i]
            t = torch.where(vy[i] > vy[j], 1.0, torch.where(vy[i] < vy[j], 0.0, 0.5))  # (B,) from the records
            logits, h = model(torch.cat([x[i], x[j]]))
            lg1, lg2 = logits.chunk(2)
            h1, h2 = h.chunk(2)
            l_cls = 0.5 * F.cross_entropy(lg1, yk) + 0.5 * F.cross_entropy(lg2, yk)
            s1, s2 = model.scores(h1, yk), model.scores(h2, yk)  # (H, B)
            l_pref = preference_loss(s1, s2, t).mean()
            l_cons = vote_margin_loss(lg1.softmax(-1), lg2.softmax(-1), v[i], v[j]).mean()
            l_div = diversity_loss(s1, s2).mean()
            loss = p2c_objective(l_cls, l_cons, l_pref, l_div, c.lambda_cons, c.lambda_pref, c.lambda_div)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            recorded[:, i] = s1.detach()
            rows.append(torch.stack([l_cls, l_pref, l_cons, l_div, loss]).detach())
    model.eval()
    hist = pd.DataFrame(torch.stack(rows).numpy(), columns=["cls", "pref", "cons", "div", "loss"])
    hist.insert(0, "step", range(len(hist)))
    return model, hist


# ---------------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict_proba(model: P2CModel, features) -> Tensor:
    """Class probabilities (N, C) of the classifier (eval mode)."""
    model.eval()
    return model(torch.as_tensor(np.asarray(features), dtype=torch.float32))[0].softmax(-1)


def expected_calibration_error(probs, labels, n_bins: int = 19) -> float:
    """ECE: Σ_b (|B_b| / N) |acc(B_b) - conf(B_b)| over equal-width bins of the top-class confidence (19 bins as in
    the official ``utils.ECE``, which also picks a temperature on validation data; we report the raw ECE)."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels))
    conf, pred = p.max(1)
    correct = (pred == y).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.double().mean().item() * abs(correct[m].mean().item() - conf[m].mean().item())
    return ece


def ece_contributions(probs, labels, n_bins: int = 19) -> np.ndarray:
    """Per-input terms u_i whose mean is exactly :func:`expected_calibration_error`:

        ECE = (1/N) Σ_b |Σ_{i∈b} (conf_i - correct_i)| = (1/N) Σ_i sign_b(i) (conf_i - correct_i),

    with sign_b the sign of bin b's total gap (over- or under-confident). Paired differences of u_i between two
    classifiers on the same test inputs are the units of a calibration comparison; the bootstrap over them holds
    each bin's sign at its full-sample value (a linearisation of the ECE). Returns (N,)."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    conf, pred = p.max(1)
    gap = conf - (pred == torch.as_tensor(np.asarray(labels))).double()  # (N,) conf_i - correct_i
    b = (conf * n_bins).ceil().clamp(1, n_bins).long() - 1  # bin of (lo, hi], as in expected_calibration_error
    sign = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b, gap).sign()  # (n_bins,)
    return (sign[b] * gap).numpy()


def reliability(probs, labels, n_bins: int = 10) -> pd.DataFrame:
    """Mean confidence, accuracy and count per equal-width bin of the top-class confidence (non-empty bins): the
    points of a reliability diagram."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    conf, pred = p.max(1)
    correct = (pred == torch.as_tensor(np.asarray(labels))).double()
    b = (conf * n_bins).ceil().clamp(1, n_bins).long() - 1  # bin of (lo, hi]
    rows = [{"confidence": conf[b == k].mean().item(), "accuracy": correct[b == k].mean().item(),
             "count": int((b == k).sum())} for k in range(n_bins) if (b == k).any()]  # fmt: skip
    return pd.DataFrame(rows)


def classifier_report(model: P2CModel, features, labels) -> dict[str, float]:
    """Accuracy, ECE and mean negative log-likelihood of the classifier against ``labels``."""
    p = predict_proba(model, features)
    y = torch.as_tensor(np.asarray(labels))
    return {
        "acc": (p.argmax(1) == y).double().mean().item(),
        "ece": expected_calibration_error(p, y),
        "nll": -p.gather(1, y[:, None]).clamp_min(1e-12).log().mean().item(),
    }


@torch.no_grad()
def preference_correct(model: P2CModel, features, labels, pairs, targets) -> np.ndarray:
    """Per pair that is not a tie (P',): 1 where the heads' mean P(x1 ≻ x2 | y) falls on the side of the target."""
    x, y = check_inputs(features, labels, model.n_classes)
    pr, t = check_pairs(pairs, targets, y.numpy())
    keep = t != 0.5
    pr, t = pr[keep], t[keep]
    h = model(x)[1]
    yk = y[pr[:, 0]]
    p = preference_probs(model.scores(h[pr[:, 0]], yk), model.scores(h[pr[:, 1]], yk)).mean(0)  # (P',)
    return ((p > 0.5) == (t > 0.5)).double().numpy()


def preference_accuracy(model: P2CModel, features, labels, pairs, targets) -> float:
    """How often the heads' mean P(x1 ≻ x2 | y) falls on the side of the target, over pairs that are not ties."""
    correct = preference_correct(model, features, labels, pairs, targets)
    return float(correct.mean()) if len(correct) else float("nan")


def arm_units(model: P2CModel, test_features, test_labels, test_pairs=None, test_targets=None) -> dict[str, np.ndarray]:
    """The paired units of an arm's evaluation: per test input ``correct`` (0/1), ``nll`` (-log p(true class)) and
    ``ece`` (:func:`ece_contributions`); per non-tie test pair ``pair`` (0/1, when pairs are given)."""
    p = predict_proba(model, test_features)
    y = torch.as_tensor(np.asarray(test_labels))
    out = {
        "correct": (p.argmax(1) == y).double().numpy(),
        "nll": -p.gather(1, y[:, None])[:, 0].double().clamp_min(1e-12).log().numpy(),
        "ece": ece_contributions(p, y),
    }
    if test_pairs is not None:
        out["pair"] = preference_correct(model, test_features, test_labels, test_pairs, test_targets)
    return out


def _report(model: P2CModel, hist: pd.DataFrame, config: P2CConfig, test_features, test_labels, test_pairs,
            test_targets, has_pairs: bool) -> dict[str, float]:  # fmt: skip
    rep = classifier_report(model, test_features, test_labels)
    if test_pairs is not None and has_pairs:
        rep["pref_acc"] = preference_accuracy(model, test_features, test_labels, test_pairs, test_targets)
    last = hist.tail(max(1, len(hist) // max(1, config.epochs)))
    rep.update({f"train_{k}": float(last[k].mean()) for k in ("cls", "pref", "cons", "div")})
    return rep


def run_arm(features, labels, n_classes: int, pairs, targets, config: P2CConfig, seed: int, test_features,
            test_labels, test_pairs=None, test_targets=None) -> tuple[dict[str, float], P2CModel]:  # fmt: skip
    """Train one arm (:func:`train_p2c`) and evaluate it on a test set: accuracy, ECE and NLL against
    ``test_labels``, the heads' accuracy on ``test_pairs`` (labelled by ``test_labels``) when given, and the last
    epoch's mean loss terms. Returns the report and the model."""
    model, hist = train_p2c(features, labels, n_classes, pairs, targets, config, seed)
    has_pairs = pairs is not None and len(pairs) > 0
    return _report(model, hist, config, test_features, test_labels, test_pairs, test_targets, has_pairs), model


def run_records_arm(features, labels, n_classes: int, fractions, config: P2CConfig, seed: int, sampling: str,
                    test_features, test_labels, test_pairs=None, test_targets=None) -> tuple[dict[str, float], P2CModel]:  # fmt: skip
    """:func:`run_arm` for the official annotation-records path (:func:`train_p2c_records`)."""
    model, hist = train_p2c_records(features, labels, n_classes, fractions, config, seed, sampling)
    return _report(model, hist, config, test_features, test_labels, test_pairs, test_targets, True), model
