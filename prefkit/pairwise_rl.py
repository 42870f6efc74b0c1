"""Pairwise reward models and the anchored reward of Pairwise-RL, next to a pointwise Bradley-Terry reward model.

Xu, Zuo, Xin, Yue, Yan, Wu 2025, "A Unified Pairwise Framework for RLHF: Bridging Generative Reward Modeling and
Policy Optimization" (Pairwise-RL, arXiv:2504.04950). A pairwise reward model reads a prompt and *two* responses and
gives P(a ≻ b | x); reinforcement learning is then rewarded by how likely a sample y is to beat an anchor response a
of the same prompt, instead of by a pointwise score r(x, y) fitted under Bradley-Terry (BT).

- :func:`anchored_reward`: r(x, y) = ½ [P(y ≻ a) + 1 − P(a ≻ y)], the preference of y over the anchor averaged over
  both presentation orders, so a model with a position bias is read symmetrically. The formula is ours: we had only
  the paper's abstract, which names the anchor-based pairwise reward but not how the two orders are combined.
- :class:`PairwiseHead`: a small MLP on features of (x, y_a, y_b) giving the logit of P(a ≻ b). It reads the pair in
  order, as a generative judge reads "A vs B", so P(a ≻ b) + P(b ≻ a) = 1 only approximately (learnt from training
  pairs shown in both orders); ``antisymmetric=True`` makes it exact, logit = g(a, b) − g(b, a).
- :class:`RewardMLP`: a pointwise reward r(f) on the same features, P(a ≻ b) = σ(r(f_a) − r(f_b)) (BT).
- :func:`fit_preference_model`: fits either one by cross-entropy on labelled pairs, with early stopping on a
  validation split.
- :func:`expected_calibration_error` and :func:`reliability_table`: calibration of predicted P(a ≻ b) with fixed
  equal-width bins.
- :func:`judge_features`: what the models read: a frozen language model's last hidden state at each response's final
  token and the response's mean and summed log-probability under that model (its "confidence").
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

Tensor = torch.Tensor


# ---- the anchored reward ---------------------------------------------------------------------------------------


def _check_probs(p: Tensor, name: str) -> None:
    bad = ~((p >= 0) & (p <= 1))  # also catches NaN
    if bad.any():
        i = int(bad.reshape(-1).nonzero()[0])
        raise ValueError(f"{name} must be probabilities in [0, 1]; element {i} is {p.reshape(-1)[i].item()}")


def anchored_reward(
    p_sample_first: Tensor | np.ndarray,  # (...) P(y ≻ a): the model reads the sample y first, the anchor a second
    p_anchor_first: Tensor | np.ndarray,  # (...) P(a ≻ y): the same pair read in the other order
) -> Tensor | np.ndarray:
    """The anchored pairwise reward of Pairwise-RL (Xu et al. 2025, arXiv:2504.04950; the combination of the two
    orders is ours): r(x, y) = ½ [P(y ≻ a) + 1 − P(a ≻ y)] (...), in [0, 1]; ½ when the model cannot tell y from a.

    For a model with P(a ≻ b) + P(b ≻ a) = 1 both terms are equal and r = P(y ≻ a); for one with a position bias
    that adds ε to the probability of whichever response it reads first, the ε cancels: r = P(y ≻ a) still.
    Returns the input's type (torch tensor or numpy array)."""
    as_numpy = isinstance(p_sample_first, np.ndarray) or isinstance(p_anchor_first, np.ndarray)
    p1 = torch.as_tensor(np.asarray(p_sample_first) if as_numpy else p_sample_first)
    p2 = torch.as_tensor(np.asarray(p_anchor_first) if as_numpy else p_anchor_first)
    if p1.shape != p2.shape:
        raise ValueError(f"P(y ≻ a) has shape {tuple(p1.shape)} and P(a ≻ y) {tuple(p2.shape)}; they must match")
    _check_probs(p1, "P(y ≻ a)")
    _check_probs(p2, "P(a ≻ y)")
    r = 0.5 * (p1 + 1.0 - p2)  # our combination of the two orders (the paper's abstract gives none)
    return r.numpy() if as_numpy else r


