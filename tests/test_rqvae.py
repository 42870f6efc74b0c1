"""RQ-VAE semantic IDs (TIGER, Rajput et al. 2023): residual quantisation, the loss and where its gradients go,
k-means initialisation, training on clustered data, the collision token, codebook usage and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prefkit.rqvae import (
    RQVAE,
    RQVAEConfig,
    codebook_usage,
    kmeans,
    rqvae_loss,
    semantic_ids,
    train_rqvae,
)


def small(**kw) -> RQVAEConfig:
    base = dict(input_dim=16, hidden_dims=(32,), latent_dim=8, n_levels=3, codebook_size=8, epochs=30, batch_size=64)
    return RQVAEConfig(**{**base, **kw})


def blobs(n: int = 400, dim: int = 16, k: int = 8, spread: float = 3.0, noise: float = 0.3, seed: int = 0):
    """n points around k Gaussian centres; returns points (n, dim), labels (n,), centres (k, dim)."""
    g = torch.Generator().manual_seed(seed)
    centres = spread * torch.randn(k, dim, generator=g)
    labels = torch.arange(n) % k
    return centres[labels] + noise * torch.randn(n, dim, generator=g), labels, centres


def set_linear(layer: torch.nn.Linear, weight, bias) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))


def hand_model() -> RQVAE:
    """d = D = 2, no hidden layer: E(x) = x, D(ẑ) = 2ẑ + 0.5, codebooks {(1, 1), (-1, -1)} and {(0, .5), (.5, 0)}."""
    m = RQVAE(RQVAEConfig(input_dim=2, hidden_dims=(), latent_dim=2, n_levels=2, codebook_size=2, beta=0.25))
    set_linear(m.encoder[0], torch.eye(2), torch.zeros(2))
    set_linear(m.decoder[0], 2 * torch.eye(2), torch.full((2,), 0.5))
    with torch.no_grad():
        m.codebooks.copy_(torch.tensor([[[1.0, 1.0], [-1.0, -1.0]], [[0.0, 0.5], [0.5, 0.0]]]))
    return m


# ---------------------------------------------------------------------------------------------------- quantisation


def test_residual_quantisation_is_exact_on_sums_of_codes():
    c = RQVAEConfig(input_dim=4, hidden_dims=(), latent_dim=4, n_levels=3, codebook_size=8)
    m = RQVAE(c)
    signed_basis = torch.cat([torch.eye(4), -torch.eye(4)])  # (8, 4) codes ±e_i
    with torch.no_grad():  # scales 100, 10, 1: each level's leftover is far smaller than its codes' spacing
        m.codebooks.copy_(torch.stack([100 * signed_basis, 10 * signed_basis, signed_basis]))
    codes = torch.randint(8, (50, 3), generator=torch.Generator().manual_seed(0))
    z = m.codebooks.detach()[torch.arange(3), codes].sum(1)  # (50, 4)
    z_q, got, residuals, chosen = m.quantize(z)
    assert torch.equal(got, codes)
    assert torch.allclose(z_q, z)
    assert torch.allclose(residuals[0], z)
    assert torch.allclose(residuals[1], z - chosen[0])
    assert torch.allclose(residuals[2] - chosen[2], torch.zeros_like(z), atol=1e-5)  # nothing left over


def test_forward_loss_matches_hand_computation():
    m = hand_model()
    x = torch.tensor([[1.0, 2.0], [-1.0, -0.5]])
    # item 0: z = (1, 2) -> code 0 (1, 1), r_1 = (0, 1) -> code 0 (0, .5); ẑ = (1, 1.5), x̂ = (2.5, 3.5)
    #   recon 1.5² + 1.5² = 4.5, codebook = commit = 1² + .5² = 1.25
    # item 1: z = (-1, -.5) -> code 1 (-1, -1), r_1 = (0, .5) -> code 0 (0, .5); ẑ = z, x̂ = (-1.5, -.5)
    #   recon .5² = .25, codebook = commit = .5² + 0 = .25
    x_hat, codes, losses = m(x)
    assert torch.equal(codes, torch.tensor([[0, 0], [1, 0]]))
    assert torch.allclose(x_hat, torch.tensor([[2.5, 3.5], [-1.5, -0.5]]))
    assert losses["recon"].item() == pytest.approx((4.5 + 0.25) / 2)
    assert losses["codebook"].item() == pytest.approx((1.25 + 0.25) / 2)
    assert losses["commit"].item() == pytest.approx((1.25 + 0.25) / 2)
    assert losses["loss"].item() == pytest.approx(2.375 + 0.75 + 0.25 * 0.75)
    assert torch.allclose(m.decode(codes), x_hat)


def test_rqvae_loss_is_recon_plus_codebook_plus_beta_commit():
    g = torch.Generator().manual_seed(1)
    x, x_hat = torch.randn(5, 6, generator=g), torch.randn(5, 6, generator=g)
    r, e = torch.randn(3, 5, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    out = rqvae_loss(x, x_hat, r, e, beta=0.3)
    assert torch.allclose(out["recon"], ((x - x_hat) ** 2).sum(1))
    assert torch.allclose(out["codebook"], ((r - e) ** 2).sum((0, 2)))
    assert torch.allclose(out["commit"], out["codebook"])  # equal values; they differ in where gradients go
    assert torch.allclose(out["loss"], out["recon"] + out["codebook"] + 0.3 * out["commit"])


def _grads(m: RQVAE, term: str, x: torch.Tensor) -> tuple[float, float, float]:
    """Total |gradient| of the encoder, the codebooks and the decoder after backward of one loss term."""
    m.zero_grad(set_to_none=True)
    m(x)[2][term].backward()

    def norm(ps) -> float:
        return sum(0.0 if p.grad is None else p.grad.abs().sum().item() for p in ps)

    return norm(m.encoder.parameters()), norm([m.codebooks]), norm(m.decoder.parameters())


def test_gradients_go_where_the_stop_gradients_send_them():
    torch.manual_seed(0)
    m = RQVAE(small())
    x = blobs(64)[0]
    enc, book, dec = _grads(m, "recon", x)
    assert enc > 0 and dec > 0  # straight-through: the reconstruction reaches the encoder past the argmin
    assert book == 0  # codes learn only from the codebook term
    enc, book, dec = _grads(m, "codebook", x)
    assert enc == 0 and dec == 0 and book > 0
    enc, book, dec = _grads(m, "commit", x)
    assert enc > 0 and book == 0 and dec == 0


# ---------------------------------------------------------------------------------------------------- k-means


def test_kmeans_init_puts_level0_codes_on_blob_centres():
    z, labels, centres = blobs(400, dim=8, k=8, spread=10.0, noise=0.1)
    m = RQVAE(small(latent_dim=8, codebook_size=8))
    m.init_codebooks(z, torch.Generator().manual_seed(0))
    book0 = m.codebooks.detach()[0]
    assert torch.cdist(centres, book0).min(1).values.max() < 0.1  # every centre has a code next to it
    codes = m.quantize(z)[1][:, 0]
    for b in range(8):
        assert codes[labels == b].unique().numel() == 1  # a blob is one code
    assert codes.unique().numel() == 8  # and the blobs get different codes
    # level 1 clusters what is left: the within-blob noise, far smaller than the blobs
    assert m.codebooks.detach()[1].norm(dim=1).max() < 1.0


def test_kmeans_is_deterministic_and_handles_fewer_points_than_centres():
    x = blobs(100, dim=4)[0]
    a = kmeans(x, 8, generator=torch.Generator().manual_seed(3))
    b = kmeans(x, 8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    few = x[:5]
    c = kmeans(few, 8, generator=torch.Generator().manual_seed(0))
    assert c.shape == (8, 4) and torch.isfinite(c).all()
    assert torch.equal(c[:5], few)  # every point is a centre
    assert torch.cdist(c[5:], few).min(1).values.max() < 0.1  # the rest sit next to points
    same = kmeans(torch.ones(20, 3), 4, generator=torch.Generator().manual_seed(0))  # one distinct point
    assert torch.allclose(same, torch.ones(4, 3))


# ---------------------------------------------------------------------------------------------------- training


def test_training_reduces_reconstruction_without_collapse():
    x, labels, _ = blobs()
    # Adam: TIGER's Adagrad at lr 0.4 is tuned for 20k epochs on real catalogues and overshoots at this scale
    cfg = small(optimizer="adam", lr=3e-3)
    m, hist = train_rqvae(x, cfg, progress=False)
    assert list(hist.columns) == ["step", "epoch", "loss", "recon", "codebook", "commit"]
    assert len(hist) == cfg.epochs * math.ceil(len(x) / cfg.batch_size)
    first, last = hist[hist.epoch == 0].recon.mean(), hist[hist.epoch == cfg.epochs - 1].recon.mean()
    assert last < 0.2 * first
    codes = m.encode(x)
    usage = codebook_usage(codes, cfg.codebook_size)
    for level in range(cfg.n_levels):
        assert usage[f"perplexity_{level}"] > 2.0 and usage[f"used_{level}"] > 2 / cfg.codebook_size
    assert usage["perplexity_0"] > 4.0  # the first level tells most of the 8 blobs apart
    # and follows them: almost all of a blob shares its level-0 code
    purity = np.mean([codes[labels == b, 0].bincount().max().item() / (labels == b).sum().item() for b in range(8)])
    assert purity > 0.9
    _, hist2 = train_rqvae(x, cfg, progress=False)
    assert hist.equals(hist2)  # seeded


def test_training_with_tiger_optimiser_and_without_kmeans_runs():
    x = blobs(128)[0]
    m, hist = train_rqvae(x, small(epochs=5, kmeans_init=False), progress=False)  # Adagrad, lr 0.4
    assert np.isfinite(hist[["loss", "recon", "codebook", "commit"]].to_numpy()).all()
    assert m.encode(x).shape == (128, 3)


# ---------------------------------------------------------------------------------------------------- semantic IDs


def test_semantic_ids_number_collisions_in_order():
    codes = torch.tensor([[1, 2], [0, 0], [1, 2], [1, 2], [0, 0], [3, 3]])
    ids = semantic_ids(codes)
    assert torch.equal(ids[:, :2], codes)
    assert ids[:, 2].tolist() == [0, 0, 1, 2, 1, 0]
    assert torch.equal(semantic_ids(codes), ids)


def test_semantic_ids_are_unique_with_digits_0_to_k_minus_1():
    codes = torch.randint(3, (300, 2), generator=torch.Generator().manual_seed(0))  # 9 prefixes, ~33 items each
    ids = semantic_ids(codes, max_collisions=300)
    assert ids.dtype == torch.long and ids.shape == (300, 3)
    assert torch.unique(ids, dim=0).shape[0] == 300
    for prefix in torch.unique(codes, dim=0):
        digits = ids[(codes == prefix).all(1), 2]
        assert digits.tolist() == list(range(len(digits)))  # 0..k-1, in item order


def test_semantic_ids_raise_past_max_collisions():
    codes = torch.tensor([[1, 2], [0, 0], [1, 2], [1, 2]])
    assert semantic_ids(codes, max_collisions=3)[:, 2].tolist() == [0, 0, 1, 2]
    with pytest.raises(ValueError, match=r"prefix \(1, 2\) is shared by 3 items, more than max_collisions=2"):
        semantic_ids(codes, max_collisions=2)


def test_codebook_usage_by_hand():
    codes = torch.tensor([[0, 0], [0, 1], [1, 2], [1, 2]])
    u = codebook_usage(codes, codebook_size=4)
    assert u["used_0"] == pytest.approx(0.5) and u["perplexity_0"] == pytest.approx(2.0)  # two codes, equally often
    assert u["used_1"] == pytest.approx(0.75)
    assert u["perplexity_1"] == pytest.approx(2**1.5)  # frequencies 1/4, 1/4, 1/2: entropy 1.5 ln 2
    assert u["unique"] == pytest.approx(0.5) and u["max_shared"] == 2
    one = codebook_usage(torch.zeros(10, 1, dtype=torch.long), 8)  # total collapse
    assert one["perplexity_0"] == pytest.approx(1.0) and one["used_0"] == pytest.approx(1 / 8) and one["unique"] == 0


# ---------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("shape", [(16,), (4, 4, 16)])
def test_non_2d_input_raises(shape):
    with pytest.raises(ValueError, match=r"x must have shape \(N, d\)"):
        train_rqvae(torch.zeros(shape), small(), progress=False)
    with pytest.raises(ValueError, match=r"x must have shape \(N, d\)"):
        RQVAE(small()).encode(torch.zeros(shape))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_raises_naming_the_row(bad):
    x = torch.zeros(10, 16)
    x[7, 3] = bad
    with pytest.raises(ValueError, match="row 7 holds NaN or inf"):
        train_rqvae(x, small(), progress=False)
    with pytest.raises(ValueError, match="row 7"):
        RQVAE(small())(x)


def test_other_bad_input_raises():
    with pytest.raises(ValueError, match="expects input_dim=16"):
        train_rqvae(torch.zeros(10, 12), small(), progress=False)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        train_rqvae(torch.zeros(10, 16), small(optimizer="sgd"), progress=False)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        RQVAE(small(beta=-1.0))
    with pytest.raises(ValueError, match="codes must be integers"):
        semantic_ids(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4\)"):
        codebook_usage(torch.tensor([[0, 4]]), 4)
    with pytest.raises(ValueError, match=r"codes must have shape \(N, L\)"):
        semantic_ids(torch.zeros(3, dtype=torch.long))
