"""Claims judged by their evidence: an estimate, a 95% interval, and a minimum effect fixed before the run.

Three kinds of claim (../DESIGN "Claims and evidence"):

- ``headline``: what the paper claims, in its direction; ``secondary``: an ablation or a finding of ours;
- ``gate``: a mechanism check (the judge beats chance, the auxiliary head learns) that must pass before the claims
  naming it in ``requires`` can be tested at all.

A comparison is measured on paired units (the same prompts under both arms), per seed. ``compare`` turns per-unit
values into an estimate (the mean over seeds of each seed's mean difference) and a 95% interval from a hierarchical
bootstrap (resample seeds, then units within each drawn seed) with a fixed bootstrap seed, so the same data always
gives the same interval. ``per_seed`` does the same for one number per seed with a t-interval over seeds. The status
then follows mechanically, first rule that applies, on the difference oriented so that positive is the paper's
direction:

=================  =====================================================================================
not testable       a gate named in ``requires`` failed
reversed           the interval lies below 0 (non-inferiority: below ``-margin``)
reproduced         the interval lies above 0 and the estimate is >= ``delta`` (non-inferiority: the lower
                   bound is above ``-margin``)
not reproduced     the upper bound is below ``delta``: any effect is too small to matter
inconclusive       anything else: the test could not tell (the interval's half-width says by how much)
=================  =====================================================================================

A gate is ``passed`` when its whole interval is on the right side of its threshold, else ``failed``. A claim that is
not meaningful at the size it ran (smoke mode, a profile without an oracle) is recorded as ``not asserted``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

KINDS = ("headline", "secondary", "gate")
CLAIM_STATUSES = ("reproduced", "reversed", "not reproduced", "inconclusive", "not testable")
GATE_STATUSES = ("passed", "failed")
NOT_ASSERTED = "not asserted"
OLD_RULE = "old rule"  # claims judged per seed by a sign rule (before intervals); kept so old results render
BOOTSTRAP_SEED = 20240601  # fixed: the same data gives the same interval
N_BOOT = 10_000
LEVEL = 0.95


@dataclass
class Claim:
    """One claim with its evidence. Build it with ``compare``, ``per_seed`` or ``gate``; ``status`` is derived."""

    id: str
    statement: str
    metric: str
    kind: str = "headline"
    values: list[float | None] = field(default_factory=list)  # the per-seed statistic (display and spread)
    estimate: float | None = None
    interval: list[float] | None = None  # [low, high], 95%
    interval_method: str = ""
    direction: str = "greater"  # the paper's direction: "greater" or "less"
    delta: float | None = None  # minimum effect that matters (comparison claims)
    margin: float | None = None  # non-inferiority margin ("stays the same" claims)
    threshold: float | None = None  # gates
    requires: list[str] = field(default_factory=list)
    test: str = ""  # the rule in words
    paper: str = ""
    asserted: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    own_status: str = ""  # from the claim's own evidence, before its gates are looked at
    blocked_by: list[str] = field(default_factory=list)  # failed gates named in ``requires``
    per_seed_pass: list[bool] = field(default_factory=list)  # old rule only

    @property
    def status(self) -> str:
        if not self.asserted:
            return NOT_ASSERTED
        if self.blocked_by:
            return "not testable"
        return self.own_status

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        finite = [v for v in self.values if v is not None and math.isfinite(v)]
        spread = mean_spread(finite) if finite and len(finite) == len(self.values) else {}
        d.update(spread=spread, status=self.status)
        return d


def mean_spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max of per-seed values."""
    v = np.asarray(values, dtype=float)
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "n": len(v),
    }


def _sign(direction: str) -> int:
    if direction not in ("greater", "less"):
        raise ValueError(f"direction must be 'greater' or 'less', got {direction!r}")
    return 1 if direction == "greater" else -1


def _units(x: Any, what: str, seed: int) -> np.ndarray:
    a = np.asarray(x, dtype=float).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{what}: seed {seed} has no units")
    if not np.isfinite(a).all():
        bad = int(np.flatnonzero(~np.isfinite(a))[0])
        raise ValueError(f"{what}: seed {seed}, unit {bad} is {a[bad]} (NaN or inf)")
    return a


