"""SmPO on the 2-D diffusion toy: smoothed reward-model labels and ReNoise inversion against Diffusion-DPO.

Paper: Lu et al. 2025, "Smoothed Preference Optimization via ReNoise Inversion for Aligning Diffusion Models with
Varied Human Preferences", arXiv:2506.02698 (ICML 2025); official code JaydenLyh/SmPO (train.py). As coded, SmPO is
Diffusion-DPO (Wallace et al. 2024, arXiv:2311.12908) with three changes:

1. The winner of each pair is re-labelled by a reward model (PickScore; train.py l.729), so the human label is unused.
2. A per-pair scale from the reward model's scores (train.py l.739-746, l.1061-1064): s̃ = (s - low)/(high - low)
   (PickScore's range 0.1154 .. 0.2820), α = softmax(s̃_w, s̃_l)_w ≥ 1/2, and

       L = -log σ(-0.5 β (2α - 1) · 10 · [(m_θ(x_w) - m_θ(x_l)) - (m_ref(x_w) - m_ref(x_l))]),

   m = the per-sample denoising error averaged over dimensions (:func:`prefkit.losses.diffusion.smpo_loss`).
3. ReNoise inversion (train.py l.967-1027): for the pair's sampled t, x_0 is DDIM-inverted with the *current* policy
   (no gradient) over the grid points of a 5-point inverse-DDIM grid that lie below t, each step with one ReNoise
   refinement (:func:`prefkit.diffusion.ddim_invert`, ``renoise_iters=1``); the endpoint x̃ gives
   ε* = (x̃ - √ᾱ_t x_0)/√(1 - ᾱ_t), used as both the noise (so x_t = x̃) and the target. w and l are inverted
   separately (no shared ε); for t at or below the first grid point there is nothing to invert and x̃ = x_0.

The toy (``run_smpo``). Prompts are the PointsWorld's classes. Training pairs are two samples of the base model for the
same class, labelled by the Bradley-Terry rater (noisy: the "human" labels). The "PickScore" is a
:class:`prefkit.worlds.points.PointwiseRM` fitted on rater labels of *data* pairs drawn apart from the training pairs;
the oracle is used only for evaluation. Arms, all from the same base with one β and one learning rate:

- ``dpo``: Diffusion-DPO on the rater's hard labels (shared t and ε per pair, the official Diffusion-DPO code);
- ``smpo``: the RM's winner, α from the RM's scores, per-pair scale (2α - 1)·k with k = 1/mean(2α - 1) over the
  training pairs (so the mean scale is 1 and SmPO vs DPO is not a β comparison; the official k is 10), shared t and ε;
- ``smpo_renoise``: ``smpo`` with ε* from ReNoise inversion (separate per sample) in place of the forward noise.

Departures: T = 50 (the grid is {0, 10, 20, 30, 40}, the toy's image of {0, 200, ..., 800} at T = 1000); the RM's
normalisation range (low, high) is the min and max of its scores over the training candidates (PickScore's constants
are its typical range on Pick-a-Pic); k as above; Adam at a constant learning rate, no SFT initialisation (the paper's
SD1.5 run starts from an SFT checkpoint), no gradient clipping. Compute is counted in forward-equivalent network
evaluations per training sample (a backward pass = 2): a DPO/SmPO step costs 4 per sample (policy forward and
backward, reference forward); inversion adds 2 per grid point inverted (one ε and one ReNoise ε).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .diffusion import NoiseSchedule, ddim_invert, ddpm_sample, pair_mse
from .diffusion_pref import eval_samples
from .losses.diffusion import diffusion_dpo_loss, smpo_alpha, smpo_loss
from .worlds.points import PointPairs, PointsWorld, fit_pointwise_rm

Tensor = torch.Tensor

ARMS = ("dpo", "smpo", "smpo_renoise")
STEP_NFE = 4  # forward-equivalent evaluations per training sample per step: policy fwd 1 + bwd 2, reference fwd 1


@dataclass
class SmPOConfig:
    n_pairs: int = 2048  # training pairs (two base samples of one class each), classes uniform
    n_rm_pairs: int = 2000  # rated data pairs the reward model ("PickScore") is fitted on, drawn apart
    rm_steps: int = 400  # full-batch Adam steps of the reward model fit
    temperature: float = 0.1  # Bradley-Terry rater temperature (the world's default)
    steps: int = 300  # standard training length (Adam steps) of every arm
    long_factor: int = 4  # DPO and SmPO also train for long_factor x steps (over-optimisation)
    n_checkpoints: int = 16  # evaluations along the long run (every long_factor * steps / n_checkpoints steps)
    renoise_checkpoints: int = 20  # evaluations along SmPO + ReNoise's (standard-length) run
    batch_size: int = 256  # pairs per step
    lr: float = 1e-3  # Adam, constant
    beta: float = 500.0  # Diffusion-DPO β, code scale; best DPO val reward of {500, 2000, 5000} on dev seeds 100-102
    grid_points: int = 5  # inverse-DDIM grid (official SD1.5: 5)
    renoise_iters: int = 1  # ReNoise refinements per inversion step (official: 1)
    eval_per_class: int = 256  # evaluation samples per class (4 x 256 = 1024 units)

    @classmethod
    def smoke(cls) -> SmPOConfig:
        return cls(n_pairs=256, n_rm_pairs=400, rm_steps=100, steps=16, n_checkpoints=4, renoise_checkpoints=2,
                   batch_size=64, eval_per_class=32)  # fmt: skip

    def __post_init__(self):
        for name in ("n_pairs", "n_rm_pairs", "rm_steps", "steps", "long_factor", "n_checkpoints",
                     "renoise_checkpoints", "batch_size", "grid_points", "eval_per_class"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if (self.long_factor * self.steps) % self.n_checkpoints or self.n_checkpoints % self.long_factor:
            raise ValueError("n_checkpoints must divide long_factor * steps and be a multiple of long_factor")
        if self.steps % self.renoise_checkpoints:
            raise ValueError("renoise_checkpoints must divide steps")
        if self.beta <= 0 or self.lr <= 0:
            raise ValueError(f"beta and lr must be > 0, got beta={self.beta}, lr={self.lr}")


# ----------------------------------------------------------------------------------------------------------------------
# Labels


def smpo_labels(
    rm: Callable[[Tensor, Tensor], Tensor],
    x_a: Tensor,  # (N, 2) first candidate
    x_b: Tensor,  # (N, 2) second candidate
    c: Tensor,  # (N,) class
    low: float | None = None,
    high: float | None = None,
) -> tuple[Tensor, Tensor, Tensor, float, float]:
    """The official SmPO labels from a reward model ``rm(x, c) -> (N,)``: each pair ordered by the RM (train.py l.729)
    and α = σ(s̃_w - s̃_l) ≥ 1/2 with s̃ the scores min-max normalised by (low, high) (train.py l.739-746); low and
    high default to the min and max of the scores seen here. Returns (x_w, x_l, α (N,), low, high)."""
    with torch.no_grad():
        s_a, s_b = rm(x_a, c), rm(x_b, c)  # (N,) each
    scores = torch.cat([s_a, s_b])
    low = float(scores.min()) if low is None else low
    high = float(scores.max()) if high is None else high
    a_wins = (s_a >= s_b)[:, None]
    x_w, x_l = torch.where(a_wins, x_a, x_b), torch.where(a_wins, x_b, x_a)
    alpha = smpo_alpha(torch.maximum(s_a, s_b), torch.minimum(s_a, s_b), low, high)
    return x_w, x_l, alpha, low, high


def mean_scale_k(alpha: Tensor) -> float:
    """k with mean over pairs of (2α - 1)·k = 1, so SmPO's average per-pair β equals DPO's (the official k is 10)."""
    m = float((2 * alpha - 1).mean())
    if not m > 0:
        raise ValueError("alpha must have mean > 1/2 (pairs ordered by the reward model)")
    return 1.0 / m


# ----------------------------------------------------------------------------------------------------------------------
# ReNoise inversion noise


def inversion_grid(T: int, grid_points: int) -> list[int]:
    """The inverse-DDIM grid {0, h, 2h, ...}, h = T // grid_points (T = 1000, 5 points: 0, 200, ..., 800)."""
    if not 1 <= grid_points <= T:
        raise ValueError(f"grid_points must lie in [1, {T}], got {grid_points}")
    h = T // grid_points
    return [h * i for i in range(grid_points)]