# ---- features --------------------------------------------------------------------------------------------------


@torch.no_grad()
def judge_features(model, tokenizer, prompts: Sequence[str], responses: Sequence[Sequence[str]],
                   batch_size: int = 64) -> Tensor:  # fmt: skip
    """Features (B, K, H + 2) of B prompts' K responses each under a frozen language model: the last layer's hidden
    state at the response's final token (the EOS that closes it; what :func:`prefkit.gpm.response_features` returns),
    then the response's mean and summed token log-probability (how sure the model is of what it wrote)."""
    from .logps import encode_lists, response_states

    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} response lists")
    k = {len(r) for r in responses}
    if len(k) > 1:
        raise ValueError(f"every prompt needs the same number of responses, got {sorted(k)}")
    was_training = model.training
    model.eval()
    out = []
    for s in range(0, len(prompts), batch_size):
        batch = encode_lists(
            tokenizer, list(prompts[s : s + batch_size]), [list(r) for r in responses[s : s + batch_size]]
        )
        logps, hidden = response_states(model, batch, shared_prompt=True)  # (n, R), (n, R, H); n = b * K
        mask = batch["response_mask"].to(logps.device)  # (n, R)
        lengths = mask.sum(-1)  # (n,)
        last = hidden[torch.arange(len(lengths)), (lengths - 1).to(hidden.device)]  # (n, H)
        total = logps.sum(-1)  # (n,)
        feats = torch.cat([last.float(), (total / lengths.clamp(min=1))[:, None], total[:, None]], -1)
        out.append(feats.view(len(batch["prompt_ids"]), -1, feats.shape[-1]).cpu())
    model.train(was_training)
    return torch.cat(out)


# ---- the two reward models -------------------------------------------------------------------------------------


