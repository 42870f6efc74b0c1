"""MaPO against Diffusion-DPO under reference mismatch, in the 2-D points world (notebook 13, Part A).

MaPO (Hong, Paul, Lee, Rasul, Thorne, Jeong 2024, "Margin-aware Preference Optimization for Aligning Diffusion Models
without Reference", arXiv:2406.06424; official code mapo-t2i/mapo) claims that Diffusion-DPO's reference model hurts
when the preferred data lies where the reference puts little mass ("reference mismatch", e.g. a new style), and that
MaPO's advantage "grows dramatically with reference mismatch severity". Its loss (utils.py l.286-301, as
:func:`prefkit.losses.diffusion.mapo_loss`) is an SFT term on the preferred sample plus a reference-free margin.

The toy sweep. Each *level* is a (base model, target style) pair, ordered by how far the target is from the base:

    level "p=0.2"   base trained on data with the styled mode at frequency 0.2; target: that styled mode
    level "p=0.02"  base trained with the styled mode at frequency 0.02; the same target
    level "novel"   the p = 0.2 base; target: the novel style (radius 4.5), where the base has almost no mass

Preference pairs, as in MaPO's Pick-Style (styled vs plain generations of one base): chosen = samples of the target
styled mode (drawn from the world's data distribution of that mode), rejected = the base's own samples of the same
class, as they come (mostly plain). Arms, each a fresh copy of the level's base trained for the same steps on the same
pairs: Diffusion-DPO (the base as reference), MaPO (no reference) and SFT on the chosen samples (MaPO's first term
alone). Every arm is evaluated on the same evaluation noise (:func:`prefkit.diffusion_pref.eval_samples`): unit i of
two arms, or of two levels, is one starting noise; the metric is the level's oracle reward (the bump on its target).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .diffusion import ddpm_sample
from .diffusion_pref import DiffusionBaseConfig, eval_samples, points_base, train_pairs
from .losses.diffusion import diffusion_dpo_loss, mapo_loss

Tensor = torch.Tensor
LEVELS = ("p=0.2", "p=0.02", "novel")  # increasing reference mismatch


def sft_chosen_loss(mse_w: Tensor, mse_l: Tensor) -> tuple[Tensor, Tensor]:
    """SFT on the preferred samples: the denoising error m_θ(x_w) alone (MaPO's loss with β = 0), (B,) each."""
    return mse_w, mse_w.detach()


@dataclass
class MaPOSweepConfig:
    levels: tuple[str, ...] = LEVELS
    base: DiffusionBaseConfig = field(default_factory=DiffusionBaseConfig)
    n_pairs_per_class: int = 500  # chosen/rejected pairs per class
    steps: int = 600  # Adam steps per arm
    eval_every: int = 100  # checkpoints: every this many steps (the arm's stopping step is chosen on them)
    batch_size: int = 256
    lr: float = 3e-4
    dpo_betas: tuple[float, ...] = (200.0, 500.0, 2000.0)  # Diffusion-DPO β grid, official scale (SD1.5 2000)
    mapo_betas: tuple[float, ...] = (0.01, 0.03, 0.1)  # MaPO β grid up to the official 0.1 (β -> 0 is SFT)
    mapo_snr: float = 0.5  # MaPO's official constants (args.py): snr 0.5, T 1000
    mapo_T: int = 1000
    n_eval_per_class: int = 256
    samples_to_keep: int = 64  # per class, per arm, for the figure

    @classmethod
    def smoke(cls) -> MaPOSweepConfig:
        return cls(base=DiffusionBaseConfig(steps=400), n_pairs_per_class=100, steps=40, eval_every=20,
                   dpo_betas=(2000.0,), mapo_betas=(0.1,), n_eval_per_class=32, samples_to_keep=16)  # fmt: skip


def level_worlds(world, level: str):
    """(the world the level's base is trained on, the world whose styled mode is the target and whose oracle scores)."""
    if level == "p=0.2":
        return world, world
    if level.startswith("p="):
        base_world = world.with_style_frequency(float(level[2:]))
        return base_world, base_world
    if level == "novel":
        return world, replace(world, novel_style=True)
    raise ValueError(f"unknown level {level!r}; expected one of {LEVELS} or 'p=<frequency>'")


def preference_data(base, schedule, target_world, n_per_class: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Pick-Style-like pairs: (x_w target styled samples, x_l the base's samples of the same class, c)."""
    gen = torch.Generator().manual_seed(seed)
    k = target_world.n_classes
    c = torch.arange(k).repeat_interleave(n_per_class)
    x_w = target_world.modes()[c, 1].to(torch.float32) + target_world.mode_std * torch.randn(len(c), 2, generator=gen)
    x_l = ddpm_sample(base, c, schedule, len(c), gen)
    return x_w, x_l, c


def fit_and_select(base, schedule, x_w, x_l, c, loss, grid: dict[str, dict], cfg: MaPOSweepConfig, seed: int, target):
    """Train one arm per hyper-parameter setting in ``grid`` ({label: hparams}) and evaluate every checkpoint on the
    validation and the test noise; the arm's result is the (setting, checkpoint) with the best mean validation
    oracle reward. Returns {"units": test rewards (N,) at the chosen checkpoint, "choice": (label, step), "curves":
    {label: [(step, val mean, test mean), ...]}, "final": test rewards (N,) at the last step of the chosen setting,
    "model": the chosen checkpoint's weights}."""
    n, k = cfg.n_eval_per_class, target.n_classes
    curves, best = {}, None
    for label, hp in grid.items():
        rows, finals = [], {}

        def evaluate(step, policy, label=label, rows=rows, finals=finals):
            nonlocal best
            if step % cfg.eval_every and step != cfg.steps:
                return
            x_val, c_val = eval_samples(policy, schedule, k, n, seed, split="val")
            x, cc = eval_samples(policy, schedule, k, n, seed)
            val, test = target.oracle_reward(x_val, c_val), target.oracle_reward(x, cc)
            rows.append((step, round(float(val.mean()), 4), round(float(test.mean()), 4)))
            finals["units"] = test.numpy().astype(np.float64)
            if best is None or float(val.mean()) > best["val"]:
                best = {"val": float(val.mean()), "units": test.numpy().astype(np.float64), "choice": (label, step),
                        "model": {n_: v.clone() for n_, v in policy.state_dict().items()}}  # fmt: skip

        train_pairs(base, x_w, x_l, c, loss, schedule, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                    seed=seed, on_step=evaluate, **hp)  # fmt: skip
        curves[label] = rows
        if best["choice"][0] == label:
            best["final"] = finals["units"]
    return {"units": best["units"], "choice": best["choice"], "curves": curves, "final": best["final"],
            "model": best["model"]}  # fmt: skip


def run_mapo_sweep(world, seed: int, cfg: MaPOSweepConfig, progress: bool = False) -> dict:
    """Every level and arm for one seed. Returns {"units": {(level, arm): (N,) test oracle rewards at the arm's
    chosen setting and checkpoint}, "final": {(level, arm): (N,) at its last step}, "choice": {(level, arm): (setting,
    step)}, "curves": {(level, arm): {setting: [(step, val, test)]}}, "samples": {(level, arm): (x, c) for figures},
    "record": {"level | arm": summary}}; arm "base" is the level's base model itself."""
    out = {key: {} for key in ("units", "final", "choice", "curves", "samples", "record")}
    it = cfg.levels
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(cfg.levels, desc=f"MaPO sweep, seed {seed}")
    for li, level in enumerate(it):
        base_world, target = level_worlds(world, level)
        base, schedule = points_base(base_world, cfg.base)
        x_w, x_l, c = preference_data(base, schedule, target, cfg.n_pairs_per_class, 1000 * seed + li)
        mapo = dict(snr=cfg.mapo_snr, T=cfg.mapo_T)
        arms = {
            "Diffusion-DPO": (diffusion_dpo_loss, {f"β={b:g}": {"beta": b} for b in cfg.dpo_betas}),
            "MaPO": (mapo_loss, {f"β={b:g}": {"beta": b, **mapo} for b in cfg.mapo_betas}),
            "SFT on chosen": (sft_chosen_loss, {"-": {}}),
        }
        x, cc = eval_samples(base, schedule, world.n_classes, cfg.n_eval_per_class, seed)
        results = {"base": {"units": target.oracle_reward(x, cc).numpy().astype(np.float64), "choice": ("-", 0),
                            "curves": {}, "final": None, "model": None}}  # fmt: skip
        for arm, (loss, grid) in arms.items():
            results[arm] = fit_and_select(base, schedule, x_w, x_l, c, loss, grid, cfg, seed, target)
        for arm, r in results.items():
            key = (level, arm)
            out["units"][key], out["choice"][key], out["curves"][key] = r["units"], r["choice"], r["curves"]
            out["final"][key] = r["units"] if r["final"] is None else r["final"]
            model = base
            if r["model"] is not None:
                model = copy.deepcopy(base)
                model.load_state_dict(r["model"])
            xs, cs = eval_samples(model, schedule, world.n_classes, cfg.samples_to_keep, seed)
            out["samples"][key] = (xs.numpy(), cs.numpy())
            out["record"][f"{level} | {arm}"] = {
                "oracle_reward": round(float(r["units"].mean()), 4),
                "final_oracle_reward": round(float(out["final"][key].mean()), 4),
                "setting": r["choice"][0], "step": r["choice"][1],
                "on_target": round(target.mode_shares(xs, cs)["styled"], 4),
            }  # fmt: skip
    return out
