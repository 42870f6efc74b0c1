"""RQ-VAE semantic IDs: a residual-quantised autoencoder that names every item by a short tuple of codes.

Rajput et al. 2023, "Recommender Systems with Generative Retrieval" (TIGER), NeurIPS, arXiv:2305.05065, §3.1 and
§4.1; used unchanged by Paischer et al. 2024, "Preference Discerning with LLM-Enhanced Generative Retrieval"
(Mender), arXiv:2412.08604. The quantiser is the residual quantisation of Lee et al. 2022 (arXiv:2203.01941) with the
codebook and commitment losses of VQ-VAE (van den Oord et al. 2017, arXiv:1711.00937).

An item's text embedding x (Sentence-T5 in both papers) is encoded by an MLP E to a latent z, and L codebooks
{e^l_k}, k = 1..K, quantise it coarse to fine: each level picks the code nearest to what the levels before it left
over, so items that share a prefix of codes are semantically close.

    Eq. 1   r_0 = z = E(x)
    Eq. 2   c_l = argmin_k ||r_l - e^l_k||,   r_{l+1} = r_l - e^l_{c_l}            (l = 0..L-1)
    Eq. 3   ẑ = Σ_l e^l_{c_l},   x̂ = D(z + sg[ẑ - z])                 (straight-through: ∂x̂/∂z passes ẑ by)
    Eq. 4   L_recon = ||x - x̂||²
    Eq. 5   L_rqvae = Σ_l ||sg[r_l] - e^l_{c_l}||² + β ||r_l - sg[e^l_{c_l}]||²   (codebook + commitment)
    Eq. 6   L = L_recon + L_rqvae

The equation numbers are this module's (in the order of TIGER §3.1); sg is stop-gradient. Norms are squared
Euclidean norms summed over coordinates, as the paper writes them, and averaged over the items of a batch. The
semantic ID is (c_0, ..., c_{L-1}, j): TIGER appends a last token j = 0, 1, 2, ... that tells apart the items whose
L codes collide (:func:`semantic_ids`). Each codebook is initialised by k-means on the residuals of the first training
batch (TIGER §4.1), which keeps codes from dying at the start; :func:`codebook_usage` measures collapse afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

Tensor = torch.Tensor


@dataclass
class RQVAEConfig:
    input_dim: int = 768  # width of the item embeddings (TIGER and Mender: Sentence-T5, 768)
    hidden_dims: tuple[int, ...] = (512, 256, 128)  # encoder's hidden layers, ReLU; decoder mirrors them (TIGER §4.1)
    latent_dim: int = 32  # width of z and of every code vector (TIGER §4.1)
    n_levels: int = 3  # L codebooks, the length of the ID before the collision token (TIGER §4.1)
    codebook_size: int = 256  # K codes per level (TIGER §4.1)
    beta: float = 0.25  # β, weight of the commitment term in Eq. 5 (TIGER §4.1)
    optimizer: str = "adagrad"  # key of OPTIMIZERS (TIGER §4.1: Adagrad)
    lr: float = 0.4  # learning rate (TIGER §4.1)
    epochs: int = 20_000  # passes over the items (TIGER §4.1)
    batch_size: int = 1024  # items per step (TIGER §4.1)
    kmeans_init: bool = True  # k-means on the first batch's residuals initialises the codebooks (TIGER §4.1)
    kmeans_iters: int = 25  # Lloyd iterations of that k-means (ours: the paper does not say)
    seed: int = 0  # weights, batch order and k-means (ours)


# the caller picks the optimiser by name; TIGER's Adagrad at lr 0.4 is the default, Adam is the usual alternative
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


# ---------------------------------------------------------------------------------------------------- inputs


def check_features(x, input_dim: int | None = None) -> Tensor:
    """Item embeddings as a floating tensor (N, d); raises ValueError if ``x`` is not 2-D, has the wrong width or
    holds a NaN or an infinity (naming the first such row)."""
    x = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, d), got {tuple(x.shape)}")
    if input_dim is not None and x.shape[1] != input_dim:
        raise ValueError(f"x has {x.shape[1]} features per item but the RQ-VAE expects input_dim={input_dim}")
    if not x.is_floating_point():
        x = x.float()
    bad = (~torch.isfinite(x)).any(1)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"x must be finite, but row {i} holds NaN or inf")
    return x


def check_codes(codes, codebook_size: int | None = None) -> Tensor:
    """Codes as a long tensor (N, L); raises ValueError if they are not 2-D integers in [0, codebook_size)."""
    c = codes if isinstance(codes, Tensor) else torch.as_tensor(np.asarray(codes))
    if c.ndim != 2:
        raise ValueError(f"codes must have shape (N, L), got {tuple(c.shape)}")
    if c.is_floating_point() or c.is_complex() or c.dtype == torch.bool:
        raise ValueError(f"codes must be integers, got dtype {c.dtype}")
    c = c.long()
    if c.numel() and (c.min() < 0 or (codebook_size is not None and c.max() >= codebook_size)):
        raise ValueError(f"codes must lie in [0, {codebook_size}), got values in [{int(c.min())}, {int(c.max())}]")
    return c


# ---------------------------------------------------------------------------------------------------- loss


def rqvae_loss(x: Tensor, x_hat: Tensor, residuals: Tensor, chosen: Tensor, beta: float) -> dict[str, Tensor]:
    """Eqs. 4-6 of TIGER (Rajput et al. 2023, arXiv:2305.05065) per item, unreduced.

    x, x_hat: (B, d) inputs and reconstructions; residuals: (L, B, D) r_l; chosen: (L, B, D) e^l_{c_l}.
    Returns (B,) tensors: ``recon`` ||x - x̂||², ``codebook`` Σ_l ||sg[r_l] - e_l||² (trains the codes),
    ``commit`` Σ_l ||r_l - sg[e_l]||² (trains the encoder, unweighted) and ``loss`` = recon + codebook + β commit.
    """
    recon = ((x - x_hat) ** 2).sum(-1)  # Eq. 4
    codebook = ((residuals.detach() - chosen) ** 2).sum(-1).sum(0)  # Eq. 5, first term: moves e towards r
    commit = ((residuals - chosen.detach()) ** 2).sum(-1).sum(0)  # Eq. 5, second term: moves r (the encoder)
    return {"loss": recon + codebook + beta * commit, "recon": recon, "codebook": codebook, "commit": commit}  # Eq. 6


# ---------------------------------------------------------------------------------------------------- k-means


def kmeans(x: Tensor, k: int, n_iter: int = 25, generator: torch.Generator | None = None) -> Tensor:
    """k centres (k, D) of the points ``x`` (N, D): k-means++ seeding, then Lloyd iterations until the centres stop
    moving (at most ``n_iter``). Deterministic given ``generator`` (a CPU generator; random draws are made on the CPU).
    A cluster that empties keeps its centre. With fewer points than centres every point is a centre and the rest are
    copies of random points with a little noise, so that no code starts far from the data."""
    x = x.detach()
    n, dim = x.shape
    if n == 0:
        raise ValueError("k-means needs at least one point")
    if n < k:
        extra = x[torch.randint(n, (k - n,), generator=generator).to(x.device)]  # (k - n, D)
        scale = x.std(0) if n > 1 else x.abs().mean().expand(dim)  # (D,)
        noise = torch.randn(extra.shape, generator=generator, dtype=x.dtype).to(x.device)
        return torch.cat([x, extra + 1e-3 * (scale + 1e-6) * noise])
    cent = x.new_empty(k, dim)
    cent[0] = x[int(torch.randint(n, (1,), generator=generator))]
    d2 = ((x - cent[0]) ** 2).sum(-1)  # (N,) squared distance to the nearest centre so far
    for j in range(1, k):
        w = d2.double().cpu()
        w = w if w.sum() > 0 else torch.ones_like(w)  # fewer distinct points than centres: draw uniformly
        cent[j] = x[int(torch.multinomial(w, 1, generator=generator))]  # k-means++: P(i) ∝ d2_i
        d2 = torch.minimum(d2, ((x - cent[j]) ** 2).sum(-1))
    for _ in range(n_iter):
        assign = torch.cdist(x, cent).argmin(1)  # (N,)
        counts = torch.bincount(assign, minlength=k)  # (k,)
        sums = x.new_zeros(k, dim).index_add_(0, assign, x)  # (k, D)
        new = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None].to(x.dtype), cent)
        if torch.equal(new, cent):
            break
        cent = new
    return cent


# ---------------------------------------------------------------------------------------------------- model


def _mlp(dims: tuple[int, ...]) -> nn.Sequential:
    """Linear layers through ``dims`` with ReLU between them and none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    """MLP encoder E: x (N, d) -> z (N, D); L residual codebooks (L, K, D); MLP decoder D: ẑ -> x̂ (N, d)."""

    def __init__(self, config: RQVAEConfig | None = None):
        super().__init__()
        c = config or RQVAEConfig()
        if c.n_levels < 1 or c.codebook_size < 1 or c.latent_dim < 1:
            raise ValueError(f"n_levels, codebook_size and latent_dim must be >= 1, got {c.n_levels}, "
                             f"{c.codebook_size}, {c.latent_dim}")  # fmt: skip
        if c.beta < 0:
            raise ValueError(f"beta must be >= 0, got {c.beta}")
        self.config = c
        dims = (c.input_dim, *c.hidden_dims, c.latent_dim)
        self.encoder = _mlp(dims)
        self.decoder = _mlp(dims[::-1])
        # unit-normal codes (nn.Embedding's initialisation) until k-means, if any, replaces them
        self.codebooks = nn.Parameter(torch.randn(c.n_levels, c.codebook_size, c.latent_dim))  # (L, K, D)

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Residual quantisation of latents z (N, D). Returns ẑ (N, D) with gradients to the codebooks only, codes
        (N, L), residuals r_l (L, N, D) and chosen codes e^l_{c_l} (L, N, D)."""
        r = z  # Eq. 1
        codes, residuals, chosen = [], [], []
        for book in self.codebooks:  # (K, D) per level, coarse to fine
            c = torch.cdist(r.detach(), book.detach()).argmin(1)  # (N,) Eq. 2, nearest code
            e = book[c]  # (N, D)
            codes.append(c)
            residuals.append(r)
            chosen.append(e)
            r = r - e.detach()  # Eq. 2; detached so the commitment term trains the encoder alone
        chosen_t = torch.stack(chosen)  # (L, N, D)
        return chosen_t.sum(0), torch.stack(codes, 1), torch.stack(residuals), chosen_t  # Eq. 3 ẑ

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """x (N, d) -> x̂ (N, d), codes (N, L) and the batch means of the terms of :func:`rqvae_loss`."""
        x = check_features(x, self.config.input_dim).to(self.codebooks.dtype)
        z = self.encoder(x)  # (N, D)
        z_q, codes, residuals, chosen = self.quantize(z)
        x_hat = self.decoder(z + (z_q - z).detach())  # Eq. 3, straight-through: the decoder's gradient reaches z
        losses = rqvae_loss(x, x_hat, residuals, chosen, self.config.beta)
        return x_hat, codes, {k: v.mean() for k, v in losses.items()}

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Codes (N, L) of items x (N, d)."""
        x = check_features(x, self.config.input_dim).to(self.codebooks.dtype)
        return self.quantize(self.encoder(x))[1]

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """Reconstructions x̂ (N, d) from codes (N, L): the decoder applied to the sum of the chosen code vectors."""
        c = check_codes(codes, self.config.codebook_size).to(self.codebooks.device)
        if c.shape[1] != self.config.n_levels:
            raise ValueError(f"codes must have {self.config.n_levels} levels, got {c.shape[1]}")
        levels = torch.arange(c.shape[1], device=c.device)
        return self.decoder(self.codebooks[levels, c].sum(1))  # (N, L, D) -> (N, D) -> (N, d)

    @torch.no_grad()
    def init_codebooks(self, z: Tensor, generator: torch.Generator | None = None) -> None:
        """Set each level's codebook to the k-means centres of that level's residuals of latents z (N, D), level by
        level: level l clusters what levels 0..l-1 (already initialised) leave over (TIGER §4.1)."""
        r = z.detach().to(self.codebooks.dtype)
        for book in self.codebooks:
            book.copy_(kmeans(r, self.config.codebook_size, self.config.kmeans_iters, generator))
            r = r - book[torch.cdist(r, book).argmin(1)]  # Eq. 2 with the new codes


