"""Score image preference pairs with a diffusers text-to-image pipeline's Diffusion-DPO implicit reward.

Diffusion-DPO (Wallace et al. 2024, "Diffusion Model Alignment Using Direct Preference Optimization",
arXiv:2311.12908) has no tractable likelihood, so it puts a denoising error where DPO puts a log-prob. For a pair
(x_w preferred, x_l rejected, prompt c), with one timestep t ~ U{0, ..., T-1} and one noise draw ε shared by the two
images (SalesforceAIResearch/DiffusionDPO train.py l.1044-1055), z = the VAE latent of an image, z_t =
scheduler.add_noise(z, ε, t) and target ε (or the velocity v for a v-prediction model):

    m_θ(x) = mean_{C,H,W} (target - ε_θ(z_t, t, c))²                   (train.py l.1125; likewise m_ref with ε_ref)
    margin = -0.5 β [(m_θ(x_w) - m_ref(x_w)) - (m_θ(x_l) - m_ref(x_l))]  (train.py l.1142-1145)

which is the argument of the loss -log σ(margin) (:func:`prefkit.losses.diffusion.diffusion_dpo_loss`). The implicit
reward margin of a pair is its expectation over (t, ε); we estimate it by the mean over ``n_draws`` draws. A pair is
ranked right when its margin is > 0; the paper reports 72.0% implicit-reward accuracy for DPO-SDXL on Pick-a-Pic.
β only scales the margins; it changes neither their signs nor the accuracy.

This module **scores pairs only**. Training a diffusers UNet with Diffusion-DPO is not implemented here: the machines
this repository is tested on have no GPU, so a training loop for a real text-to-image model could never be checked
on one; the losses and their optimisation behaviour are covered by the 2-D toy (:mod:`prefkit.diffusion_pref`).
Scoring is checked here on a tiny randomly initialised pipeline built offline (tests/test_hf_diffusion.py).

Departures from the training code, and why:
- latents are the VAE posterior's **mean**, not a sample from it (train.py samples): a score should be a
  deterministic function of the image and the (t, ε) draws, with no extra noise from the encoder;
- images are resized (shorter side) and centre-cropped to the UNet's resolution, never flipped or randomly cropped;
- the scheduler is always a ``DDPMScheduler`` built from the pipeline's scheduler config, as the training code does
  (the saved pipeline may name another sampler; only its β schedule and prediction type matter here);
- each pair's (t, ε) come from its own generator seeded by (seed, pair index), so a margin does not depend on the
  batch size, the order of the pairs, or on which image is listed as chosen;
- the VAE runs in float32 (SDXL's VAE overflows in float16) and the errors are computed in float32 (train.py casts
  the predictions with ``.float()``).

Only single-text-encoder pipelines (Stable Diffusion 1.x / 2.x layout) are supported; SDXL's second text encoder and
its extra conditioning are not. diffusers is imported inside the functions, so prefkit imports without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .data import PreferenceDataError, read_rows
from .losses.diffusion import diffusion_dpo_loss
from .models import resolve_device

Tensor = torch.Tensor
PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")  # the sub-folders a pipeline folder must have


@dataclass
class PipelineParts:
    """The pieces of a Stable Diffusion pipeline that scoring needs (no safety checker, no sampler loop)."""

    unet: Any  # diffusers UNet2DConditionModel, eval mode, in the requested dtype
    vae: Any  # diffusers AutoencoderKL, eval mode, float32
    text_encoder: Any  # transformers CLIPTextModel, eval mode, in the requested dtype
    tokenizer: Any  # transformers CLIPTokenizer
    scheduler: Any  # diffusers DDPMScheduler built from the pipeline's scheduler config


@dataclass(frozen=True)
class ImagePair:
    prompt: str
    chosen: Path  # the preferred image x_w
    rejected: Path  # x_l


class ImplicitRewards(NamedTuple):
    margins: np.ndarray  # (N,) mean over draws of -0.5 β [(m_θ - m_ref)(x_w) - (m_θ - m_ref)(x_l)]
    accuracy: float  # share of pairs with margin > 0; an exact tie (policy = reference) counts half
    losses: np.ndarray  # (N,) mean over draws of -log σ(margin_draw); ln 2 when policy = reference


def _check_pipeline_folder(path: Path) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder (expected a diffusers pipeline folder, e.g. one written by "
                                "StableDiffusionPipeline.save_pretrained)")  # fmt: skip
    index = path / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{path} is not a diffusers pipeline folder: it has no model_index.json")
    components = json.loads(index.read_text(encoding="utf-8"))
    if "text_encoder_2" in components:
        raise ValueError(f"{path}: pipelines with two text encoders (SDXL) are not supported; use a Stable Diffusion "
                         "1.x / 2.x layout (one CLIP text encoder)")  # fmt: skip
    for part in PARTS:
        if not (path / part).is_dir():
            raise FileNotFoundError(f"{path} is not a complete diffusers pipeline folder: sub-folder {part!r} is "
                                    f"missing (scoring needs {', '.join(PARTS)})")  # fmt: skip


def load_unet(path: str | Path, device: str | torch.device = "auto", dtype: torch.dtype = torch.float32):
    """A UNet2DConditionModel from a pipeline folder (its ``unet/``) or from a folder holding only a UNet (how
    Diffusion-DPO checkpoints are often shared), in eval mode on ``device`` ("auto": CUDA if available)."""
    from diffusers import UNet2DConditionModel

    path = Path(path).expanduser()
    if (path / "unet" / "config.json").is_file():
        path = path / "unet"
    elif not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: neither a pipeline folder with a 'unet' sub-folder nor a UNet folder "
                                "(no config.json)")  # fmt: skip
    return UNet2DConditionModel.from_pretrained(path, torch_dtype=dtype).to(resolve_device(str(device))).eval()


def load_pipeline_parts(
    path: str | Path, device: str | torch.device = "auto", dtype: torch.dtype = torch.float32
) -> PipelineParts:
    """UNet, VAE, text encoder, tokenizer and scheduler of a local diffusers pipeline folder (never a Hub id: nothing
    is downloaded), on ``device`` ("auto": CUDA if available). The UNet and the text encoder are loaded in ``dtype``,
    the VAE in float32. Prefer float32 for scoring: a margin is β times a small difference of errors, and float16
    predictions move it (on an H200, a tiny pipeline's margins of 1-20 differed from the CPU's by up to 0.3 in float16,
    0.04 in float32)."""
    from diffusers import AutoencoderKL, DDPMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer

    path = Path(path).expanduser()
    _check_pipeline_folder(path)
    device = resolve_device(str(device))
    return PipelineParts(
        unet=load_unet(path, device, dtype),
        vae=AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=torch.float32).to(device).eval(),
        text_encoder=CLIPTextModel.from_pretrained(path, subfolder="text_encoder", dtype=dtype).to(device).eval(),
        tokenizer=CLIPTokenizer.from_pretrained(path, subfolder="tokenizer"),
        scheduler=DDPMScheduler.from_pretrained(path, subfolder="scheduler"),  # train.py: DDPMScheduler, whatever the pipeline samples with
    )  # fmt: skip


def load_pairs(path: str | Path) -> list[ImagePair]:
    """Image preference pairs from a ``.jsonl`` (one object per line) or ``.json`` (a list of objects) file whose rows
    hold ``prompt`` (non-empty text), ``chosen`` and ``rejected`` (image files, relative to the pairs file's folder or
    absolute). Errors name the file, the line or row and the field."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PreferenceDataError(
            None, None, "no such file (expected a .jsonl or .json file of image pairs)", str(path)
        )
    if path.suffix.lower() not in (".jsonl", ".json"):
        raise PreferenceDataError(
            None, None, f"has an unsupported type {path.suffix!r} (use .jsonl or .json)", str(path)
        )
    rows, lines, name = read_rows(path)
    if not rows:
        raise PreferenceDataError(None, None, "holds no pairs", name)
    pairs = []
    try:
        for i, r in enumerate(rows):
            if not isinstance(r, dict):
                raise PreferenceDataError(
                    i, None, f"must be an object with prompt, chosen, rejected; got {type(r).__name__}"
                )
            for field in ("prompt", "chosen", "rejected"):
                if field not in r:
                    raise PreferenceDataError(i, field, "is missing")
                if not isinstance(r[field], str) or not r[field].strip():
                    raise PreferenceDataError(i, field, f"must be a non-empty string, got {r[field]!r}")
            files = {}
            for field in ("chosen", "rejected"):
                f = Path(r[field]).expanduser()
                f = f if f.is_absolute() else path.parent / f
                if not f.is_file():
                    raise PreferenceDataError(i, field, f"no such image file {str(f)!r}")
                files[field] = f
            pairs.append(ImagePair(r["prompt"], files["chosen"], files["rejected"]))
    except PreferenceDataError as e:
        raise e.located(name, lines) from None
    return pairs


