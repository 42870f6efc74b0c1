"""Pref-GRPO on the 2-D diffusion toy: group win rates under a pairwise reward model against pointwise scores.

Wang, Y., et al. (2025). *Pref-GRPO: Pairwise Preference Reward-based GRPO for Stable Text-to-Image Reinforcement
Learning.* arXiv:2508.20751; official code CodeGoat24/Pref-GRPO (first release 6c87cfe,
``fastvideo/train_flux_pref_grpo.py``, launcher ``finetune_prefgrpo_flux.sh``).

GRPO on a diffusion sampler (DanceGRPO / Flow-GRPO) samples a group of G images for a prompt, scores each with a reward
model, and standardises the scores within the group, A_i = (r_i - mean_j r_j) / (std_j r_j + 1e-8). The paper argues
that a pointwise reward model gives near-equal scores to a group's samples, so standardisation blows tiny score gaps up
into unit-size "illusory advantages" that the policy chases, and it hacks the reward model. Pref-GRPO keeps the GRPO
loop but judges every pair of the group with a pairwise preference model and rewards each sample by its win rate:

    WR_i = (1 / (G - 1)) Σ_{j ≠ i} w_ij,   w_ij = 1 if the judge prefers i to j, 0 if j, 1/2 for a tie      (l.73-142)
    A_i  = (WR_i - mean_j WR_j) / (std_j WR_j + 1e-8)                                                      (l.636-643)

with the C(G, 2) pairs judged once each in ``itertools.combinations`` order, still standardised by the group's std
(the method removes score rewards, not the normalisation). Policy loss: the PPO-clip surrogate at every trained
denoising step, ratio clip 1e-4, advantage clip ±5, no KL term (β = 0); G = 8; the group shares its initial noise
(``init_same_noise``); 60% of the timesteps are trained (``timestep_fraction 0.6``); lr 1e-5.

The toy (notebook 13, Part E). Classes of :class:`prefkit.worlds.points.PointsWorld` are the prompts, the cached base
:func:`prefkit.diffusion_pref.points_base` is the policy's start, and the sampler is the base's ancestral (DDPM)
sampler, whose per-step Gaussian log-probs (:func:`prefkit.diffusion.step_logprob`) are the policy's. Two reward
models are fitted on Bradley-Terry rater labels of *data* pairs (``world.data_pairs``), never on the oracle: a
:class:`~prefkit.worlds.points.PointwiseRM` and an antisymmetric :class:`~prefkit.worlds.points.PairwiseRM` (the
judge). Arms, at equal iterations and with the same training noise:

- ``pointwise``: r_φ(x, c) of the pointwise RM, std-normalised advantages (the baseline the paper criticises);
- ``pref_grpo``: the group win rate under the pairwise RM, std-normalised (the official code);
- ``pointwise_mean``: r_φ, mean-only advantages (a control of ours: no std normalisation, no illusory advantages).

Departures: no CLIP term (the release script adds 1.4·A_CLIP to 0.7·A_WR; the toy has no second reward), the judge
is the pairwise RM's sign (a tie only when its logit is exactly 0) instead of a VLM's parsed verdict, one Adam step
per iteration on all the group's trajectories (on-policy, so the ratio is 1 and the 1e-4 clip never binds, as in the
official single-step update), the trained 60% of the steps is one random subset per iteration shared by the batch
(the official code draws one per sample), and lr 1e-5 -> ``PrefGRPOConfig.lr`` (the toy's MLP needs a larger step).
"""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .diffusion import ddpm_sample, step_logprob
from .diffusion_pref import eval_samples
from .losses.diffusion import grpo_advantages, grpo_step_loss
from .worlds.points import fit_pairwise_rm, fit_pointwise_rm, rm_accuracy

Tensor = torch.Tensor

ARMS = ("pointwise", "pref_grpo", "pointwise_mean")  # (reward, std-normalised?) below
ARM_SPEC = {"pointwise": ("pointwise", True), "pref_grpo": ("win_rate", True), "pointwise_mean": ("pointwise", False)}


