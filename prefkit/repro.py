"""Seeding, claims, atomic result records and the claims ledger.

A reproduction records *claims*: a statement, a metric measured once per seed, a test applied to those values, and
an honest status (``reproduced`` / ``partial`` / ``not reproduced``). ``write_result`` writes
``reproductions/<method>/result.json`` atomically (temporary file, then rename), so an interrupted run leaves the
previous result intact, and ``write_ledger`` regenerates ``reproductions/README.md`` from every result.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATUSES = ("reproduced", "partial", "not reproduced", "not asserted")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch Generator seeded the same way for explicit sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def torch_threads(default: int = 4) -> int:
    """Threads a notebook gives torch: ``PREFKIT_THREADS`` when set (``make reproduce`` runs notebooks side by side
    with one thread each), else ``min(default, cores)``."""
    env = os.environ.get("PREFKIT_THREADS", "").strip()
    if env:
        n = int(env)
        if n < 1:
            raise ValueError(f"PREFKIT_THREADS must be a positive integer, got {env!r}")
        return n
    return min(default, os.cpu_count() or 1)


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


@dataclass
class Claim:
    """One checkable statement, measured per seed.

    ``test`` is a human-readable description of the rule, ``passed`` applies it to the per-seed values and returns
    True/False. ``status`` is derived: all seeds pass -> reproduced, some -> partial, none -> not reproduced; a claim
    in smoke mode that is not meaningful at smoke size is ``not asserted``.
    """

    id: str
    statement: str
    metric: str
    values: list[float]
    test: str
    per_seed_pass: list[bool]
    paper: str = ""
    asserted: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if not self.asserted:
            return "not asserted"
        if not self.per_seed_pass:
            return "not reproduced"
        k = sum(self.per_seed_pass)
        return "reproduced" if k == len(self.per_seed_pass) else ("partial" if k else "not reproduced")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(spread=mean_spread(self.values) if self.values else {}, status=self.status)
        return d


def claims_table(claims: Sequence[Claim]):
    """The "paper vs ours" table of a notebook: one row per claim (a pandas DataFrame)."""
    import pandas as pd

    cols = ("id", "statement", "paper", "metric", "values", "test", "status")
    return pd.DataFrame([{k: c.to_dict()[k] for k in cols} for c in claims])


def make_claim(
    id: str,
    statement: str,
    metric: str,
    values: Sequence[float],
    rule: Callable[[float], bool],
    test: str,
    **kw,
) -> Claim:
    """Build a claim by applying ``rule`` to each seed's value; ``test`` states the rule in words."""
    vals = [float(v) for v in values]
    return Claim(id, statement, metric, vals, test, [bool(rule(v)) for v in vals], **kw)


def _git(*args: str) -> str | None:
    """Output of ``git <args>`` run in prefkit's folder, or None outside a git checkout (an installed wheel)."""
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, cwd=Path(__file__).resolve().parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


# What `make reproduce` itself writes: output there does not make the tree that produced a result dirty.
OUTPUT_DIRS = ("runs", "reproductions")


def git_state() -> dict[str, Any]:
    """The full commit of prefkit's checkout and whether its tree is dirty (``git status --porcelain`` lists
    anything outside ``runs/`` and ``reproductions/``); ``"unknown"`` / None outside a git checkout."""
    commit = (_git("rev-parse", "HEAD") or "").strip()
    status = _git("status", "--porcelain", "--", ":(top)", *(f":(top,exclude){d}" for d in OUTPUT_DIRS))
    return {"commit": commit or "unknown", "dirty": None if status is None else bool(status.strip())}


def environment() -> dict[str, Any]:
    """What produced a result: prefkit commit (short and full), whether the tree was dirty, library versions,
    device."""
    import transformers

    git = git_state()
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return {
        "prefkit_commit": git["commit"][:7] if git["commit"] != "unknown" else "unknown",
        "commit": git["commit"],
        "dirty": git["dirty"],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": dev,
    }


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):  # NumPy scalars: float64, int64, bool_
        x = x.item()
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, torch.Tensor):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_result(
    out_dir: str | os.PathLike,
    method: str,
    paper: dict[str, Any],
    claims: Sequence[Claim],
    parameters: dict[str, Any],
    figures: Sequence[str] = (),
    smoke: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``<out_dir>/result.json`` atomically and return its path.

    ``paper``: ``{"arxiv": ..., "title": ..., "claim": ..., "number": ...}``. Figures are file names relative to
    ``out_dir`` and must exist (a result never points at a figure that was not written).
    """
    out_dir = Path(out_dir)
    missing = [f for f in figures if not (out_dir / f).exists()]
    if missing:
        raise FileNotFoundError(f"figures not found in {out_dir}: {missing}")
    ids = [c.id for c in claims]
    if len(set(ids)) != len(ids):
        raise ValueError(f"claim ids must be unique, got {ids}")
    record = {
        "method": method,
        "paper": paper,
        "claims": [c.to_dict() for c in claims],
        "parameters": parameters,
        "environment": environment(),
        "smoke": bool(smoke),
        "figures": list(figures),
        **(extra or {}),
    }
    return atomic_write_text(out_dir / "result.json", json.dumps(_jsonable(record), indent=2) + "\n")


def load_result(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _fmt(claim: dict[str, Any]) -> str:
    """``mean ± std (n=k)`` of a recorded claim; a seed whose value was NaN or infinite (stored as null) is named
    instead of hidden, since its spread is undefined."""
    values, spread = claim.get("values", []), claim.get("spread", {})
    bad = [i + 1 for i, v in enumerate(values) if v is None]
    if bad:
        seeds = ", ".join(map(str, bad))
        return f"n/a (NaN or inf in seed {seeds} of {len(values)})"
    if not spread:
        return "-"
    return f"{spread['mean']:.3g} ± {spread['std']:.2g} (n={spread['n']})"


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(x).replace("|", "\\|").replace("\n", " ") for x in cells) + " |"


def _results(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``<root>/*/result.json`` with its record, in notebook order (results without a notebook name last)."""
    found = [(rj, load_result(rj)) for rj in root.glob("*/result.json")]
    return sorted(found, key=lambda x: (x[1].get("notebook") or "~", x[1]["method"]))


def status_counts(result: dict[str, Any]) -> str:
    """How many claims of a result have each status, e.g. ``"1 not reproduced, 2 reproduced"``."""
    counts: dict[str, int] = {}
    for c in result["claims"]:
        counts[c["status"]] = counts.get(c["status"], 0) + 1
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))