# ---------------------------------------------------------------------------------------------------- training


def train_rqvae(x: Tensor, config: RQVAEConfig | None = None, progress: bool = True,
                desc: str = "RQ-VAE") -> tuple[RQVAE, pd.DataFrame]:  # fmt: skip
    """Train an :class:`RQVAE` on item embeddings x (N, d) for ``epochs`` passes in shuffled batches, after k-means
    initialisation of the codebooks on the first batch when ``kmeans_init``. Seeded by ``config.seed`` (weights,
    batch order, k-means). Returns the model (eval mode) and a per-step history of the loss terms (batch means)."""
    c = config or RQVAEConfig()
    x = check_features(x, c.input_dim)
    if len(x) == 0:
        raise ValueError("x has no items")
    if c.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {c.optimizer!r}")
    torch.manual_seed(c.seed)
    g = torch.Generator().manual_seed(c.seed)
    model = RQVAE(c).to(device=x.device)
    x = x.to(model.codebooks.dtype)
    opt = OPTIMIZERS[c.optimizer](model.parameters(), lr=c.lr)
    steps_per_epoch = math.ceil(len(x) / c.batch_size)
    rows = []
    model.train()
    bar = tqdm(total=c.epochs * steps_per_epoch, desc=desc, disable=not progress, leave=False)
    for epoch in range(c.epochs):
        perm = torch.randperm(len(x), generator=g).to(x.device)
        for b in range(steps_per_epoch):
            xb = x[perm[b * c.batch_size : (b + 1) * c.batch_size]]
            if c.kmeans_init and epoch == 0 and b == 0:
                with torch.no_grad():
                    model.init_codebooks(model.encoder(xb), g)
            _, _, losses = model(xb)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            rows.append(torch.stack([losses[k].detach() for k in ("loss", "recon", "codebook", "commit")]))
            bar.update()
    bar.close()
    model.eval()
    hist = pd.DataFrame(torch.stack(rows).cpu().numpy(), columns=["loss", "recon", "codebook", "commit"])
    hist.insert(0, "epoch", np.repeat(np.arange(c.epochs), steps_per_epoch))
    hist.insert(0, "step", range(len(hist)))
    return model, hist