@dataclass
class PrefGRPOConfig:
    n_pairs: int = 600  # rater-labelled data pairs for each reward model (toy: few enough that r_φ is exploitable)
    rm_steps: int = 400  # full-batch Adam steps of the RM fits (points.fit_* default)
    iterations: int = 150  # GRPO iterations, equal for every arm (toy)
    group: int = 8  # G, samples per prompt (finetune_prefgrpo_flux.sh)
    groups_per_class: int = 2  # prompts per iteration: every class this many times (toy)
    same_noise: bool = True  # init_same_noise: a group shares its initial noise x_{T-1} (launcher)
    timestep_fraction: float = 0.6  # share of the stochastic steps trained per iteration (launcher)
    lr: float = 3e-4  # Adam (official 1e-5 on FLUX; the toy MLP needs more)
    clip: float = 1e-4  # PPO ratio clip (train_flux_pref_grpo.py)
    adv_clip: float = 5.0  # advantage clip (train_flux_pref_grpo.py)
    probe_every: int = 15  # iterations between the curves' probes
    probe_per_class: int = 64  # samples per class of a probe (validation noise)
    eval_per_class: int = 256  # evaluation units per class (test noise): 4 x 256 = 1024
    arms: tuple[str, ...] = ARMS

    @classmethod
    def smoke(cls) -> PrefGRPOConfig:
        return cls(n_pairs=300, rm_steps=100, iterations=4, groups_per_class=1, probe_every=2, probe_per_class=16,
                   eval_per_class=32)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# Rewards of a group


def pairwise_logits(judge, x: Tensor, c: Tensor) -> Tensor:
    """The judge's logits of P(i ≻ j | c) for every pair of each group, (B, G, G), antisymmetric, zero diagonal.

    x (B, G, d): a group of samples per prompt; c (B,). Each unordered pair is judged once, in
    ``itertools.combinations`` order as the official code does; the transposed entry is its negative.
    """
    if x.dim() != 3 or x.shape[0] != c.shape[0]:
        raise ValueError(f"x must have shape (B, G, d) with B = len(c) = {c.shape[0]}, got {tuple(x.shape)}")
    b, g, _ = x.shape
    i, j = map(list, zip(*itertools.combinations(range(g), 2)))  # C(G, 2) pairs, i < j
    with torch.no_grad():
        z = judge.logit(x[:, i].reshape(-1, x.shape[2]), x[:, j].reshape(-1, x.shape[2]), c.repeat_interleave(len(i)))
    logits = torch.zeros(b, g, g, dtype=z.dtype)
    logits[:, i, j] = z.reshape(b, len(i))
    logits[:, j, i] = -z.reshape(b, len(i))
    return logits


def group_win_rates(logits: Tensor) -> Tensor:
    """WR_i = (1/(G-1)) Σ_{j≠i} w_ij with w_ij = 1[logit_ij > 0] + ½·1[logit_ij = 0] (ties ½, official l.73-142).

    logits (B, G, G): the judge's antisymmetric logits of P(i ≻ j). Returns (B, G); each group's win rates average ½.
    """
    if logits.dim() != 3 or logits.shape[1] != logits.shape[2] or logits.shape[1] < 2:
        raise ValueError(f"logits must have shape (B, G, G) with G >= 2, got {tuple(logits.shape)}")
    g = logits.shape[1]
    wins = (logits > 0).to(torch.float32) + 0.5 * (logits == 0).to(torch.float32)  # (B, G, G), diagonal ½
    return (wins.sum(-1) - 0.5) / (g - 1)  # drop the diagonal's ½


def group_rewards(kind: str, rm, x: Tensor, c: Tensor) -> Tensor:
    """Rewards (B, G) of groups x (B, G, d) for prompts c (B,): ``"pointwise"`` r_φ(x, c), or ``"win_rate"`` the
    group win rate under the pairwise ``rm``."""
    b, g, d = x.shape
    if kind == "pointwise":
        with torch.no_grad():
            return rm(x.reshape(-1, d), c.repeat_interleave(g)).reshape(b, g)
    if kind == "win_rate":
        return group_win_rates(pairwise_logits(rm, x, c))
    raise ValueError(f"kind must be 'pointwise' or 'win_rate', got {kind!r}")


# ----------------------------------------------------------------------------------------------------------------------
# GRPO on the ancestral sampler, a group sharing its initial noise