def grid_count(t: Tensor, grid: list[int]) -> Tensor:
    """How many grid points lie strictly below each t (official: ``timesteps[timesteps < t]``), (N,) long."""
    return (torch.as_tensor(grid, device=t.device)[None, :] < t[:, None]).sum(-1)


@torch.no_grad()
def renoise_eps(
    model,
    x0: Tensor,  # (N, d)
    c: Tensor,  # (N,)
    t: Tensor,  # (N,) long: the sampled timestep of each sample
    schedule: NoiseSchedule,
    grid: list[int],
    renoise_iters: int = 1,
) -> tuple[Tensor, int]:
    """ε* = (x̃ - √ᾱ_t x_0)/√(1 - ᾱ_t), x̃ = DDIM inversion of x_0 with ``model`` over the grid points below t (none:
    x̃ = x_0); ᾱ is the sampled t's even though x̃ sits at a grid point below it, as in the official code. Returns
    (ε* (N, d), the number of network evaluations spent, summed over samples)."""
    x_tilde = x0.clone()
    k = grid_count(t, grid)  # (N,)
    nfe = 0
    for n_pts in range(1, len(grid) + 1):
        sel = k == n_pts
        if not sel.any():
            continue
        x_tilde[sel] = ddim_invert(model, x0[sel], c[sel], schedule, steps=n_pts, renoise_iters=renoise_iters,
                                   t_end=grid[n_pts - 1])  # fmt: skip
        nfe += int(sel.sum()) * n_pts * (1 + renoise_iters)
    ab = schedule.at(schedule.alpha_bar, t, x0)  # (N, 1)
    return (x_tilde - ab.sqrt() * x0) / (1 - ab).sqrt(), nfe


