"""RankDPO on the 2-D diffusion toy: ranked lists from k generators, labelled by n reward models (Syn-Pic).

Paper: Karthik, Roth, Mancini, Akata (2024), "Scalable Ranked Preference Optimization for Text-to-Image Generation",
arXiv:2410.18013 (ICCV 2025). We could read only its abstract, a third-party OCR of Algorithms 1-2 and its tables;
the equations' text (Eq. 5-7) was not available to us, and we found no official code.

Syn-Pic (Algorithm 1). For each prompt, k text-to-image models make one image each (k = 4 in the paper: 58k prompts,
232k images) and n = 5 reward models score them. Image i's label is its share of pairwise wins,

    C_i = Σ_m Σ_{j ≠ i} 1[s_m(x_i) > s_m(x_j)],   φ(x_i) = C_i / (n (k - 1))  ∈ [0, 1]            (:func:`synpic_phi`)

(aggregated win fractions, not averaged scores; a tie counts one half here, our choice).

RankDPO (Algorithm 2). One t and ε per list here (the official Diffusion-DPO code shares them within a pair,
train.py l.1053-1055), implicit rewards r_i = -0.5 β (m_θ(x_i) - m_ref(x_i)) with m the per-sample denoising MSE
averaged over dimensions (Diffusion-DPO train.py l.1125, l.1142-1145), and the λ-weighted pairwise loss

    L = -Σ_{φ_i > φ_j} Δ_ij log σ(r_i - r_j),   Δ_ij = |2^φ_i - 2^φ_j| · |1/ln(1 + τ_i) - 1/ln(1 + τ_j)|,

τ the rank under the current r: :func:`prefkit.losses.diffusion.ranked_diffusion_dpo_loss` (its docstring says which
reading of the OCR'd algorithm it implements); ``discount=False`` gives the paper's gain-weighted DPO ablation.

The toy (:func:`run_rankdpo`). Classes are the prompts of a :class:`prefkit.worlds.points.PointsWorld`; the k = 4
"generators" are the base model sampled with classifier-free guidance weights w = 0.5, 1, 2, 3 (weak guidance leaks
samples towards other classes; strong guidance overshoots past the styled mode, as strong guidance over-saturates
images); a list is one sample of each for one prompt instance. The n = 5 reward models are
:class:`~prefkit.worlds.points.PointwiseRM` fitted on independent small draws of rated data pairs (different data,
different initial weights), so each is imperfect in its own way, and none ever sees the oracle except through the
Bradley-Terry rater's labels. Every arm fine-tunes the base (w = 1) for the same number of Adam steps on the same
number of samples per step (``batch_lists`` lists of k, or 2 ``batch_lists`` pairs of 2) with one β:

=================  ===========================================================================================
``rankdpo``        the ranked loss on whole lists labelled by φ (gains 2^φ and the DCG discount)
``gain_only``      the same with ``discount=False`` (Δ_ij = |2^φ_i - 2^φ_j|), the paper's "DPO + gain weights"
``dpo_bw``         Diffusion-DPO on the best-vs-worst pair of each list by φ (ties broken at random)
``dpo_bw_1rm``     Diffusion-DPO on the best-vs-worst pair of each list by one reward model's scores (RM 0)
=================  ===========================================================================================

Departures: generators are guidance weights of one base, not four different models; prompts are 4 classes seen in
many noise draws; reward models are small MLPs on rated data pairs; the paper has no best-vs-worst arm (it compares
RankDPO with DPO on Pick-a-Pic's human pairs) and its single-reward arm is DPO on HPSv2 labels over the same images.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .diffusion import NoiseSchedule, ddpm_sample
from .diffusion_pref import eval_samples, train_pairs
from .losses.diffusion import diffusion_dpo_loss, ranked_diffusion_dpo_loss
from .worlds.points import PointPairs, PointsWorld, PointwiseRM, fit_pointwise_rm, rm_accuracy

Tensor = torch.Tensor

ARMS = ("base", "dpo_bw_1rm", "dpo_bw", "gain_only", "rankdpo")


@dataclass
class RankDPOConfig:
    guidance: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)  # k = 4 generators (Syn-Pic: 4 T2I models)
    lists_per_class: int = 512  # prompt instances per class (Syn-Pic: 58k prompts)
    n_rms: int = 5  # n reward models (Syn-Pic: 5)
    rm_pairs: int = 100  # rated pairs per reward model: few, so each RM is imperfect in its own way
    rm_generated_share: float = 0.5  # share of them on generated samples (the rest on data samples)
    rm_steps: int = 300  # full-batch Adam steps per reward model
    single_rm: int = 0  # the reward model of the one-RM arm (RMs are i.i.d. draws, so any index is a random one)
    beta: float = 1000.0  # Diffusion-DPO β, official scale (SD1.5 2000, SDXL 5000); from {1000, 2000, 5000} on dev
    steps: int = 600  # Adam steps per arm (equal for all arms)
    batch_lists: int = 64  # lists per step; the pair arms take 2x as many pairs, so every arm sees 4x64 samples/step
    lr: float = 1e-3  # Adam learning rate (toy scale)
    eval_per_class: int = 256  # evaluation samples per class (1024 paired units)
    n_figure: int = 32  # evaluation samples per class kept for the figure
    log_every: int = 20  # loss-curve subsampling
    rm_test_pairs: int = 2000  # fresh rated pairs of generated samples for each RM's accuracy (diagnostic only)

    @classmethod
    def smoke(cls) -> RankDPOConfig:
        return cls(lists_per_class=32, rm_pairs=40, rm_steps=50, steps=20, batch_lists=16, eval_per_class=32,
                   n_figure=16, rm_test_pairs=100)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# Syn-Pic: lists from k generators, labels from n reward models


@torch.no_grad()
def generate_lists(
    model,
    schedule: NoiseSchedule,
    n_classes: int,
    lists_per_class: int,
    guidance: tuple[float, ...],
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """One sample per generator (guidance weight) for every prompt instance: returns x (N, k, d) and c (N,), with
    N = n_classes · lists_per_class, classes in blocks. Each generator draws its own noise."""
    if len(guidance) < 2:
        raise ValueError(f"guidance must name at least 2 generators, got {guidance}")
    c = torch.arange(n_classes).repeat_interleave(lists_per_class)  # (N,)
    xs = [ddpm_sample(model, c, schedule, len(c), generator, w=w) for w in guidance]  # k x (N, d)
    return torch.stack(xs, 1), c


def generated_pairs(
    world: PointsWorld, model, schedule: NoiseSchedule, guidance: tuple[float, ...], n_pairs: int, generator
) -> PointPairs:
    """``n_pairs`` rated pairs of generated samples: two different generators' samples for one prompt instance (a
    fresh list, never a training list), labelled by the world's Bradley-Terry rater (the reward models' data on the
    generators' support, as the paper's reward models were trained on human ratings of generated images)."""
    k = len(guidance)
    x, c = generate_lists(model, schedule, world.n_classes, -(-n_pairs // world.n_classes), guidance, generator)
    x, c = x[:n_pairs], c[:n_pairs]
    i = torch.randint(0, k, (len(c),), generator=generator)
    j = (i + torch.randint(1, k, (len(c),), generator=generator)) % k  # another generator
    rows = torch.arange(len(c))
    return world.preference_pairs(torch.stack([x[rows, i], x[rows, j]], 1), c, generator)


def fit_reward_models(
    world: PointsWorld,
    model,
    schedule: NoiseSchedule,
    guidance: tuple[float, ...],
    n: int,
    n_pairs: int,
    steps: int,
    seed: int,
    generated_share: float = 0.5,
) -> list[PointwiseRM]:
    """n pointwise reward models, each fitted on its own draw of ``n_pairs`` rated pairs (a share ``generated_share``
    of :func:`generated_pairs`, the rest :meth:`PointsWorld.data_pairs`) with its own initial weights; the draws of
    seed s never overlap those of another seed or the training lists."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= generated_share <= 1.0:
        raise ValueError(f"generated_share must lie in [0, 1], got {generated_share}")
    n_gen = round(n_pairs * generated_share)
    rms = []
    for m in range(n):
        g = torch.Generator().manual_seed(1_000 * seed + 17 + m)
        parts = [world.data_pairs(n_pairs - n_gen, rng=g)] if n_pairs > n_gen else []
        if n_gen:
            parts.append(generated_pairs(world, model, schedule, guidance, n_gen, g))
        pairs = PointPairs(*(torch.cat([getattr(p, f) for p in parts]) for f in ("x_w", "x_l", "c", "p_true")))
        rms.append(fit_pointwise_rm(pairs, world.n_classes, steps, seed=seed + m))
    return rms