def sample_groups(policy, c: Tensor, group: int, schedule, gen: torch.Generator, same_noise: bool = True):
    """G trajectories per prompt c (B,), prompts in blocks of G: returns (x (B·G, d), trajectory, classes (B·G,)).
    With ``same_noise`` the G samples of a prompt start from one x_{T-1} and differ only by the sampler's step noise."""
    cc = c.repeat_interleave(group)
    if same_noise:
        x_start = torch.randn(c.shape[0], policy.d, generator=gen).repeat_interleave(group, 0)
    else:
        x_start = torch.randn(cc.shape[0], policy.d, generator=gen)
    x, traj = ddpm_sample(policy, cc, schedule, cc.shape[0], gen, return_trajectory=True, x_start=x_start)
    return x, traj, cc


def trajectory_logprobs(policy, traj, c: Tensor, steps: Tensor, schedule) -> Tensor:
    """log p_θ of the sampled transitions ``steps`` (S,) (indices into the trajectory), with gradient, in one batched
    forward pass: (N, S)."""
    xs_t, xs_prev = traj.xs[steps], traj.xs[steps + 1]  # (S, N, d) each
    s, n, d = xs_t.shape
    t = traj.timesteps[steps].repeat_interleave(n)  # (S·N,)
    lp = step_logprob(policy, xs_t.reshape(-1, d), xs_prev.reshape(-1, d), t, c.repeat(s), schedule)
    return lp.reshape(s, n).T  # (N, S)


def grpo_iteration(policy, opt, kind: str, rm, normalize_std: bool, cfg: PrefGRPOConfig, schedule, n_classes: int,
                   gen: torch.Generator) -> dict:  # fmt: skip
    """One GRPO iteration: sample the groups, score them, group-relative advantages, one Adam step on the clipped
    surrogate of a random ``timestep_fraction`` of the steps. Returns per-group diagnostics (numpy arrays)."""
    c = torch.arange(n_classes).repeat(cfg.groups_per_class)  # (B,)
    b, g = c.shape[0], cfg.group
    x, traj, cc = sample_groups(policy, c, g, schedule, gen, cfg.same_noise)
    r = group_rewards(kind, rm, x.reshape(b, g, -1), c)  # (B, G)
    adv = grpo_advantages(r, normalize_std)  # (B, G)
    n_steps = traj.timesteps.shape[0]
    k = max(1, round(cfg.timestep_fraction * n_steps))
    steps = torch.randperm(n_steps, generator=gen)[:k].sort().values  # (S,)
    logp_new = trajectory_logprobs(policy, traj, cc, steps, schedule).reshape(b, g, k)
    losses, _ = grpo_step_loss(logp_new, traj.logps[:, steps].reshape(b, g, k), adv, cfg.clip, cfg.adv_clip)
    opt.zero_grad()
    losses.mean().backward()
    opt.step()
    return {"spread": r.std(-1).numpy(), "abs_adv": adv.abs().mean(-1).numpy(), "reward": r.mean(-1).numpy()}


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def win_units(rm, x: Tensor, x_ref: Tensor, c: Tensor) -> Tensor:
    """Per-unit RM win of x[i] over x_ref[i]: 1, ½ (tie) or 0, (N,). Its mean is ``points.rm_win_rate``."""
    p = rm.prob(x, x_ref, c)
    return (p > 0.5).double() + 0.5 * (p == 0.5).double()


def oracle_win_units(oracle, x: Tensor, x_ref: Tensor, c: Tensor) -> Tensor:
    """Per-unit oracle win of x[i] over x_ref[i]: 1, ½ or 0, (N,). Its mean is ``points.oracle_win_rate``."""
    r, r_ref = oracle(x, c), oracle(x_ref, c)
    return (r > r_ref).double() + 0.5 * (r == r_ref).double()


def hack_gap_units(rm, oracle, x: Tensor, c: Tensor, x_ref: Tensor) -> Tensor:
    """Per-unit contributions to ``points.hack_gap`` (their mean): RM win minus oracle win of x[i] over x_ref[i],
    in {-1, -½, 0, ½, 1}, (N,)."""
    if x.shape != x_ref.shape:
        raise ValueError(f"x and x_ref must have the same shape, got {tuple(x.shape)} and {tuple(x_ref.shape)}")
    return win_units(rm, x, x_ref, c) - oracle_win_units(oracle, x, x_ref, c)