class _PreferenceModel(torch.nn.Module):
    """Holds the feature scaler (set from the training features by :func:`fit_preference_model`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = int(dim)
        self.register_buffer("mu", torch.zeros(dim))
        self.register_buffer("sd", torch.ones(dim))

    def set_scaler(self, feats: Tensor) -> None:  # feats (N, D)
        self.mu.copy_(feats.mean(0))
        self.sd.copy_(feats.std(0).clamp(min=1e-6))

    def _norm(self, f: Tensor) -> Tensor:
        if f.shape[-1] != self.dim:
            raise ValueError(f"features have {f.shape[-1]} dimensions; the model reads {self.dim}")
        return (f - self.mu) / self.sd

    def logit(self, fa: Tensor, fb: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, fa: Tensor, fb: Tensor) -> Tensor:
        """P(a ≻ b) (N,) from features fa, fb (N, D)."""
        return torch.sigmoid(self.logit(fa, fb))


def _mlp(d_in: int, hidden: int, dropout: float) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(d_in, hidden), torch.nn.GELU(), torch.nn.Dropout(dropout), torch.nn.Linear(hidden, 1)
    )


class PairwiseHead(_PreferenceModel):
    """P(a ≻ b | x) = σ(g([f_a, f_b, f_a − f_b, f_a ⊙ f_b])) with g a one-hidden-layer MLP: the pairwise reward model
    (Pairwise-RL's generative judge reads the prompt and both responses; here a head reads both responses' features).
    Not antisymmetric unless ``antisymmetric=True``, which uses g(a, b) − g(b, a) so P(a ≻ b) + P(b ≻ a) = 1."""

    def __init__(self, dim: int, hidden: int = 64, antisymmetric: bool = False, dropout: float = 0.0):
        super().__init__(dim)
        self.antisymmetric = antisymmetric
        self.g = _mlp(4 * dim, hidden, dropout)

    def _g(self, a: Tensor, b: Tensor) -> Tensor:
        return self.g(torch.cat([a, b, a - b, a * b], -1))[..., 0]  # (N,)

    def logit(self, fa: Tensor, fb: Tensor) -> Tensor:  # fa, fb (N, D) -> (N,)
        a, b = self._norm(fa), self._norm(fb)
        z = self._g(a, b)
        return z - self._g(b, a) if self.antisymmetric else z


class RewardMLP(_PreferenceModel):
    """A pointwise reward r(f) (one-hidden-layer MLP) under Bradley-Terry: P(a ≻ b) = σ(r(f_a) − r(f_b))."""

    def __init__(self, dim: int, hidden: int = 64, dropout: float = 0.0):
        super().__init__(dim)
        self.r = _mlp(dim, hidden, dropout)

    def reward(self, f: Tensor) -> Tensor:  # f (N, D) -> (N,)
        return self.r(self._norm(f))[..., 0]

    def logit(self, fa: Tensor, fb: Tensor) -> Tensor:
        return self.reward(fa) - self.reward(fb)  # BT: P(a ≻ b) = σ(r_a − r_b)


@torch.no_grad()
def anchored_score(model: _PreferenceModel, f_sample: Tensor, f_anchor: Tensor) -> Tensor:
    """:func:`anchored_reward` of samples against anchors under ``model``, from features (..., D) -> (...). For a BT
    model this is σ(r(y) − r(a)), the pointwise reward on the same [0, 1] scale."""
    shape = f_sample.shape[:-1]
    if f_anchor.shape != f_sample.shape:
        raise ValueError(f"sample features {tuple(f_sample.shape)} and anchor features {tuple(f_anchor.shape)} differ")
    y, a = f_sample.reshape(-1, f_sample.shape[-1]), f_anchor.reshape(-1, f_anchor.shape[-1])
    return anchored_reward(model(y, a), model(a, y)).view(shape)


class AnchoredReward:
    """``reward_fn(prompts, responses) -> (B, K)`` for :class:`prefkit.rl.OnPolicyBatches`: each sample's
    :func:`anchored_score` against its prompt's anchor under a fitted reward model, on features from ``featurize``
    (``(prompts, responses) -> (B, K, D)``, e.g. :func:`judge_features` of the frozen SFT model). The anchors'
    features are computed once per prompt and kept. ``means`` holds the mean reward of every call (one per RL step),
    for plotting what the policy is optimising."""

    def __init__(self, model: _PreferenceModel, featurize, anchors: dict[str, str]):
        self.model, self.featurize, self.anchors = model, featurize, dict(anchors)
        self._anchor_feats: dict[str, Tensor] = {}
        self.means: list[float] = []

    def anchor_features(self, prompts: Sequence[str]) -> Tensor:
        """(B, D) features of the prompts' anchors."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._anchor_feats]
        unknown = [p for p in missing if p not in self.anchors]
        if unknown:
            raise ValueError(f"no anchor for prompt {unknown[0]!r}")
        if missing:
            feats = self.featurize(missing, [[self.anchors[p]] for p in missing])  # (M, 1, D)
            self._anchor_feats.update(zip(missing, feats[:, 0]))
        return torch.stack([self._anchor_feats[p] for p in prompts])

    def __call__(self, prompts: Sequence[str], responses: Sequence[Sequence[str]]) -> np.ndarray:
        f = self.featurize(prompts, responses)  # (B, K, D)
        fa = self.anchor_features(prompts)[:, None].expand_as(f)  # (B, K, D)
        r = anchored_score(self.model, f, fa)  # (B, K)
        self.means.append(float(r.mean()))
        return r.double().numpy()