# ---------------------------------------------------------------------------------------------------- semantic IDs


def semantic_ids(codes: Tensor, max_collisions: int = 256) -> Tensor:
    """TIGER's semantic IDs (N, L + 1): the codes (N, L) followed by a collision token j, which numbers the items
    that share the same L codes 0, 1, 2, ... in the order they appear in ``codes`` (so the IDs are unique and the
    same for the same input). The token is drawn from a vocabulary of ``max_collisions`` values (TIGER: as large as a
    codebook, 256); more items on one prefix raise ValueError naming that prefix."""
    c = check_codes(codes)
    n = len(c)
    if n == 0:
        return c.new_zeros(0, c.shape[1] + 1)
    _, inv, counts = torch.unique(c, dim=0, return_inverse=True, return_counts=True)  # (N,), (G,)
    if int(counts.max()) > max_collisions:
        worst = int(counts.argmax())
        prefix = tuple(c[int((inv == worst).nonzero()[0, 0])].tolist())
        raise ValueError(f"prefix {prefix} is shared by {int(counts[worst])} items, more than max_collisions="
                         f"{max_collisions}: lengthen the codes or enlarge the codebooks")  # fmt: skip
    order = torch.argsort(inv, stable=True)  # (N,) items grouped by prefix, in their original order within a group
    start = torch.cumsum(counts, 0) - counts  # (G,) where each group begins in `order`
    j = torch.empty_like(inv)
    j[order] = torch.arange(n, device=c.device) - start[inv[order]]  # rank within the group
    return torch.cat([c, j[:, None]], 1)


def codebook_usage(codes: Tensor, codebook_size: int) -> dict[str, float]:
    """How well codes (N, L) use the codebooks, to spot collapse: per level l, ``used_l`` the fraction of the K codes
    chosen by at least one item and ``perplexity_l`` = exp(entropy) of the code frequencies (K if uniform, 1 if one
    code takes all); ``unique`` the fraction of items whose L codes no other item has, and ``max_shared`` the most
    items on one prefix (what :func:`semantic_ids` needs of ``max_collisions``)."""
    c = check_codes(codes, codebook_size)
    if len(c) == 0:
        raise ValueError("codes has no items")
    out: dict[str, float] = {}
    for level in range(c.shape[1]):
        counts = torch.bincount(c[:, level], minlength=codebook_size).double()  # (K,)
        p = counts[counts > 0] / len(c)
        out[f"used_{level}"] = (counts > 0).double().mean().item()
        out[f"perplexity_{level}"] = math.exp(-(p * p.log()).sum().item())
    _, inv, counts = torch.unique(c, dim=0, return_inverse=True, return_counts=True)
    out["unique"] = (counts[inv] == 1).double().mean().item()
    out["max_shared"] = float(counts.max())
    return out