@torch.no_grad()
def _probe(world, policy, rms: dict, own: str, x_base: Tensor, c: Tensor, schedule, cfg, seed: int) -> dict:
    """Curves' point: oracle reward, r_φ, and the own RM's and the oracle's win rates over the base (val noise)."""
    x, _ = eval_samples(policy, schedule, world.n_classes, cfg.probe_per_class, seed, split="val")
    return {
        "oracle": float(world.oracle_reward(x, c).mean()),
        "rm_pointwise": float(rms["pointwise"](x, c).mean()),
        "rm_win": float(win_units(rms[own], x, x_base, c).mean()),
        "oracle_win": float(oracle_win_units(world.oracle_reward, x, x_base, c).mean()),
    }


def noise_sharing_effect(base, rm, schedule, n_classes: int, group: int, seed: int, n_groups: int = 16) -> dict:
    """Mean within-group spread (std) of r_φ at the base with the group's initial noise shared and not shared."""
    out = {}
    c = torch.arange(n_classes).repeat(n_groups)
    for same in (True, False):
        gen = torch.Generator().manual_seed(seed)
        x, _, _ = sample_groups(base, c, group, schedule, gen, same)
        out["shared" if same else "independent"] = float(group_rewards("pointwise", rm, x.reshape(len(c), group, -1),
                                                                       c).std(-1).mean())  # fmt: skip
    return out


# ----------------------------------------------------------------------------------------------------------------------
# One seed, every arm


def fit_reward_models(world, seed: int, cfg: PrefGRPOConfig) -> tuple[dict, dict]:
    """The pointwise and the pairwise RM, fitted on rater labels of ``cfg.n_pairs`` data pairs drawn by ``seed``;
    returns (rms, held-out accuracies on as many fresh pairs)."""
    train = world.data_pairs(cfg.n_pairs, rng=seed)
    test = world.data_pairs(cfg.n_pairs, rng=seed + 50_000)
    rms = {"pointwise": fit_pointwise_rm(train, world.n_classes, cfg.rm_steps, seed=seed),
           "win_rate": fit_pairwise_rm(train, world.n_classes, cfg.rm_steps, seed=seed)}  # fmt: skip
    return rms, {k: round(rm_accuracy(m, test), 4) for k, m in rms.items()}


def train_arm(world, base, schedule, kind: str, rm, normalize_std: bool, rms: dict, seed: int, cfg: PrefGRPOConfig,
              x_probe_base: Tensor, c_probe: Tensor, progress: bool = False):  # fmt: skip
    """GRPO from a copy of ``base`` with one arm's reward; returns (policy, curves)."""
    policy = copy.deepcopy(base).eval()
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)  # the same training noise for every arm of a seed
    curves: dict[str, list] = {"iteration": [], "oracle": [], "rm_pointwise": [], "rm_win": [], "oracle_win": [],
                               "spread": [], "abs_adv": []}  # fmt: skip
    it = range(cfg.iterations + 1)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=kind)
    for i in it:
        if i % cfg.probe_every == 0 or i == cfg.iterations:
            p = _probe(world, policy, rms, kind, x_probe_base, c_probe, schedule, cfg, seed)
            curves["iteration"].append(i)
            for key, v in p.items():
                curves[key].append(round(v, 4))
        if i == cfg.iterations:
            break
        d = grpo_iteration(policy, opt, kind, rm, normalize_std, cfg, schedule, world.n_classes, gen)
        curves["spread"].append(round(float(d["spread"].mean()), 5))
        curves["abs_adv"].append(round(float(d["abs_adv"].mean()), 4))
    return policy.eval(), curves