@torch.no_grad()
def rm_scores(rms: list[PointwiseRM], x: Tensor, c: Tensor) -> Tensor:
    """Scores s_m(x_i) of every reward model for every list item: x (N, k, d), c (N,) -> (n, N, k)."""
    n_lists, k, d = x.shape
    flat, cf = x.reshape(-1, d), c.repeat_interleave(k)
    return torch.stack([rm(flat, cf).reshape(n_lists, k) for rm in rms])


def synpic_phi(scores: Tensor) -> Tensor:
    """φ(x_i) = C_i / (n (k - 1)), C_i the (reward model, other item) pairs item i wins (Syn-Pic, Algorithm 1);
    a tie counts 1/2. scores (n, N, k) -> (N, k) in [0, 1]."""
    if scores.dim() != 3 or scores.shape[2] < 2:
        raise ValueError(f"scores must have shape (n_rms, N, k) with k >= 2, got {tuple(scores.shape)}")
    n, _, k = scores.shape
    diff = scores[:, :, :, None] - scores[:, :, None, :]  # (n, N, k, k): s_i - s_j
    wins = (diff > 0).to(scores.dtype) + 0.5 * (diff == 0).to(scores.dtype)
    wins = wins.sum((0, 3)) - 0.5 * n  # drop the self-comparisons (each a tie, 1/2 per reward model)
    return wins / (n * (k - 1))