def _boot_means(a: np.ndarray, n_boot: int, rng: np.random.Generator, chunk: int = 2_000_000) -> np.ndarray:
    """``n_boot`` means of ``a`` resampled with replacement."""
    out = np.empty(n_boot)
    step = max(1, chunk // a.size)
    for i in range(0, n_boot, step):
        m = min(step, n_boot - i)
        out[i : i + m] = a[rng.integers(0, a.size, size=(m, a.size))].mean(axis=1)
    return out


def hierarchical_bootstrap(
    groups: Sequence[Sequence[np.ndarray]],
    signs: Sequence[int] = (1,),
    n_boot: int = N_BOOT,
    seed: int = BOOTSTRAP_SEED,
    level: float = LEVEL,
) -> tuple[float, float, float, list[float]]:
    """Estimate and ``level`` percentile interval of the mean over seeds of a per-seed statistic.

    ``groups[s]`` holds seed ``s``'s unit arrays and the statistic is ``sum(sign * mean(array))``: one array of paired
    differences (``signs=(1,)``), or treatment and control units resampled independently (``signs=(1, -1)``).
    Each replicate draws the seeds with replacement, then, for every drawn slot, the units within that seed afresh.
    Returns (estimate, low, high, per-seed statistics).
    """
    k = len(groups)
    if k == 0:
        raise ValueError("no seeds")
    per_seed = [float(sum(s * a.mean() for s, a in zip(signs, g))) for g in groups]
    rng = np.random.default_rng(seed)
    slots = rng.integers(0, k, size=(n_boot, k))  # which seed fills each slot of each replicate
    total = np.zeros(n_boot)
    cols = np.arange(n_boot)
    for j in range(k):
        boot = np.stack([sum(s * _boot_means(a, n_boot, rng) for s, a in zip(signs, g)) for g in groups])
        total += boot[slots[:, j], cols]
    means = total / k
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(np.mean(per_seed)), float(lo), float(hi), per_seed


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and ``level`` t-interval over seeds; with one seed there is no interval (-inf, inf)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"per-seed values must be finite and non-empty, got {list(values)}")
    m = float(v.mean())
    if v.size < 2:
        return m, -math.inf, math.inf
    half = float(stats.t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half


def judge(estimate: float, low: float, high: float, direction: str, delta: float | None, margin: float | None) -> str:
    """The status of a comparison from its own evidence (gates aside), by the rules of the module docstring."""
    s = _sign(direction)
    est, lo, hi = s * estimate, min(s * low, s * high), max(s * low, s * high)  # positive = the paper's direction
    if margin is not None:
        if hi < -margin:
            return "reversed"
        return "reproduced" if lo > -margin else "inconclusive"
    if hi < 0:
        return "reversed"
    if lo > 0 and est >= delta:
        return "reproduced"
    if hi < delta:
        return "not reproduced"
    return "inconclusive"


def _effect_rule(direction: str, delta: float | None, margin: float | None, kind: str) -> tuple[str, str]:
    if kind not in ("headline", "secondary"):
        raise ValueError(f"a comparison claim is 'headline' or 'secondary', got kind={kind!r}")
    if (delta is None) == (margin is None):
        raise ValueError("give exactly one of delta (a minimum effect) or margin (a non-inferiority margin)")
    size = delta if margin is None else margin
    if not (isinstance(size, (int, float)) and math.isfinite(size) and size > 0):
        raise ValueError(f"delta and margin must be finite and > 0, got {size!r}")
    op = ">" if _sign(direction) > 0 else "<"
    if margin is not None:
        bound = "low" if op == ">" else "high"
        return op, f"non-inferiority: 95% interval's {bound} end {op} {'-' if op == '>' else '+'}{margin:g}"
    return op, f"{op} 0 with 95% interval excluding 0 and |estimate| >= delta {delta:g}"


def compare(
    id: str,
    statement: str,
    metric: str,
    treatment: Sequence[Sequence[float]],
    control: Sequence[Sequence[float]] | float,
    *,
    delta: float | None = None,
    margin: float | None = None,
    direction: str = "greater",
    kind: str = "headline",
    paired: bool = True,
    requires: Sequence[str] = (),
    paper: str = "",
    asserted: bool = True,
    extra: dict[str, Any] | None = None,
) -> Claim:
    """A comparison claim on units: ``treatment[s]`` and ``control[s]`` are seed ``s``'s per-unit values (the same
    units in the same order when ``paired``), or ``control`` is a number every unit is compared with (a win rate
    against 0.5). The metric is ``treatment - control``; ``direction`` is the paper's (``"less"``: the paper says
    the treatment lowers it). Fix ``delta`` (or ``margin`` for a "stays the same" claim) before the run."""
    _, rule = _effect_rule(direction, delta, margin, kind)
    if isinstance(control, (int, float)):
        control = [[float(control)] * len(np.asarray(t).reshape(-1)) for t in treatment]
    if len(treatment) != len(control) or not treatment:
        raise ValueError(f"{id}: treatment has {len(treatment)} seeds and control {len(control)}; need the same, >= 1")
    groups, n_units = [], []
    for s, (t, c) in enumerate(zip(treatment, control)):
        t, c = _units(t, f"{id} treatment", s), _units(c, f"{id} control", s)
        if paired and t.shape != c.shape:
            raise ValueError(f"{id}: seed {s} pairs {t.size} treatment units with {c.size} control units")
        groups.append([t - c] if paired else [t, c])
        n_units.append(t.size)
    est, lo, hi, per_seed = hierarchical_bootstrap(groups, (1,) if paired else (1, -1))
    how = "paired" if paired else "unpaired (arms resampled independently)"
    method = f"hierarchical bootstrap over {len(groups)} seed(s), then {how} units ({min(n_units)}-{max(n_units)})"
    return Claim(
        id, statement, metric, kind, per_seed, est, [lo, hi], method, direction, delta, margin,
        requires=list(requires), test=rule, paper=paper, asserted=asserted, extra=dict(extra or {}),
        own_status=judge(est, lo, hi, direction, delta, margin),
    )  # fmt: skip


def per_seed(
    id: str,
    statement: str,
    metric: str,
    values: Sequence[float],
    baseline: Sequence[float] | float = 0.0,
    *,
    delta: float | None = None,
    margin: float | None = None,
    direction: str = "greater",
    kind: str = "headline",
    requires: Sequence[str] = (),
    paper: str = "",
    asserted: bool = True,
    extra: dict[str, Any] | None = None,
) -> Claim:
    """A comparison claim with one number per seed and no units: ``values - baseline`` with a t-interval over seeds
    (so it needs at least two seeds to be anything but inconclusive)."""
    _, rule = _effect_rule(direction, delta, margin, kind)
    v = np.asarray(values, dtype=float).reshape(-1)
    b = np.broadcast_to(np.asarray(baseline, dtype=float), v.shape) if np.ndim(baseline) == 0 else np.asarray(baseline)
    if b.shape != v.shape:
        raise ValueError(f"{id}: {v.size} values against {np.size(baseline)} baselines")
    d = v - b
    est, lo, hi = t_interval(d)
    return Claim(
        id, statement, metric, kind, d.tolist(), est, [lo, hi], f"t-interval over {d.size} seed(s), no units",
        direction, delta, margin, requires=list(requires), test=rule, paper=paper, asserted=asserted,
        extra=dict(extra or {}), own_status=judge(est, lo, hi, direction, delta, margin),
    )  # fmt: skip


def gate(
    id: str,
    statement: str,
    metric: str,
    values: Sequence[Sequence[float]] | Sequence[float],
    threshold: float,
    *,
    direction: str = "greater",
    paper: str = "",
    asserted: bool = True,
    extra: dict[str, Any] | None = None,
) -> Claim:
    """A mechanism check: ``passed`` when the whole 95% interval of the metric is beyond ``threshold`` (above it for
    ``direction="greater"``). ``values`` is per-seed unit arrays (hierarchical bootstrap) or one number per seed
    (t-interval; one seed gives no interval, so the gate fails)."""
    s = _sign(direction)
    if not math.isfinite(threshold):
        raise ValueError(f"{id}: threshold must be finite, got {threshold}")
    if len(values) and np.ndim(values[0]) > 0:
        groups = [[_units(u, id, i)] for i, u in enumerate(values)]
        est, lo, hi, seeds_ = hierarchical_bootstrap(groups)
        method = f"hierarchical bootstrap over {len(groups)} seed(s), then units"
    else:
        est, lo, hi = t_interval(values)
        seeds_, method = [float(x) for x in values], f"t-interval over {len(values)} seed(s), no units"
    passed = lo > threshold if s > 0 else hi < threshold
    op = ">" if s > 0 else "<"
    return Claim(
        id, statement, metric, "gate", seeds_, est, [lo, hi], method, direction, threshold=threshold,
        test=f"95% interval {op} {threshold:g}", paper=paper, asserted=asserted, extra=dict(extra or {}),
        own_status="passed" if passed else "failed",
    )  # fmt: skip


def resolve(claims: Sequence[Claim]) -> list[Claim]:
    """Check ids and ``requires``, and mark every claim whose named gate failed (or was not asserted) as blocked.
    Returns the claims (the same objects)."""
    ids = [c.id for c in claims]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"claim ids must be unique, got duplicates {dup}")
    by_id = {c.id: c for c in claims}
    for c in claims:
        blocked = []
        for g in c.requires:
            if g not in by_id:
                raise ValueError(f"claim {c.id} requires gate {g!r}, which is not among the claims {ids}")
            if by_id[g].kind != "gate":
                raise ValueError(f"claim {c.id} requires {g!r}, which is a {by_id[g].kind} claim, not a gate")
            if by_id[g].status != "passed":
                blocked.append(g)
        c.blocked_by = blocked
    return list(claims)


def old_rule_status(per_seed_pass: Sequence[bool]) -> str:
    """How the per-seed sign rule came out, e.g. ``"old rule: 2/3 seeds"`` (not evidence; see the module doc)."""
    return f"{OLD_RULE}: {sum(per_seed_pass)}/{len(per_seed_pass)} seeds"


def fmt_interval(estimate: float | None, interval: Sequence[float] | None) -> str:
    """``+0.031 [0.012, 0.050]``; an infinite end is shown as such."""
    if estimate is None:
        return "-"
    if not interval:
        return f"{estimate:+.3g}"
    # an infinite end is stored as null in result.json (one seed: no interval)
    lo, hi = interval
    lo = "-inf" if lo is None or lo == -math.inf else f"{lo:.3g}"
    hi = "inf" if hi is None or hi == math.inf else f"{hi:.3g}"
    return f"{estimate:+.3g} [{lo}, {hi}]"