# ----------------------------------------------------------------------------------------------------------------------
# Training with checkpoints


def train_arm(
    base,
    x_w: Tensor,  # (N, d) preferred
    x_l: Tensor,  # (N, d) dispreferred
    c: Tensor,  # (N,)
    schedule: NoiseSchedule,
    steps: int,
    every: int,
    evaluate: Callable,
    beta: float,
    lr: float,
    batch_size: int,
    seed: int,
    alpha: Tensor | None = None,  # (N,) SmPO's α; None: Diffusion-DPO on the given labels
    scale: float = 1.0,  # SmPO's k
    grid: list[int] | None = None,  # inversion grid; None: forward noising (shared t and ε)
    renoise_iters: int = 1,
) -> dict:
    """Adam on Diffusion-DPO (``alpha=None``) or SmPO from a copy of ``base`` (also the frozen reference), calling
    ``evaluate(policy)`` at step 0 and every ``every`` steps. With ``grid`` the noise of each sample is ReNoise's ε*
    from the current policy. Returns {"steps": [...], "evals": [evaluate(...) ...], "nfe": [cumulative network
    evaluations per training sample at each checkpoint], "loss": [mean loss per step]}."""
    if not (x_w.shape == x_l.shape and x_w.shape[0] == c.shape[0]):
        raise ValueError(f"x_w {tuple(x_w.shape)}, x_l {tuple(x_l.shape)} and c {tuple(c.shape)} do not match")
    policy, ref = copy.deepcopy(base).train(), copy.deepcopy(base).eval()
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    out = {"steps": [0], "evals": [evaluate(policy.eval())], "nfe": [0.0], "loss": []}
    nfe = 0.0  # per training sample (each pair has 2)
    for step in range(1, steps + 1):
        policy.train()
        idx = torch.randint(0, x_w.shape[0], (batch_size,), generator=gen)
        t = torch.randint(0, schedule.T, (batch_size,), generator=gen)  # shared by the pair
        bw, bl, bc = x_w[idx], x_l[idx], c[idx]
        if grid is None:
            noise = torch.randn(bw.shape, generator=gen)
            noise_l = None
        else:
            policy.eval()
            eps, n_inv = renoise_eps(policy, torch.cat([bw, bl]), torch.cat([bc, bc]), torch.cat([t, t]), schedule,
                                     grid, renoise_iters)  # fmt: skip
            noise, noise_l = eps[:batch_size], eps[batch_size:]
            nfe += n_inv / (2 * batch_size)
            policy.train()
        m_w, m_l = pair_mse(policy, bw, bl, bc, t, noise, schedule, noise_l)
        with torch.no_grad():
            r_w, r_l = pair_mse(ref, bw, bl, bc, t, noise, schedule, noise_l)
        if alpha is None:
            losses, _ = diffusion_dpo_loss(m_w, m_l, r_w, r_l, beta)
        else:
            losses, _ = smpo_loss(m_w, m_l, r_w, r_l, alpha[idx], beta, scale)
        opt.zero_grad()
        losses.mean().backward()
        opt.step()
        nfe += STEP_NFE
        out["loss"].append(float(losses.detach().mean()))
        if step % every == 0:
            out["steps"].append(step)
            out["evals"].append(evaluate(policy.eval()))
            out["nfe"].append(nfe)
    return out


def first_reach(values: list[float], target: float) -> int | None:
    """Index of the first value >= target, or None."""
    return next((i for i, v in enumerate(values) if v >= target), None)


# ----------------------------------------------------------------------------------------------------------------------
# The experiment