def image_tensor(file: Path, resolution: int) -> Tensor:
    """(3, resolution, resolution) in [-1, 1]: RGB, shorter side resized to ``resolution`` (bilinear), centre crop
    (the training code's Resize + CenterCrop + Normalize([0.5], [0.5]), without its random flip)."""
    from PIL import Image

    with Image.open(file) as im:
        im = im.convert("RGB")
        scale = resolution / min(im.size)
        w, h = max(resolution, round(im.width * scale)), max(resolution, round(im.height * scale))
        im = im.resize((w, h), Image.BILINEAR)
        left, top = (w - resolution) // 2, (h - resolution) // 2
        im = im.crop((left, top, left + resolution, top + resolution))
        x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1)  # (3, H, W) in [0, 1]
    return x * 2.0 - 1.0


def _pair_generator(seed: int, index: int) -> torch.Generator:
    """A CPU generator for one pair, seeded by (seed, pair index): the pair's draws never depend on the batching."""
    state = np.random.SeedSequence([seed, index]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


@torch.no_grad()
def _latents(vae, pixels: Tensor) -> Tensor:
    """z = (mean of q(z | x) - shift) * scaling_factor, float32 (B, C, h, w); the posterior mean, not a sample."""
    z = vae.encode(pixels.to(vae.device, torch.float32)).latent_dist.mean
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (z - shift) * vae.config.scaling_factor


@torch.no_grad()
def _prompt_embeddings(text_encoder, tokenizer, prompts: list[str]) -> Tensor:
    ids = tokenizer(prompts, max_length=tokenizer.model_max_length, padding="max_length", truncation=True,
                    return_tensors="pt").input_ids  # fmt: skip
    return text_encoder(ids.to(text_encoder.device))[0]  # (B, L, D) last hidden state, as train.py conditions


@torch.no_grad()
def implicit_rewards(
    policy_unet,
    ref_unet,
    vae,
    text_encoder,
    tokenizer,
    scheduler,
    pairs: list[ImagePair],
    beta: float = 5000.0,
    n_draws: int = 4,
    seed: int = 0,
    batch_size: int = 4,
    resolution: int | None = None,
    progress: bool = False,
) -> ImplicitRewards:
    """Diffusion-DPO implicit reward margins of ``pairs`` under ``policy_unet`` against ``ref_unet`` (both
    UNet2DConditionModel on one device, in one dtype), estimated with ``n_draws`` draws of (t, ε) per pair, each shared by the pair's
    two images; see the module docstring for the equations and departures. Scores pairs only: nothing is trained.

    ``beta``: the official code's β (train.py default 5000, SDXL; its SD1.5 runs use 2000); it only scales margins.
    ``resolution``: the image side fed to the VAE; default the UNet's ``sample_size`` times the VAE's down-sampling.
    Deterministic given ``seed``: the same pairs give the same margins whatever ``batch_size``; swapping each pair's
    chosen and rejected images negates every margin. Returns margins (N,), accuracy and per-pair losses (N,).
    """
    if not pairs:
        raise ValueError("pairs is empty")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    prediction_type = scheduler.config.prediction_type
    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"scheduler prediction_type {prediction_type!r} is not supported (epsilon or v_prediction)")
    down = 2 ** (len(vae.config.block_out_channels) - 1)
    resolution = resolution or policy_unet.config.sample_size * down
    T = scheduler.config.num_train_timesteps
    device, dtype = policy_unet.device, policy_unet.dtype

    margins, losses = np.zeros(len(pairs)), np.zeros(len(pairs))
    starts = range(0, len(pairs), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="implicit rewards", unit="batch")
    for start in starts:
        batch = pairs[start : start + batch_size]
        B = len(batch)
        pixels = torch.stack([image_tensor(p.chosen, resolution) for p in batch]
                             + [image_tensor(p.rejected, resolution) for p in batch])  # (2B, 3, H, W): x_w then x_l  # fmt: skip
        z0 = _latents(vae, pixels).to(device)  # (2B, C, h, w) float32
        cond = _prompt_embeddings(text_encoder, tokenizer, [p.prompt for p in batch]).to(device, dtype)  # (B, L, D)
        cond = torch.cat([cond, cond])  # (2B, L, D): both images of a pair see their prompt
        gens = [_pair_generator(seed, start + j) for j in range(B)]
        t = torch.stack([torch.randint(0, T, (n_draws,), generator=g) for g in gens])  # (B, K): t ~ U{0..T-1}
        eps = torch.stack([torch.randn((n_draws, *z0.shape[1:]), generator=g) for g in gens])  # (B, K, C, h, w)
        inside = torch.zeros(B, n_draws)
        for k in range(n_draws):
            t_k = torch.cat([t[:, k], t[:, k]]).to(device)  # (2B,): one t for both images of a pair (l.1044)
            eps_k = torch.cat([eps[:, k], eps[:, k]]).to(device)  # (2B, C, h, w): one ε for both images (l.1053-1055)
            z_t = scheduler.add_noise(z0, eps_k, t_k)  # √ᾱ_t z0 + √(1-ᾱ_t) ε
            target = eps_k if prediction_type == "epsilon" else scheduler.get_velocity(z0, eps_k, t_k)
            mse = []
            for unet in (policy_unet, ref_unet):
                pred = unet(z_t.to(dtype), t_k, encoder_hidden_states=cond).sample
                mse.append((pred.float() - target).pow(2).mean(dim=(1, 2, 3)))  # (2B,) m, mean over C,H,W (l.1125)
            (m_w, m_l), (r_w, r_l) = (m.split(B) for m in mse)
            loss, inside_k = diffusion_dpo_loss(m_w, m_l, r_w, r_l, beta)  # inside: -0.5 β (Δθ - Δref), l.1142-1145
            inside[:, k] = inside_k.cpu()
            losses[start : start + B] += loss.cpu().double().numpy() / n_draws
        margins[start : start + B] = inside.double().mean(1).numpy()  # Monte Carlo mean over (t, ε)
    if not np.isfinite(margins).all():
        raise FloatingPointError("non-finite margins: check the models' dtype (try float32) and the images")
    accuracy = float(np.mean(margins > 0) + 0.5 * np.mean(margins == 0))
    return ImplicitRewards(margins, accuracy, losses)
