"""One figure style for every notebook, and atomic figure saving."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 130,
    "savefig.bbox": "tight",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
}


def apply_style() -> None:
    plt.rcParams.update(STYLE)


def figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.2):
    """A figure with ``nrows x ncols`` axes in the house style; returns ``(fig, axes)`` (axes always an array)."""
    apply_style()
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes.ravel()


def mean_band(ax, x: Sequence[float], runs: Sequence[Sequence[float]], label: str, color=None, **kw):
    """Plot the mean over seeds with a band of ± one standard deviation; each run is one seed's curve."""
    y = np.asarray(runs, dtype=float)  # (seeds, len(x))
    m = np.nanmean(y, 0)
    line = ax.plot(x, m, label=f"{label} (n={len(y)})", color=color, **kw)[0]
    if len(y) > 1:
        s = np.nanstd(y, 0, ddof=1)
        ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.18, linewidth=0)
    return line


def save(fig, out_dir: str | os.PathLike, name: str) -> str:
    """Save ``fig`` as ``out_dir/name`` via a temporary file and rename; returns ``name``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{name}.tmp{Path(name).suffix}"
    fig.savefig(tmp)
    tmp.replace(out / name)
    return name


def training_curves(steps, columns: dict[str, str], title: str):
    """One figure of per-step training metrics: ``columns`` maps a column of a history's ``steps`` DataFrame to its
    label. Returns the figure (save it with :func:`save`)."""
    fig, (ax,) = figure(width=5.2)
    for col, label in columns.items():
        ax.plot(steps["step"], steps[col], label=label)
    ax.set(xlabel="step", title=title)
    ax.legend()
    return fig


SIMPLEX_CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])  # (3, 2) where the pure policies sit


def simplex_xy(p) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric to Cartesian: probabilities (N, 3) (or one (3,)) to the points (x, y) of an equilateral triangle
    with response 0 at (0, 0), 1 at (1, 0) and 2 at (1/2, √3/2)."""
    xy = np.asarray(p, dtype=float) @ SIMPLEX_CORNERS  # (N, 2)
    return xy[..., 0], xy[..., 1]


def simplex_axes(ax, labels: Sequence[str]):
    """Draw the probability triangle on ``ax`` with ``labels`` at its corners, equal aspect and no ticks or grid;
    plot policies on it with ``ax.plot(*simplex_xy(p))``. Returns ``ax``."""
    if len(labels) != 3:
        raise ValueError(f"a simplex plot has 3 corners, got {len(labels)} labels")
    x, y = SIMPLEX_CORNERS[[0, 1, 2, 0]].T
    ax.plot(x, y, color="0.3", linewidth=0.8)
    offsets = [(-0.04, -0.05), (0.04, -0.05), (0.0, 0.04)]  # push each label outwards from its corner
    for (cx, cy), (dx, dy), label in zip(SIMPLEX_CORNERS, offsets, labels):
        ax.text(cx + dx, cy + dy, label, ha="center", va="center")
    ax.set(xlim=(-0.1, 1.1), ylim=(-0.1, 0.97), xticks=[], yticks=[], aspect="equal")
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return ax


def pictures_with_attention(
    ax, images: Sequence[np.ndarray], maps: Sequence[np.ndarray], title: str = "", targets=None, gap: int = 2
):
    """Pictures side by side with each one's (g, g) patch-attention map over it: the more attention a patch gets,
    the more it glows (one scale for the whole row). ``targets``: per picture a bool pixel mask; its bounding box is drawn in green."""
    s = images[0].shape[0]
    width = len(images) * (s + gap) - gap
    canvas = np.ones((s, width, 3))
    heat = np.zeros((s, width))
    boxes = []
    for i, (im, m) in enumerate(zip(images, maps)):
        x = i * (s + gap)
        canvas[:, x : x + s] = im / 255.0
        heat[:, x : x + s] = np.kron(m, np.ones((s // m.shape[0], s // m.shape[1])))
        if targets is not None and np.any(targets[i]):
            ys, xs = np.nonzero(targets[i])
            boxes.append((x + xs.min() - 0.5, ys.min() - 0.5, xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
    rgba = plt.get_cmap("inferno")(heat / max(heat.max(), 1e-12))
    rgba[..., 3] = 0.8 * heat / max(heat.max(), 1e-12)
    ax.imshow(canvas, interpolation="nearest")
    ax.imshow(rgba, interpolation="nearest")
    for bx, by, bw, bh in boxes:  # the target's bounding box (pic-in-pic "large": the whole picture)
        ax.add_patch(plt.Rectangle((bx, by), bw, bh, fill=False, edgecolor="#2ca02c", linewidth=2))
    ax.set(xticks=[], yticks=[], title=title)
    ax.grid(False)