def fit_preference_model(
    model: _PreferenceModel,
    fa: Tensor,  # (N, D) features of the first response of each training pair
    fb: Tensor,  # (N, D) the second
    labels: Tensor,  # (N,) 1 if a won, 0 if b won (or soft labels in [0, 1])
    val: tuple[Tensor, Tensor, Tensor],  # the same for the validation pairs
    steps: int = 2000,
    lr: float = 3e-3,
    weight_decay: float = 1e-2,
    eval_every: int = 10,
    patience: int = 20,
    both_orders: bool = True,
    seed: int = 0,
) -> tuple[_PreferenceModel, dict]:
    """Fit ``model`` by full-batch AdamW on the cross-entropy −[y log P(a ≻ b) + (1 − y) log P(b ≻ a)], keeping the
    weights with the lowest validation cross-entropy and stopping after ``patience`` evaluations without a new best.
    ``both_orders`` adds every pair reversed with its label flipped (a pairwise head then sees no position cue; for
    BT it changes nothing). The scaler is set from the training features. Returns the model (frozen, eval mode) and
    its history: ``train``/``val`` losses per evaluation, ``best_step`` and ``best_val``."""
    for name, t in (("fb", fb), ("labels", labels)):
        if len(t) != len(fa):
            raise ValueError(f"fa has {len(fa)} pairs but {name} has {len(t)}")
    _check_probs(labels, "labels")
    _check_probs(val[2], "validation labels")
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            m.reset_parameters()
    model.set_scaler(torch.cat([fa, fb]))
    if both_orders:
        fa, fb, labels = torch.cat([fa, fb]), torch.cat([fb, fa]), torch.cat([labels, 1 - labels])
    va, vb, vy = val
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_state, best_step, waited = float("inf"), copy.deepcopy(model.state_dict()), 0, 0
    hist: dict = {"step": [], "train": [], "val": []}
    for step in range(1, steps + 1):
        model.train()
        loss = F.binary_cross_entropy_with_logits(model.logit(fa, fb), labels.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % eval_every and step != steps:
            continue
        model.eval()
        with torch.no_grad():
            v = float(F.binary_cross_entropy_with_logits(model.logit(va, vb), vy.float()))
        hist["step"].append(step)
        hist["train"].append(float(loss.detach()))
        hist["val"].append(v)
        if v < best - 1e-6:
            best, best_state, best_step, waited = v, copy.deepcopy(model.state_dict()), step, 0
        else:
            waited += 1
            if waited >= patience:
                break
    model.load_state_dict(best_state)
    hist.update(best_step=best_step, best_val=best)
    return model.eval().requires_grad_(False), hist


# ---- calibration -----------------------------------------------------------------------------------------------


def _calibration_inputs(probs, labels, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=float).reshape(-1)
    y = np.asarray(labels, dtype=float).reshape(-1)
    if p.size != y.size:
        raise ValueError(f"{p.size} probabilities for {y.size} labels")
    if p.size == 0:
        raise ValueError("no predictions to calibrate")
    if not (isinstance(n_bins, (int, np.integer)) and n_bins >= 1):
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    for name, v in (("probability", p), ("label", y)):
        bad = ~((v >= 0) & (v <= 1))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name} {i} is {v[i]}; must be in [0, 1]")
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)  # [k/n, (k+1)/n), the last bin closed at 1
    return p, y, bins


def reliability_table(probs, labels, n_bins: int = 10) -> list[dict]:
    """One row per equal-width bin of predicted probability over [0, 1]: ``lo``, ``hi``, ``count``, ``confidence``
    (mean predicted P), ``frequency`` (mean label: the observed rate, or with soft labels the mean true probability)
    and ``gap`` = frequency − confidence (NaN for an empty bin). Labels: 0/1 outcomes or probabilities in [0, 1]."""
    p, y, bins = _calibration_inputs(probs, labels, n_bins)
    rows = []
    for k in range(n_bins):
        m = bins == k
        n = int(m.sum())
        conf, freq = (float(p[m].mean()), float(y[m].mean())) if n else (float("nan"), float("nan"))
        rows.append({"lo": k / n_bins, "hi": (k + 1) / n_bins, "count": n, "confidence": conf, "frequency": freq,
                     "gap": freq - conf})  # fmt: skip
    return rows


def expected_calibration_error(probs, labels, n_bins: int = 10) -> float:
    """ECE = Σ_b (n_b / N) |mean label_b − mean P_b| over ``n_bins`` fixed equal-width bins of the predicted
    probability (Naeini et al. 2015; Guo et al. 2017), the predictions being P(a ≻ b) and the labels whether a won.
    0 for a calibrated model; at most 1."""
    p, y, bins = _calibration_inputs(probs, labels, n_bins)
    conf = np.bincount(bins, weights=p, minlength=n_bins)
    freq = np.bincount(bins, weights=y, minlength=n_bins)
    return float(np.abs(freq - conf).sum() / p.size)  # Σ_b n_b/N |freq_b/n_b − conf_b/n_b|