def run_smpo(world: PointsWorld, base, schedule: NoiseSchedule, seed: int, cfg: SmPOConfig, progress: bool = False):
    """One seed of Part B (see the module docstring). Returns {"units", "curves", "record", "speed"}: test-split oracle
    rewards per unit for the base and each arm at the standard length, the drop from the val-chosen peak to the end of
    the long run for DPO and SmPO, reward curves (val and test means) against steps and network evaluations, and for
    SmPO + ReNoise the network evaluations it needs to reach DPO's final val reward (relative to DPO's)."""
    gen = torch.Generator().manual_seed(seed)
    n, k_cls = cfg.n_pairs, world.n_classes
    c = torch.arange(n) % k_cls  # (n,) classes uniform
    cand = ddpm_sample(base, torch.cat([c, c]), schedule, 2 * n, gen)  # (2n, 2) two base samples per pair
    x_a, x_b = cand[:n], cand[n:]
    pairs = world.preference_pairs(torch.stack([x_a, x_b], 1), c, gen, cfg.temperature)  # the "human" labels
    rm_pairs: PointPairs = world.data_pairs(cfg.n_rm_pairs, gen, cfg.temperature)
    rm = fit_pointwise_rm(rm_pairs, k_cls, cfg.rm_steps, seed=seed)
    s_w, s_l, alpha, low, high = smpo_labels(rm, x_a, x_b, c)
    k = mean_scale_k(alpha)
    # agreement of each label source with the oracle's ordering (diagnostic only)
    r_a, r_b = world.oracle_reward(x_a, c), world.oracle_reward(x_b, c)
    oracle_first = r_a >= r_b
    rater_acc = float((world.oracle_reward(pairs.x_w, c) >= world.oracle_reward(pairs.x_l, c)).float().mean())
    rm_acc = float(((rm(x_a, c) >= rm(x_b, c)) == oracle_first).float().mean())

    def evaluate(model) -> dict:
        out = {}
        for split in ("val", "test"):
            x, cc = eval_samples(model, schedule, k_cls, cfg.eval_per_class, seed, split=split)
            out[split] = world.oracle_reward(x, cc).numpy()
        return out

    long_steps = cfg.long_factor * cfg.steps
    every = long_steps // cfg.n_checkpoints
    common = dict(beta=cfg.beta, lr=cfg.lr, batch_size=cfg.batch_size, seed=seed + 1)
    runs = {}
    it = [("dpo", long_steps), ("smpo", long_steps), ("smpo_renoise", cfg.steps)]
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="SmPO arms")
    for arm, steps in it:
        if arm == "dpo":
            runs[arm] = train_arm(base, pairs.x_w, pairs.x_l, c, schedule, steps, every, evaluate, **common)
        elif arm == "smpo":
            runs[arm] = train_arm(base, s_w, s_l, c, schedule, steps, every, evaluate, alpha=alpha, scale=k, **common)
        else:
            runs[arm] = train_arm(base, s_w, s_l, c, schedule, steps, cfg.steps // cfg.renoise_checkpoints, evaluate,
                                  alpha=alpha, scale=k, grid=inversion_grid(schedule.T, cfg.grid_points),
                                  renoise_iters=cfg.renoise_iters, **common)  # fmt: skip

    std_idx = {arm: r["steps"].index(cfg.steps) for arm, r in runs.items()}  # the standard-length checkpoint
    units = {"base": runs["dpo"]["evals"][0]["test"]}
    for arm, r in runs.items():
        units[arm] = r["evals"][std_idx[arm]]["test"]
    peaks = {}
    for arm in ("dpo", "smpo"):
        r = runs[arm]
        val = [float(e["val"].mean()) for e in r["evals"]]
        peak = int(np.argmax(val))
        peaks[arm] = r["steps"][peak]
        units[f"{arm}_drop"] = r["evals"][peak]["test"] - r["evals"][-1]["test"]
        units[f"{arm}_long"] = r["evals"][-1]["test"]

    # Speed: network evaluations (per training sample) SmPO + ReNoise needs to reach DPO's final val reward
    target = float(runs["dpo"]["evals"][std_idx["dpo"]]["val"].mean())
    dpo_nfe = runs["dpo"]["nfe"][std_idx["dpo"]]
    speed = {"target_val": round(target, 4), "dpo_nfe": round(dpo_nfe, 2)}
    for arm in ("smpo", "smpo_renoise"):
        r = runs[arm]
        val = [float(e["val"].mean()) for e in r["evals"]][: std_idx[arm] + 1]
        hit = first_reach(val, target)
        reached = hit is not None
        nfe = r["nfe"][hit] if reached else r["nfe"][std_idx[arm]]  # censored: the whole standard run
        speed[arm] = {"reached": reached, "nfe": round(nfe, 2), "nfe_ratio": round(nfe / dpo_nfe, 4),
                      "steps": r["steps"][hit] if reached else None}  # fmt: skip

    curves = {}
    for arm, r in runs.items():
        curves[arm] = {"steps": r["steps"], "nfe": [round(v, 2) for v in r["nfe"]],
                       "val": [round(float(e["val"].mean()), 4) for e in r["evals"]],
                       "test": [round(float(e["test"].mean()), 4) for e in r["evals"]],
                       "loss": [round(v, 4) for v in r["loss"]]}  # fmt: skip
    mean = {name: round(float(u.mean()), 4) for name, u in units.items()}
    record = {
        "base": {"reward": mean["base"]},
        "dpo": {"reward": mean["dpo"], "reward_long": mean["dpo_long"], "drop": mean["dpo_drop"],
                "peak_step": peaks["dpo"], "label_acc": round(rater_acc, 4)},
        "smpo": {"reward": mean["smpo"], "reward_long": mean["smpo_long"], "drop": mean["smpo_drop"],
                 "peak_step": peaks["smpo"], "label_acc": round(rm_acc, 4), "k": round(k, 4),
                 "alpha_mean": round(float(alpha.mean()), 4), "rm_low": round(low, 4), "rm_high": round(high, 4),
                 "nfe_ratio": speed["smpo"]["nfe_ratio"]},
        "smpo_renoise": {"reward": mean["smpo_renoise"], "nfe_ratio": speed["smpo_renoise"]["nfe_ratio"],
                         "reached": speed["smpo_renoise"]["reached"]},
    }  # fmt: skip
    return {"units": units, "curves": curves, "record": record, "speed": speed}