def run_prefgrpo(world, base, schedule, seed: int, cfg: PrefGRPOConfig, progress: bool = False) -> dict:
    """Every arm of ``cfg.arms`` for one seed. Units (1024 in full: eval_samples test noise, paired across arms and
    with the base): ``oracle_<arm>`` / ``oracle_base`` the oracle reward, ``gap_<arm>`` the per-unit hack gap over the
    base under the arm's own RM (the pairwise RM for pref_grpo, the pointwise one otherwise)."""
    for a in cfg.arms:
        if a not in ARM_SPEC:
            raise ValueError(f"cfg.arms holds {a!r}; known arms are {list(ARM_SPEC)}")
    t0 = time.perf_counter()
    rms, acc = fit_reward_models(world, seed, cfg)
    x_pb, c_pb = eval_samples(base, schedule, world.n_classes, cfg.probe_per_class, seed, split="val")
    x_base, c = eval_samples(base, schedule, world.n_classes, cfg.eval_per_class, seed)
    units = {"oracle_base": world.oracle_reward(x_base, c).numpy()}
    curves, record = {}, {}
    for arm in cfg.arms:
        kind, std = ARM_SPEC[arm]
        policy, curves[arm] = train_arm(world, base, schedule, kind, rms[kind], std, rms, seed, cfg, x_pb, c_pb,
                                        progress)  # fmt: skip
        x, _ = eval_samples(policy, schedule, world.n_classes, cfg.eval_per_class, seed)
        units[f"oracle_{arm}"] = world.oracle_reward(x, c).numpy()
        units[f"gap_{arm}"] = hack_gap_units(rms[kind], world.oracle_reward, x, c, x_base).numpy()
        other = "win_rate" if kind == "pointwise" else "pointwise"
        sp = np.asarray(curves[arm]["spread"])
        q = max(1, len(sp) // 4)
        record[arm] = {
            "oracle": round(float(units[f"oracle_{arm}"].mean()), 4),
            "hack_gap": round(float(units[f"gap_{arm}"].mean()), 4),
            "hack_gap_other_rm": round(float(hack_gap_units(rms[other], world.oracle_reward, x, c, x_base).mean()), 4),
            "rm_pointwise": round(float(rms["pointwise"](x, c).detach().mean()), 4),
            "spread_late_over_early": round(float(sp[-q:].mean() / sp[:q].mean()), 4),
            "mode_shares": {k: round(v, 4) for k, v in world.mode_shares(x, c).items()},
        }
    with torch.no_grad():
        record["base"] = {"oracle": round(float(units["oracle_base"].mean()), 4),
                          "rm_pointwise": round(float(rms["pointwise"](x_base, c).mean()), 4),
                          "mode_shares": {k: round(v, 4) for k, v in world.mode_shares(x_base, c).items()}}  # fmt: skip
    sharing = noise_sharing_effect(base, rms["pointwise"], schedule, world.n_classes, cfg.group, seed)
    return {"units": units, "curves": curves, "record": record, "rm_accuracy": acc,
            "noise_sharing": {k: round(v, 4) for k, v in sharing.items()}, "config": asdict(cfg),
            "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# Claims of Part E, fixed before the first full dev run

GATE_GAP = 0.1  # PG: the pointwise arm's hack gap over the base must exceed this (win-rate units)
DELTA = 0.05  # P1 (win-rate units) and P2 (oracle reward): the brief's default minimum effect
DELTA_SPREAD = 0.25  # P3: the within-group spread must shrink by at least a quarter (ratio late/early <= 0.75)


def prefgrpo_claims(results: list[dict], compare, gate, per_seed, asserted: bool = True) -> list:
    """PG, P1-P3 from ``run_prefgrpo`` results of several seeds (the claim builders are passed in)."""
    u = [r["units"] for r in results]
    paper = "Wang et al. 2025, arXiv:2508.20751, abstract"
    return [
        gate("PG", "GRPO on a pointwise RM with std-normalised advantages hacks it: the RM's win rate of the trained "
             "policy over the base exceeds the oracle's by more than 0.1", "hack gap (RM win - oracle win), pointwise",
             [x["gap_pointwise"] for x in u], GATE_GAP, paper="— (ours; the paper's premise)", asserted=asserted),
        compare("P1", "Pref-GRPO (win rate under a pairwise RM) hacks its reward model less than pointwise GRPO",
                "hack gap, pref_grpo - pointwise", [x["gap_pref_grpo"] for x in u], [x["gap_pointwise"] for x in u],
                delta=DELTA, direction="less", requires=["PG"], paper=paper, asserted=asserted),
        compare("P2", "Pref-GRPO ends with a higher oracle reward than pointwise GRPO at equal iterations",
                "oracle reward, pref_grpo - pointwise", [x["oracle_pref_grpo"] for x in u],
                [x["oracle_pointwise"] for x in u], delta=DELTA, requires=["PG"], paper=paper, asserted=asserted),
        per_seed("P3", "Illusory advantages: under pointwise GRPO the within-group RM spread shrinks over training "
                 "(last quarter / first quarter of iterations) while std normalisation keeps mean |A| ~ 0.8",
                 "spread ratio late/early, pointwise", [r["record"]["pointwise"]["spread_late_over_early"]
                                                        for r in results], 1.0,
                 delta=DELTA_SPREAD, direction="less", kind="secondary", paper="— (ours; the paper's mechanism)",
                 asserted=asserted),
    ]  # fmt: skip