def _tree(result: dict[str, Any]) -> str:
    dirty = result.get("environment", {}).get("dirty")
    return "not recorded" if dirty is None else ("dirty" if dirty else "clean")


def _summary_row(rj: Path, r: dict[str, Any]) -> list[str]:
    env, run = r.get("environment", {}), r.get("run", {})
    wall = run.get("wall_s")
    commit = env.get("commit") or env.get("prefkit_commit") or "unknown"
    return [
        f"[{r.get('notebook') or r['method']}]({rj.parent.name}/)",
        status_counts(r),
        "not recorded" if wall is None else f"{wall / 60:.1f}",
        run.get("threads", "not recorded"),
        run.get("jobs", "not recorded"),
        env.get("device", "not recorded"),
        commit[:7] if commit != "unknown" else commit,
        _tree(r),
    ]


def write_ledger(root: str | os.PathLike = "reproductions") -> Path:
    """Regenerate ``<root>/README.md`` from every ``<root>/*/result.json``: a summary row per notebook (claims by
    status, wall time, threads, commit, clean or dirty tree), then one row per claim."""
    root = Path(root)
    results = _results(root)
    lines = [
        "# Claims ledger",
        "",
        "Generated by `make reproduce` (`prefkit.repro.write_ledger`); do not edit by hand.",
        "Paper numbers come from the paper's scale; ours come from the offline toy world (tiny models, exact oracle),",
        "so the comparison is of directions and orderings, not absolute values. Values are mean ± sample std over seeds.",
        "",
        "## Notebooks",
        "",
        "Wall time is the notebook's run under `make reproduce` as recorded in its result.json (`run.wall_s`), with",
        "`threads` torch threads and `jobs` notebooks running side by side on the device shown; results from before",
        "it was recorded say so. `dirty`: the result was produced from a tree with uncommitted changes.",
        "",
        "| notebook | claims | wall time (min) | threads | jobs | device | commit | tree |",
        "|---|---|---|---|---|---|---|---|",
        *(_row(_summary_row(rj, r)) for rj, r in results),
        "",
        "## Claims",
        "",
        "| method | claim | statement | paper | ours | test | status | scale |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rj, r in sorted(results, key=lambda x: x[0]):
        scale = "smoke" if r.get("smoke") else "toy (full)"
        if r.get("environment", {}).get("dirty"):
            scale += ", dirty tree"
        for c in r["claims"]:
            cells = [
                f"[{r['method']}]({rj.parent.name}/)",
                c["id"],
                c["statement"],
                c.get("paper") or r["paper"].get("number", ""),
                f"{c['metric']}: {_fmt(c)}",
                c["test"],
                f"**{c['status']}**",
                scale,
            ]
            lines.append(_row(cells))
    return atomic_write_text(root / "README.md", "\n".join(lines) + "\n")


def method_status(result: dict[str, Any]) -> str:
    """One word for a method: reproduced if every asserted claim is, not reproduced if none is, else partial."""
    st = [c["status"] for c in result["claims"] if c["status"] != "not asserted"]
    if not st:
        return "not asserted"
    if all(s == "reproduced" for s in st):
        return "reproduced"
    if all(s == "not reproduced" for s in st):
        return "not reproduced"
    return "partial"


README_START, README_END = "<!-- notebooks:start -->", "<!-- notebooks:end -->"


def update_readme_table(readme: str | os.PathLike = "README.md", root: str | os.PathLike = "reproductions") -> Path:
    """Rewrite the notebook table between the README's markers from every ``<root>/*/result.json``."""
    readme, root = Path(readme), Path(root)
    rows = ["| notebook | paper | claims | status |", "|---|---|---|---|"]
    for _, r in _results(root):
        nb = r.get("notebook", "")
        link = f"[{nb}](notebooks/{nb}.ipynb)" if nb else r["method"]
        paper = f"{r['paper'].get('title', '')} (arXiv:{r['paper'].get('arxiv', '')})"
        scale = " (smoke run)" if r.get("smoke") else ""
        rows.append(f"| {link} | {paper} | {status_counts(r)} | **{method_status(r)}**{scale} |")
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        raise ValueError(f"{readme} has no {README_START} ... {README_END} markers")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    return atomic_write_text(readme, head + README_START + "\n" + "\n".join(rows) + "\n" + README_END + tail)


if __name__ == "__main__":
    import sys

    if len(sys.argv) >= 2 and sys.argv[1] == "ledger":
        root = sys.argv[2] if len(sys.argv) > 2 else "reproductions"
        print(f"wrote {write_ledger(root)}")
        if len(sys.argv) > 3:
            print(f"updated {update_readme_table(sys.argv[3], root)}")
    else:
        sys.exit("usage: python -m prefkit.repro ledger [REPRODUCTIONS_DIR [README]]")