# ----------------------------------------------------------------------------------------------------------------------
# Claims (fixed before the first full dev run)

GATE = 0.05  # SG: DPO must raise the oracle reward over the base by more than this (a quarter of a working arm's gain)
DELTA = 0.05  # S1, S2, S4: minimum effect in oracle-reward units
SPEED = 0.5  # S3: SmPO + ReNoise must need at most this share of DPO's network evaluations (delta = 1 - SPEED)


def smpo_claims(results: list[dict], asserted: bool = True) -> list:
    """The claims of Part B from the per-seed outputs of :func:`run_smpo` (seeds in order)."""
    from .claims import compare, gate, per_seed

    u = {name: [r["units"][name] for r in results] for name in results[0]["units"]}
    paper = "Lu et al. 2025 (arXiv:2506.02698)"
    return [
        gate("SG", "Diffusion-DPO raises the oracle reward over the base model", "oracle reward (DPO - base)",
             [d - b for d, b in zip(u["dpo"], u["base"])], GATE, asserted=asserted),
        compare("S1", "SmPO (RM-smoothed labels) reaches a higher oracle reward than Diffusion-DPO at equal steps",
                "oracle reward (SmPO - DPO)", u["smpo"], u["dpo"], delta=DELTA, requires=["SG"],
                paper=f"{paper}, abstract / main table: SmPO beats Diffusion-DPO on reward metrics", asserted=asserted),
        compare("S2", "SmPO's drop from its peak under 4x training is smaller than Diffusion-DPO's",
                "drop from val-chosen peak to 4x end (SmPO - DPO)", u["smpo_drop"], u["dpo_drop"], delta=DELTA,
                direction="less", kind="secondary", requires=["SG"],
                paper=f"{paper}, abstract: 'mitigates excessive optimization'", asserted=asserted),
        per_seed("S3", f"SmPO + ReNoise reaches DPO's final val oracle reward with <= {SPEED} of DPO's network "
                 "evaluations", "network evaluations to reach (ratio to DPO's)",
                 [r["speed"]["smpo_renoise"]["nfe_ratio"] for r in results], 1.0, delta=1 - SPEED,
                 direction="less", kind="secondary", requires=["SG"],
                 paper=f"{paper}: '6.5x faster than Diffusion-DPO' (secondary source)", asserted=asserted),
        compare("S4", "ReNoise inversion adds to SmPO: SmPO + ReNoise > SmPO at equal steps",
                "oracle reward (SmPO+ReNoise - SmPO)", u["smpo_renoise"], u["smpo"], delta=DELTA, kind="secondary",
                requires=["SG"], paper=f"{paper}, ablation of the inversion (numbers not seen by us)",
                asserted=asserted),
    ]  # fmt: skip
