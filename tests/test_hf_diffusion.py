"""prefkit.hf_diffusion on a tiny randomly initialised Stable Diffusion pipeline built offline: step-0 check (policy =
reference gives margin 0 and loss ln 2), a hand-written reference of the official code's margin, antisymmetry under
swapping chosen and rejected, determinism and batch-size invariance, v-prediction, and bad-input errors."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from prefkit.data import PreferenceDataError
from prefkit.hf_diffusion import ImagePair, image_tensor, implicit_rewards, load_pairs, load_pipeline_parts

pytest.importorskip("diffusers")

LETTERS = "abcdefghijklmnopqrstuvwxyz"
PROMPTS = ["a red cat", "a blue dog", "a green tree", "a small house"]


def _tiny_tokenizer(folder: Path):
    """A CLIP tokenizer over single letters (every lowercase word splits into known tokens), from files we write."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokens = [*LETTERS, *(c + "</w>" for c in LETTERS), "<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def tiny_pipeline_and_pairs(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny Stable Diffusion pipeline folder (random weights, 16x16 images, 8x8 latents) and a ``pairs.jsonl`` of
    4 image pairs under ``tmp_path``; no downloads, about a second. For tests/test_notebooks.py's hf-profile run."""
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from PIL import Image
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
    )  # fmt: skip
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=4,
        sample_size=16,
    )  # fmt: skip
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(LETTERS) * 2 + 2, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=16, bos_token_id=52, eos_token_id=53, pad_token_id=53,
    ))  # fmt: skip
    tokenizer = _tiny_tokenizer(tmp_path / "tokenizer_files")
    scheduler = DDPMScheduler(num_train_timesteps=100, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, steps_offset=1, clip_sample=False)  # SD1.5's schedule, T = 100  # fmt: skip
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)  # fmt: skip
    pipe_dir = tmp_path / "tiny-sd"
    pipe.save_pretrained(pipe_dir)

    rng = np.random.default_rng(0)
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    rows = []
    for i, prompt in enumerate(PROMPTS):
        for side in ("chosen", "rejected"):
            size = (20, 16) if i == 0 else (16, 16)  # one non-square image exercises resize + centre crop
            Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(img_dir / f"{i}_{side}.png")
        rows.append({"prompt": prompt, "chosen": f"images/{i}_chosen.png", "rejected": f"images/{i}_rejected.png"})
    pairs_path = tmp_path / "pairs.jsonl"
    pairs_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return pipe_dir, pairs_path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pipe_dir, pairs_path = tiny_pipeline_and_pairs(tmp_path_factory.mktemp("hf_diffusion"))
    return load_pipeline_parts(pipe_dir), load_pairs(pairs_path), pipe_dir, pairs_path


def _perturbed(unet, scale: float = 0.05, seed: int = 1):
    """A copy of ``unet`` with Gaussian noise on every weight: a policy that differs from its reference."""
    policy = copy.deepcopy(unet)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return policy


def _score(parts, policy, pairs, **kw):
    kw = {"beta": 5000.0, "n_draws": 2, "seed": 0, "batch_size": 4} | kw
    return implicit_rewards(policy, parts.unet, parts.vae, parts.text_encoder, parts.tokenizer, parts.scheduler,
                            pairs, **kw)  # fmt: skip


def test_loads_parts(tiny):
    parts, pairs, _, _ = tiny
    assert parts.unet.config.sample_size == 8 and parts.scheduler.config.num_train_timesteps == 100
    assert type(parts.scheduler).__name__ == "DDPMScheduler"
    assert [p.prompt for p in pairs] == PROMPTS and all(p.chosen.is_file() and p.rejected.is_file() for p in pairs)
    assert image_tensor(pairs[0].chosen, 16).shape == (3, 16, 16)  # the 20x16 image, resized and centre-cropped


def test_policy_equal_to_reference_gives_zero_margins_and_ln2(tiny):
    parts, pairs, _, _ = tiny
    twin = copy.deepcopy(parts.unet)  # a separate module with the same weights: nothing is short-circuited
    r = _score(parts, twin, pairs, n_draws=3)
    assert np.all(r.margins == 0.0)
    assert r.accuracy == 0.5  # all ties, counted half
    np.testing.assert_allclose(r.losses, math.log(2), rtol=1e-6)


def _reference_margin(parts, scheduler, policy, pair: ImagePair, t: int, eps: torch.Tensor, beta: float) -> float:
    """The official code's margin for one pair and one (t, ε), written out step by step (train.py l.1044-1145)."""
    x = torch.stack([image_tensor(pair.chosen, 16), image_tensor(pair.rejected, 16)])
    z0 = parts.vae.encode(x).latent_dist.mean * parts.vae.config.scaling_factor
    ids = parts.tokenizer([pair.prompt] * 2, max_length=16, padding="max_length", return_tensors="pt").input_ids
    cond = parts.text_encoder(ids)[0]
    a = scheduler.alphas_cumprod[t]
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * eps  # the same ε for x_w and x_l
    target = eps if scheduler.config.prediction_type == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * z0  # v
    tt = torch.tensor([t, t])
    m = [
        (u(z_t, tt, encoder_hidden_states=cond).sample - target).pow(2).mean(dim=(1, 2, 3))
        for u in (policy, parts.unet)
    ]
    (m_w, m_l), (r_w, r_l) = m
    return float(-0.5 * beta * ((m_w - m_l) - (r_w - r_l)))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_matches_step_by_step_reference(tiny, prediction_type):
    from diffusers import DDPMScheduler

    from prefkit.hf_diffusion import _pair_generator

    parts, pairs, _, _ = tiny
    scheduler = DDPMScheduler.from_config(parts.scheduler.config, prediction_type=prediction_type)
    policy = _perturbed(parts.unet)
    args = (parts.vae, parts.text_encoder, parts.tokenizer, scheduler, pairs)
    with torch.no_grad():
        r = implicit_rewards(policy, parts.unet, *args, beta=2000.0, n_draws=1, seed=0, batch_size=4)
        for i, pair in enumerate(pairs):
            g = _pair_generator(0, i)
            t = int(torch.randint(0, 100, (1,), generator=g))
            eps = torch.randn((1, 4, 8, 8), generator=g)
            expected = _reference_margin(parts, scheduler, policy, pair, t, eps, 2000.0)
            np.testing.assert_allclose(r.margins[i], expected, atol=2e-3)  # float32 cancellation times β
    assert np.all(np.abs(r.margins) > 0.05)  # far above the tolerance: the comparison means something
    twin = implicit_rewards(copy.deepcopy(parts.unet), parts.unet, *args, n_draws=1)
    assert np.all(twin.margins == 0)  # step-0 check under either target


