"""A 2-D preference world for diffusion models: classes are the prompts, the oracle prefers a rare "styled" mode.

Geometry (all in R^2). Class c = 0 .. K-1 points along the unit vector u_c = (cos θ_c, sin θ_c), θ_c = angle + 2πc/K.
It has two isotropic Gaussian modes, both of standard deviation ``mode_std`` (σ):

    plain mode   μ_c = radius · u_c                      frequency 1 - p
    styled mode  s_c = (radius + style_offset) · u_c     frequency p = ``style_frequency``

so the data density of class c, the "quality" an exact log-likelihood measures, is

    q(x | c) = (1 - p) N(x; μ_c, σ² I) + p N(x; s_c, σ² I).                                  (``log_density``)

With the defaults (K = 4, radius 2, style offset 1, σ = 0.25) the styled mode sits 4σ outward from its plain mode and
neighbouring classes' modes are ≥ 2.8 (11σ) apart: a sample's nearest mode (``mode_shares``) is almost always of its
own class, and it is the mode it was drawn from except for the Φ(-2) = 2.3% that cross the bisector between the two.

Reference mismatch (MaPO's sweep). A base model is trained on the default world (p = 0.2). The preference data's
styled target moves away from it in two ways: ``with_style_frequency(p)`` lowers how often the base's data shows the
styled mode (p = 0.05, 0.01, 0), and ``novel_style=True`` moves the styled mode to (radius + novel_offset) · u_c,
6σ beyond the usual styled mode and 10σ from the plain mode, where the base data has (almost) no mass: the base
density there is below e^-18 of its peak.

Oracle reward (the true quality of a sample x for prompt c; bounded in [-class_penalty, 1]):

    r(x, c) = exp(-|x - s_c|² / (2 w²)) - class_penalty · (1 - P_geo(c | x)),                 (``oracle_reward``)

a smooth bump of width w = ``bump_width`` on the styled mode, minus a penalty for being nearer another class's modes:
P_geo(c | x) is the share of class c's two modes in softmax_m(-|x - m|² / (2σ²)) over all 2K modes (equal weights,
whatever the frequencies), which is ~1 near class c's modes and ~0 near another class's. The maximum, 1, is at s_c
(up to e^-60 of penalty). A Bradley-Terry rater on it gives labels, P(a ≻ b | c) = σ((r(a, c) - r(b, c)) / temperature)
(``bt_prob``, ``bt_label``, ``preference_pairs``).

Learned reward models that can be exploited. ``PointwiseRM`` (an MLP r_φ(x, c), fitted by the Bradley-Terry loss)
and ``PairwiseRM`` (an MLP giving P(a ≻ b | c), antisymmetric by construction) are fitted on pairs of *data* samples
(``data_pairs``): inside the data's support, where reward rises from the plain mode outwards to the styled mode.
A ReLU network extrapolates linearly, and far from the data no rated pair constrains in which direction: r_φ takes
large values there that the oracle (whose bump is back to ~0) does not back, e.g. still rising outwards past s_c. In
our checks the arg-max of a fitted r_φ over the box [-6, 6]² usually lies outside the data's support, at oracle reward
~0. That is what makes the pointwise RM exploitable (Pref-GRPO's reward hacking): a policy that maximises r_φ leaves
the region the pairs covered. ``hack_gap`` measures the exploit against the oracle. The pairwise RM extrapolates as
badly, but a reward built from it (a win rate in a group) is bounded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensorish = torch.Tensor | list | tuple | float | int


def _as_points(x: Tensorish, name: str = "x") -> torch.Tensor:
    x = torch.as_tensor(x)
    if not torch.is_floating_point(x):
        x = x.to(torch.float32)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _as_classes(c: Tensorish, n: int, n_classes: int, name: str = "c") -> torch.Tensor:
    c = torch.as_tensor(c)
    if torch.is_floating_point(c) or c.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer class indices, got dtype {c.dtype}")
    c = c.to(torch.long)
    if c.ndim == 0:
        c = c.expand(n)
    if c.shape != (n,):
        raise ValueError(f"{name} must be an int or have shape ({n},), got {tuple(c.shape)}")
    bad = (c < 0) | (c >= n_classes)
    if bad.any():
        raise ValueError(f"{name} holds class index {int(c[bad][0])}, outside 0 .. {n_classes - 1}")
    return c


def _generator(rng: torch.Generator | int | None, default_seed: int) -> torch.Generator:
    if isinstance(rng, torch.Generator):
        return rng
    return torch.Generator().manual_seed(default_seed if rng is None else int(rng))


@dataclass(frozen=True)
class PointPairs:
    """Preference pairs for class labels c: x_w preferred to x_l; ``p_true`` = P(x_w ≻ x_l | c) under the rater."""

    x_w: torch.Tensor  # (N, 2)
    x_l: torch.Tensor  # (N, 2)
    c: torch.Tensor  # (N,) long
    p_true: torch.Tensor  # (N,)

    def __len__(self) -> int:
        return self.c.shape[0]

    def subset(self, idx: torch.Tensor | slice) -> PointPairs:
        return PointPairs(self.x_w[idx], self.x_l[idx], self.c[idx], self.p_true[idx])

    def split(self, n_train: int) -> tuple[PointPairs, PointPairs]:
        """The first ``n_train`` pairs and the rest (pairs are drawn i.i.d., so this is a random split)."""
        if not 0 < n_train < len(self):
            raise ValueError(f"n_train must be in 1 .. {len(self) - 1}, got {n_train}")
        return self.subset(slice(0, n_train)), self.subset(slice(n_train, None))


@dataclass(frozen=True)
class PointsWorld:
    """Classes as prompts, each with a plain and a styled Gaussian mode in R^2 (see the module docstring)."""

    seed: int = 0  # default seed of the generators used when rng is None
    n_classes: int = 4  # K prompts
    style_frequency: float = 0.2  # p: the styled mode's share of each class's data
    mode_std: float = 0.25  # σ of every mode
    radius: float = 2.0  # distance of the plain modes from the origin
    style_offset: float = 1.0  # styled mode = plain mode moved this far outwards
    novel_style: bool = False  # True: the styled mode moves to radius + novel_offset (outside the base's support)
    novel_offset: float = 2.5  # outward offset of the novel styled mode
    angle: float = math.pi / 4  # θ_0: direction of class 0
    bump_width: float = 0.5  # w: width of the oracle's bump on the styled mode
    class_penalty: float = 1.0  # oracle penalty for a sample nearer another class's modes

    def __post_init__(self):
        if not 0.0 <= self.style_frequency <= 1.0 or math.isnan(self.style_frequency):
            raise ValueError(f"style_frequency must be in [0, 1], got {self.style_frequency}")
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        for name in ("mode_std", "radius", "style_offset", "novel_offset", "bump_width"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.class_penalty < 0:
            raise ValueError(f"class_penalty must be >= 0, got {self.class_penalty}")

    def with_style_frequency(self, p: float) -> PointsWorld:
        """The same world with the styled mode at frequency p (e.g. the preference data's, for the mismatch sweep)."""
        return replace(self, style_frequency=p)

    # -- geometry -------------------------------------------------------------------------------------------------
    def directions(self) -> torch.Tensor:
        theta = self.angle + 2 * math.pi * torch.arange(self.n_classes, dtype=torch.float64) / self.n_classes
        return torch.stack([theta.cos(), theta.sin()], dim=1)  # (K, 2) u_c

    def modes(self) -> torch.Tensor:
        """(K, 2, 2): [c, 0] the plain mode μ_c, [c, 1] the styled mode s_c (the novel one if ``novel_style``)."""
        u = self.directions()  # (K, 2)
        style_radius = self.radius + (self.novel_offset if self.novel_style else self.style_offset)
        return torch.stack([self.radius * u, style_radius * u], dim=1)

    # -- data -----------------------------------------------------------------------------------------------------
    def log_density(self, x: Tensorish, c: Tensorish) -> torch.Tensor:
        """Exact log q(x | c) of the data mixture, (N,), in x's dtype (-inf is never returned for p in (0, 1))."""
        x = _as_points(x)
        c = _as_classes(c, x.shape[0], self.n_classes)
        m = self.modes().to(x.dtype)[c]  # (N, 2, 2)
        d2 = ((x[:, None, :] - m) ** 2).sum(-1)  # (N, 2) squared distance to the plain and styled mode
        p = self.style_frequency
        log_w = torch.tensor([math.log1p(-p) if p < 1 else -math.inf, math.log(p) if p > 0 else -math.inf])
        log_n = -d2 / (2 * self.mode_std**2) - math.log(2 * math.pi * self.mode_std**2)  # (N, 2) 2-D Gaussian
        return torch.logsumexp(log_n + log_w.to(x.dtype), dim=1)

    def sample_data(
        self, n_per_class: int, rng: torch.Generator | int | None = None, return_styled: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """``n_per_class`` samples of every class: x (K·n, 2) float32 and c (K·n,) long, classes in blocks; with
        ``return_styled`` also the (K·n,) bool mask of samples drawn from the styled mode."""
        if n_per_class < 1:
            raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
        g = _generator(rng, self.seed)
        c = torch.arange(self.n_classes).repeat_interleave(n_per_class)  # (N,)
        styled = torch.rand(c.shape[0], generator=g) < self.style_frequency  # (N,)
        centre = self.modes()[c, styled.long()].to(torch.float32)  # (N, 2)
        x = centre + self.mode_std * torch.randn(c.shape[0], 2, generator=g)
        return (x, c, styled) if return_styled else (x, c)

    def mode_shares(self, x: Tensorish, c: Tensorish) -> dict[str, float]:
        """Fractions of samples whose nearest of the 2K modes is class c's styled mode, its plain mode, or a mode of
        another class (they sum to 1)."""
        x = _as_points(x)
        c = _as_classes(c, x.shape[0], self.n_classes)
        m = self.modes().to(x.dtype).reshape(-1, 2)  # (2K, 2) ordered c0 plain, c0 styled, c1 plain, ...
        nearest = torch.cdist(x, m).argmin(dim=1)  # (N,)
        own = nearest // 2 == c
        styled = own & (nearest % 2 == 1)
        return {
            "styled": float(styled.float().mean()),
            "plain": float((own & ~styled).float().mean()),
            "other": float((~own).float().mean()),
        }

    # -- oracle and rater -----------------------------------------------------------------------------------------
    def class_posterior(self, x: Tensorish, c: Tensorish) -> torch.Tensor:
        """P_geo(c | x), (N,): class c's share of softmax(-|x - m|² / 2σ²) over all 2K modes, equal weights."""
        x = _as_points(x)
        c = _as_classes(c, x.shape[0], self.n_classes)
        m = self.modes().to(x.dtype)  # (K, 2, 2)
        d2 = ((x[:, None, None, :] - m[None]) ** 2).sum(-1)  # (N, K, 2)
        logits = torch.logsumexp(-d2 / (2 * self.mode_std**2), dim=2)  # (N, K)
        return logits.softmax(dim=1).gather(1, c[:, None]).squeeze(1)

    def oracle_reward(self, x: Tensorish, c: Tensorish) -> torch.Tensor:
        """r(x, c) in [-class_penalty, 1], (N,): the styled-mode bump minus the class penalty (module docstring)."""
        x = _as_points(x)
        c = _as_classes(c, x.shape[0], self.n_classes)
        s = self.modes().to(x.dtype)[c, 1]  # (N, 2) styled mode of each sample's class
        bump = torch.exp(-((x - s) ** 2).sum(-1) / (2 * self.bump_width**2))  # (N,)
        return bump - self.class_penalty * (1 - self.class_posterior(x, c))

    def bt_prob(self, x_a: Tensorish, x_b: Tensorish, c: Tensorish, temperature: float = 0.1) -> torch.Tensor:
        """Bradley-Terry P(a ≻ b | c) = σ((r(a, c) - r(b, c)) / temperature), (N,)."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        r_a, r_b = self.oracle_reward(x_a, c), self.oracle_reward(x_b, c)
        return torch.sigmoid((r_a - r_b) / temperature)

    def bt_label(
        self,
        x_a: Tensorish,
        x_b: Tensorish,
        c: Tensorish,
        rng: torch.Generator | int | None = None,
        temperature: float = 0.1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A Bradley-Terry rater: (labels, probs), labels (N,) bool True where a is preferred (drawn with probability
        probs = P(a ≻ b | c), the exact value, e.g. for smoothed labels)."""
        p = self.bt_prob(x_a, x_b, c, temperature)
        return torch.rand(p.shape, generator=_generator(rng, self.seed), dtype=p.dtype) < p, p

    def preference_pairs(
        self,
        x_candidates: Tensorish,
        c: Tensorish,
        rng: torch.Generator | int | None = None,
        temperature: float = 0.1,
        hard: bool = False,
    ) -> PointPairs:
        """Pairs from candidates x_candidates (N, 2, 2) (two samples for each class label c (N,), e.g. from a model
        or the data): the rater's winner first. ``hard=True`` lets the oracle decide without noise (the higher
        reward wins); ``p_true`` is the rater's P(winner ≻ loser) either way."""
        xc = torch.as_tensor(x_candidates)
        if xc.ndim != 3 or xc.shape[1:] != (2, 2):
            raise ValueError(f"x_candidates must have shape (N, 2, 2), got {tuple(xc.shape)}")
        x_a, x_b = _as_points(xc[:, 0], "x_candidates"), _as_points(xc[:, 1], "x_candidates")
        c = _as_classes(c, xc.shape[0], self.n_classes)
        if hard:
            p = self.bt_prob(x_a, x_b, c, temperature)
            a_wins = p >= 0.5
        else:
            a_wins, p = self.bt_label(x_a, x_b, c, rng, temperature)
        w = a_wins[:, None]
        return PointPairs(
            x_w=torch.where(w, x_a, x_b), x_l=torch.where(w, x_b, x_a), c=c, p_true=torch.where(a_wins, p, 1 - p)
        )

    def data_pairs(
        self,
        n_pairs: int,
        rng: torch.Generator | int | None = None,
        temperature: float = 0.1,
        hard: bool = False,
        off_class: float = 0.2,
    ) -> PointPairs:
        """``n_pairs`` rated pairs of data samples, class labels uniform: the training set of a reward model that
        sees only the data's support. In a share ``off_class`` of the pairs the second candidate is a sample of
        another class, so that the RM can learn class correctness too."""
        if n_pairs < 1:
            raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
        if not 0.0 <= off_class <= 1.0:
            raise ValueError(f"off_class must be in [0, 1], got {off_class}")
        g = _generator(rng, self.seed)
        c = torch.randint(self.n_classes, (n_pairs,), generator=g)  # (n,)
        shift = torch.randint(1, self.n_classes, (n_pairs,), generator=g)
        other = torch.rand(n_pairs, generator=g) < off_class
        c_b = torch.where(other, (c + shift) % self.n_classes, c)  # (n,) the second candidate's source class
        centres = self.modes().to(torch.float32)
        x = []
        for cls in (c, c_b):
            styled = (torch.rand(n_pairs, generator=g) < self.style_frequency).long()
            x.append(centres[cls, styled] + self.mode_std * torch.randn(n_pairs, 2, generator=g))
        return self.preference_pairs(torch.stack(x, dim=1), c, g, temperature, hard)


# -- learned reward models --------------------------------------------------------------------------------------------
def _mlp(d_in: int, d_out: int, hidden: int, depth: int) -> nn.Sequential:
    layers, d = [], d_in
    for _ in range(depth):
        layers += [nn.Linear(d, hidden), nn.ReLU()]  # ReLU: extrapolates linearly outside the training region
        d = hidden
    return nn.Sequential(*layers, nn.Linear(d, d_out))


class PointwiseRM(nn.Module):
    """r_φ(x, c): an MLP on [x, one-hot(c)] with one output per class (the c-th is read). Bradley-Terry on it gives
    P(a ≻ b | c) = σ(r_φ(a, c) - r_φ(b, c))."""

    def __init__(self, n_classes: int = 4, hidden: int = 64, depth: int = 2):
        super().__init__()
        self.n_classes = n_classes
        self.net = _mlp(2 + n_classes, n_classes, hidden, depth)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = _as_points(x).to(self.net[0].weight.dtype)  # (N, 2)
        c = _as_classes(c, x.shape[0], self.n_classes)  # (N,)
        out = self.net(torch.cat([x, F.one_hot(c, self.n_classes).to(x.dtype)], dim=1))  # (N, K)
        return out.gather(1, c[:, None]).squeeze(1)  # (N,)

    def logit(self, x_a: torch.Tensor, x_b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self(x_a, c) - self(x_b, c)  # (N,)

    def prob(self, x_a: torch.Tensor, x_b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(x_a, x_b, c))  # (N,) P(a ≻ b | c)


class PairwiseRM(nn.Module):
    """P_φ(a ≻ b | c) = σ(h(a, b, c) - h(b, a, c)), h an MLP on [x_a, x_b, one-hot(c)]: the logit is antisymmetric
    in (a, b) exactly, so P(a ≻ b) + P(b ≻ a) = 1 and P(a ≻ a) = 1/2 by construction."""

    def __init__(self, n_classes: int = 4, hidden: int = 64, depth: int = 2):
        super().__init__()
        self.n_classes = n_classes
        self.net = _mlp(4 + n_classes, n_classes, hidden, depth)

    def _h(self, x_a: torch.Tensor, x_b: torch.Tensor, onehot: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x_a, x_b, onehot], dim=1)).gather(1, c[:, None]).squeeze(1)  # (N,)

    def logit(self, x_a: torch.Tensor, x_b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        dtype = self.net[0].weight.dtype
        x_a, x_b = _as_points(x_a, "x_a").to(dtype), _as_points(x_b, "x_b").to(dtype)  # (N, 2) each
        if x_a.shape != x_b.shape:
            raise ValueError(f"x_a and x_b must have the same shape, got {tuple(x_a.shape)} and {tuple(x_b.shape)}")
        c = _as_classes(c, x_a.shape[0], self.n_classes)  # (N,)
        onehot = F.one_hot(c, self.n_classes).to(dtype)
        return self._h(x_a, x_b, onehot, c) - self._h(x_b, x_a, onehot, c)  # (N,)

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.logit(x_a, x_b, c)

    def prob(self, x_a: torch.Tensor, x_b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(x_a, x_b, c))  # (N,) P(a ≻ b | c)


def _fit(model: nn.Module, pairs: PointPairs, steps: int, lr: float, soft: bool) -> nn.Module:
    """Full-batch Adam on the pair loss: -log σ(logit(w, l)) (hard, the rater's labels), or the cross-entropy with
    the rater's exact P(w ≻ l) as target (``soft``)."""
    if len(pairs) < 1:
        raise ValueError("pairs is empty")
    if steps < 1 or not lr > 0:
        raise ValueError(f"steps must be >= 1 and lr > 0, got steps={steps}, lr={lr}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        z = model.logit(pairs.x_w, pairs.x_l, pairs.c)  # (N,)
        if soft:
            loss = F.binary_cross_entropy_with_logits(z, pairs.p_true.to(z.dtype))
        else:
            loss = -F.logsigmoid(z).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def fit_pointwise_rm(
    pairs: PointPairs,
    n_classes: int = 4,
    steps: int = 400,
    lr: float = 1e-2,
    hidden: int = 64,
    seed: int = 0,
    soft: bool = False,
) -> PointwiseRM:
    """A :class:`PointwiseRM` fitted by the Bradley-Terry loss -log σ(r_φ(x_w, c) - r_φ(x_l, c)) on ``pairs``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PointwiseRM(n_classes, hidden)
    return _fit(model, pairs, steps, lr, soft)


def fit_pairwise_rm(
    pairs: PointPairs,
    n_classes: int = 4,
    steps: int = 400,
    lr: float = 1e-2,
    hidden: int = 64,
    seed: int = 0,
    soft: bool = False,
) -> PairwiseRM:
    """A :class:`PairwiseRM` fitted by cross-entropy on P_φ(x_w ≻ x_l | c) over ``pairs``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PairwiseRM(n_classes, hidden)
    return _fit(model, pairs, steps, lr, soft)


RewardModel = PointwiseRM | PairwiseRM


@torch.no_grad()
def rm_accuracy(rm: RewardModel, pairs: PointPairs) -> float:
    """Share of ``pairs`` where the RM agrees with the label: P_φ(x_w ≻ x_l | c) > 1/2 (ties count 1/2)."""
    p = rm.prob(pairs.x_w, pairs.x_l, pairs.c)
    return float(((p > 0.5).double() + 0.5 * (p == 0.5).double()).mean())


@torch.no_grad()
def rm_win_rate(rm: RewardModel, x: Tensorish, x_ref: Tensorish, c: Tensorish) -> float:
    """Share of i where the RM prefers x[i] to x_ref[i] for class c[i] (ties 1/2)."""
    p = rm.prob(_as_points(x), _as_points(x_ref, "x_ref"), torch.as_tensor(c))
    return float(((p > 0.5).double() + 0.5 * (p == 0.5).double()).mean())


def oracle_win_rate(
    oracle: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: Tensorish, x_ref: Tensorish, c: Tensorish
) -> float:
    """Share of i where oracle(x[i], c[i]) > oracle(x_ref[i], c[i]) (ties 1/2)."""
    r, r_ref = oracle(_as_points(x), c), oracle(_as_points(x_ref, "x_ref"), c)
    return float(((r > r_ref).double() + 0.5 * (r == r_ref).double()).mean())


def hack_gap(
    rm: RewardModel,
    oracle: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: Tensorish,
    c: Tensorish,
    x_ref: Tensorish,
) -> float:
    """How much more the RM thinks the samples ``x`` improved on ``x_ref`` than the oracle does, in win-rate units:

        hack_gap = rm_win_rate(x over x_ref) - oracle_win_rate(x over x_ref)     in [-1, 1],

    with x[i] and x_ref[i] paired for class c[i] (e.g. the trained policy's and the base's samples from the same
    initial noise). Win rates, not reward differences, so that the RM's arbitrary scale and offset cancel and the
    pointwise and pairwise RMs are measured alike. 0: the RM's verdict is the oracle's; > 0: the policy has found
    samples the RM overrates (reward hacking). ``oracle`` is e.g. ``world.oracle_reward``."""
    x, x_ref = _as_points(x), _as_points(x_ref, "x_ref")
    if x.shape != x_ref.shape:
        raise ValueError(f"x and x_ref must have the same shape, got {tuple(x.shape)} and {tuple(x_ref.shape)}")
    c = torch.as_tensor(c)
    return rm_win_rate(rm, x, x_ref, c) - oracle_win_rate(oracle, x, x_ref, c)