def best_worst(scores: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """The index of the best and of the worst item of each list by ``scores`` (N, k), ties broken at random;
    returns (best (M,), worst (M,), keep (N,) bool): lists whose items all tie are dropped (M = keep.sum())."""
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must have shape (N, k) with k >= 2, got {tuple(scores.shape)}")
    jitter = torch.rand(scores.shape, generator=generator, dtype=torch.float64)  # only orders exact ties
    s = scores.to(torch.float64)
    best = torch.where(s == s.max(1, keepdim=True).values, jitter, -1.0).argmax(1)
    worst = torch.where(s == s.min(1, keepdim=True).values, jitter, -1.0).argmax(1)
    keep = s.max(1).values > s.min(1).values
    return best[keep], worst[keep], keep


def pairs_from_lists(x: Tensor, c: Tensor, scores: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Best-vs-worst pairs of lists x (N, k, d) by scores (N, k): (x_w (M, d), x_l (M, d), c (M,))."""
    best, worst, keep = best_worst(scores, generator)
    xk, rows = x[keep], torch.arange(int(keep.sum()))
    return xk[rows, best], xk[rows, worst], c[keep]


# ---------------------------------------------------------------------------------------------------------------------
# Training on lists


def train_lists(
    model,
    x: Tensor,  # (N, k, d) the lists
    c: Tensor,  # (N,) their classes
    scores: Tensor,  # (N, k) labels φ, higher is better
    schedule: NoiseSchedule,
    steps: int,
    batch_lists: int,
    lr: float,
    seed: int,
    beta: float,
    discount: bool = True,
) -> tuple[torch.nn.Module, list[float]]:
    """Fine-tune a copy of ``model`` with :func:`ranked_diffusion_dpo_loss` against a frozen copy (π_ref): each step
    draws ``batch_lists`` lists, one t and one ε per list shared by its k items (as Diffusion-DPO shares them within
    a pair). Returns (policy in eval mode, the mean loss of every step)."""
    if not (x.dim() == 3 and x.shape[:2] == scores.shape and x.shape[0] == c.shape[0]):
        raise ValueError(f"x {tuple(x.shape)}, c {tuple(c.shape)} and scores {tuple(scores.shape)} do not match")
    n_lists, k, d = x.shape
    policy, ref = copy.deepcopy(model).train(), copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    log = []
    for _ in range(steps):
        idx = torch.randint(0, n_lists, (batch_lists,), generator=gen)
        t = torch.randint(0, schedule.T, (batch_lists,), generator=gen).repeat_interleave(k)  # (B k,)
        noise = torch.randn(batch_lists, d, generator=gen).repeat_interleave(k, 0)  # (B k, d) shared in a list
        ck = c[idx].repeat_interleave(k)
        x_t = schedule.q_sample(x[idx].reshape(-1, d), t, noise)
        m = (policy(x_t, t, ck) - noise).pow(2).mean(-1).reshape(batch_lists, k)  # (B, k) m_θ
        with torch.no_grad():
            m_ref = (ref(x_t, t, ck) - noise).pow(2).mean(-1).reshape(batch_lists, k)  # (B, k) m_ref
        losses, _ = ranked_diffusion_dpo_loss(m, m_ref, scores[idx], beta=beta, discount=discount)
        opt.zero_grad()
        losses.mean().backward()
        opt.step()
        log.append(float(losses.detach().mean()))
    return policy.eval(), log


# ---------------------------------------------------------------------------------------------------------------------
# One seed of the experiment


def _label_quality(scores: Tensor, oracle: Tensor, generator: torch.Generator) -> dict[str, float]:
    """How good a labelling is, against the oracle (diagnostics, never used in training): the oracle reward of the
    chosen best and worst items, and the share of item pairs it orders as the oracle does (ties in the labels 1/2)."""
    best, worst, keep = best_worst(scores, generator)
    rows = torch.arange(int(keep.sum()))
    ok = oracle[keep]
    ds = scores[:, :, None] - scores[:, None, :]
    do = oracle[:, :, None] - oracle[:, None, :]
    off = do != 0
    agree = ((ds.sign() * do.sign() > 0).double() + 0.5 * (ds == 0).double())[off].mean()  # signs: no underflow
    return {"best_oracle": round(float(ok[rows, best].mean()), 4), "worst_oracle": round(float(ok[rows, worst].mean()), 4),
            "pair_agreement": round(float(agree), 4)}  # fmt: skip


def run_rankdpo(
    world: PointsWorld, base, schedule: NoiseSchedule, seed: int, cfg: RankDPOConfig, progress=False
) -> dict:
    """One seed: Syn-Pic lists and labels, the four arms, and the paired evaluation. Returns plain data: ``units``
    (per-arm oracle reward of the 4 x ``eval_per_class`` paired evaluation samples), ``curves`` (loss curves, a few
    samples per arm, per-generator rewards), ``record`` (per-arm summaries) and ``labels`` (label diagnostics)."""
    if not 0 <= cfg.single_rm < cfg.n_rms:
        raise ValueError(f"single_rm must index one of the {cfg.n_rms} reward models, got {cfg.single_rm}")
    gen = torch.Generator().manual_seed(seed)
    x, c = generate_lists(base, schedule, world.n_classes, cfg.lists_per_class, cfg.guidance, gen)  # (N, k, 2), (N,)
    rms = fit_reward_models(world, base, schedule, cfg.guidance, cfg.n_rms, cfg.rm_pairs, cfg.rm_steps, seed,
                            cfg.rm_generated_share)  # fmt: skip
    s = rm_scores(rms, x, c)  # (n, N, k)
    phi = synpic_phi(s)  # (N, k)
    k = x.shape[1]
    oracle = world.oracle_reward(x.reshape(-1, 2), c.repeat_interleave(k)).reshape(-1, k)  # diagnostics only

    steps, lr, beta, b = cfg.steps, cfg.lr, cfg.beta, cfg.batch_lists
    policies, logs = {"base": base}, {}
    for arm, labels in (("dpo_bw_1rm", s[cfg.single_rm]), ("dpo_bw", phi)):
        x_w, x_l, cp = pairs_from_lists(x, c, labels, gen)
        policies[arm], log = train_pairs(base, x_w, x_l, cp, diffusion_dpo_loss, schedule, steps, 2 * b, lr, seed,
                                         beta=beta)  # fmt: skip
        logs[arm] = [row["loss"] for row in log]
    for arm, discount in (("gain_only", False), ("rankdpo", True)):
        policies[arm], logs[arm] = train_lists(base, x, c, phi, schedule, steps, b, lr, seed, beta, discount)

    units, record, figure_x = {}, {}, {}
    fig_idx = torch.cat([torch.arange(cfg.n_figure) + i * cfg.eval_per_class for i in range(world.n_classes)])
    for arm in ARMS:
        xe, ce = eval_samples(policies[arm], schedule, world.n_classes, cfg.eval_per_class, seed)
        r = world.oracle_reward(xe, ce)
        units[arm] = r.numpy().astype(np.float64)
        shares = world.mode_shares(xe, ce)
        record[arm] = {"oracle_reward": round(float(r.mean()), 4), **{k_: round(v, 4) for k_, v in shares.items()}}
        figure_x[arm] = xe[fig_idx].tolist()

    test_pairs = generated_pairs(world, base, schedule, cfg.guidance, cfg.rm_test_pairs, gen)  # fresh, rated
    labels = {
        "phi": _label_quality(phi, oracle, gen),
        "rm_single": _label_quality(s[cfg.single_rm], oracle, gen),
        "oracle": _label_quality(oracle, oracle, gen),
        "rm_accuracy_generated": [round(rm_accuracy(rm, test_pairs), 4) for rm in rms],
        "generator_oracle": [round(float(v), 4) for v in oracle.mean(0)],
    }
    curves = {
        "loss": {arm: log[:: cfg.log_every] for arm, log in logs.items()},
        "samples": figure_x,
        "samples_c": ce[fig_idx].tolist(),
    }
    return {"units": units, "curves": curves, "record": record, "labels": labels, "config": asdict(cfg)}