def test_swapping_chosen_and_rejected_negates_every_margin(tiny):
    parts, pairs, _, _ = tiny
    policy = _perturbed(parts.unet)
    r = _score(parts, policy, pairs, n_draws=3)
    swapped = _score(parts, policy, [ImagePair(p.prompt, p.rejected, p.chosen) for p in pairs], n_draws=3)
    assert np.all(np.isfinite(r.margins)) and np.all(r.margins != 0)
    np.testing.assert_array_equal(swapped.margins, -r.margins)
    assert swapped.accuracy == pytest.approx(1 - r.accuracy)


def test_deterministic_given_seed_and_independent_of_batch_size(tiny):
    parts, pairs, _, _ = tiny
    policy = _perturbed(parts.unet)
    a = _score(parts, policy, pairs, seed=3, batch_size=4)
    b = _score(parts, policy, pairs, seed=3, batch_size=3)
    np.testing.assert_allclose(a.margins, b.margins, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.margins, _score(parts, policy, pairs, seed=3, batch_size=4).margins)
    assert not np.allclose(a.margins, _score(parts, policy, pairs, seed=4).margins)


def test_beta_only_scales_margins(tiny):
    parts, pairs, _, _ = tiny
    policy = _perturbed(parts.unet)
    a, b = _score(parts, policy, pairs, beta=1000.0), _score(parts, policy, pairs, beta=3000.0)
    np.testing.assert_allclose(b.margins, 3 * a.margins, rtol=1e-5)
    assert a.accuracy == b.accuracy


def test_bad_arguments(tiny):
    parts, pairs, _, _ = tiny
    for kw, word in [({"beta": 0.0}, "beta"), ({"n_draws": 0}, "n_draws"), ({"batch_size": 0}, "batch_size")]:
        with pytest.raises(ValueError, match=word):
            _score(parts, parts.unet, pairs, **kw)
    with pytest.raises(ValueError, match="pairs is empty"):
        _score(parts, parts.unet, [])


def test_not_a_pipeline_folder(tiny, tmp_path):
    _, _, pipe_dir, _ = tiny
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_pipeline_parts(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        load_pipeline_parts(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text((pipe_dir / "model_index.json").read_text())
    for part in ("unet", "text_encoder", "tokenizer", "scheduler"):
        (broken / part).symlink_to(pipe_dir / part)
    with pytest.raises(FileNotFoundError, match=rf"{broken}.*sub-folder 'vae' is missing"):
        load_pipeline_parts(broken)


def test_load_unet_from_pipeline_or_unet_folder(tiny, tmp_path):
    from prefkit.hf_diffusion import load_unet

    parts, _, pipe_dir, _ = tiny
    for folder in (pipe_dir, pipe_dir / "unet"):
        unet = load_unet(folder, "cpu")
        assert all(torch.equal(a, b) for a, b in zip(unet.state_dict().values(), parts.unet.state_dict().values()))
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}: neither a pipeline folder"):
        load_unet(tmp_path)


def _write_pairs(tmp_path: Path, rows: list[dict], name: str = "pairs.jsonl") -> Path:
    (tmp_path / "a.png").write_bytes(b"")  # existence is checked when loading; contents when scoring
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    "row, match",
    [
        ({"chosen": "a.png", "rejected": "a.png"}, r"line 2, row 1, field 'prompt': is missing"),
        ({"prompt": "p", "chosen": "a.png"}, r"row 1, field 'rejected': is missing"),
        ({"prompt": "  ", "chosen": "a.png", "rejected": "a.png"}, r"row 1, field 'prompt': must be a non-empty"),
        ({"prompt": "p", "chosen": "a.png", "rejected": "gone.png"}, r"row 1, field 'rejected': no such image file .*gone.png"),
    ],
)  # fmt: skip
def test_bad_pairs_name_row_and_field(tmp_path, row, match):
    good = {"prompt": "p", "chosen": "a.png", "rejected": "a.png"}
    with pytest.raises(PreferenceDataError, match=match):
        load_pairs(_write_pairs(tmp_path, [good, row]))


def test_bad_pairs_file(tmp_path):
    with pytest.raises(PreferenceDataError, match="no such file"):
        load_pairs(tmp_path / "missing.jsonl")
    (tmp_path / "pairs.csv").write_text("prompt,chosen,rejected\n")
    with pytest.raises(PreferenceDataError, match="unsupported type"):
        load_pairs(tmp_path / "pairs.csv")
    path = tmp_path / "pairs.json"  # a .json list of rows works like .jsonl
    path.write_text(json.dumps([{"prompt": "p", "chosen": str(tmp_path / "a.png"), "rejected": "a.png"}]))
    (tmp_path / "a.png").write_bytes(b"")
    assert load_pairs(path)[0].chosen == tmp_path / "a.png"
