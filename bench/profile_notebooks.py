"""Where a notebook's time goes: base training, arm training, reference log-probs, sampling, oracle scoring,
evaluation, figures and the rest, measured by sampling the running notebook's call stack.

    .venv/bin/python bench/profile_notebooks.py                      # every notebook, smoke mode
    .venv/bin/python bench/profile_notebooks.py 01_dpo --full        # one notebook, full toy profile
    .venv/bin/python bench/profile_notebooks.py --out bench/results/profile_smoke.md
    .venv/bin/python bench/profile_notebooks.py --reproduce 01_dpo 05_tpo --jobs 2 --out profile_full.md

With ``--reproduce`` the notebooks are not run here: ``python -m prefkit.reproduce`` runs them as ``make reproduce``
does (full toy profile, ``--jobs`` side by side, writing ``reproductions/`` and the ledger), and every kernel it
starts profiles itself (``bench/profile_hook/sitecustomize.py``), so one run gives both the reproductions and their
profile. Wall times are then the kernels' own, from start-up to the last sample.

Each notebook's jupytext source (notebooks/NN_name.py) runs in this process, in ``notebooks/``, with its parameters
cell followed by ``smoke = True`` (unless ``--full``) and ``out_dir`` set to a temporary folder, so nothing under
``reproductions/`` changes. A background thread looks at the main thread's stack every few milliseconds and charges
the sample to the innermost frame that belongs to a category (figures, oracle scoring, sampling, reference log-probs,
evaluation); otherwise to base training if a cached base is being trained, to arm training inside a training loop,
and to "other" (world construction, data, set-up) outside them. The toy bases are trained in a fresh cache unless
``--warm-cache``, so their cost shows. Torch runs one thread (``--threads``), as ``make reproduce`` runs notebooks.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CATEGORIES = (
    "base training",
    "arm training",
    "reference log-probs",
    "sampling",
    "oracle scoring",
    "evaluation",
    "figures",
    "other",
)


def _leaf(filename: str, name: str) -> str | None:
    """The category of a frame that decides on its own (innermost wins), or None."""
    f = filename.replace(os.sep, "/")
    if "/matplotlib/" in f or f.endswith("prefkit/plot.py"):
        return "figures"
    if "/prefkit/worlds/" in f and (name.startswith(("score", "oracle", "rater")) or name in ("step_scores", "gold")):
        return "oracle scoring"
    if f.endswith("prefkit/generate.py") or (f.endswith("prefkit/vlm.py") and name == "answers"):
        return "sampling"
    if f.endswith("prefkit/models.py") and name in ("precompute", "precompute_lists", "logps", "list_logps"):
        return "reference log-probs"
    if f.endswith("prefkit/evaluate.py") or name in ("eval_fn", "oracle_summary", "step_accuracy"):
        return "evaluation"
    if f.endswith("prefkit/genret.py") and name in ("benchmark", "score_catalog", "retrieval_metrics"):
        return "evaluation"
    return None


def _category(frame) -> str:
    outer = []
    while frame is not None:
        code = frame.f_code
        leaf = _leaf(code.co_filename, code.co_name)
        if leaf is not None:
            return leaf
        outer.append((code.co_filename.replace(os.sep, "/"), code.co_name))
        frame = frame.f_back
    if any(f.endswith("prefkit/toy.py") and n == "_train_cached" for f, n in outer):
        return "base training"
    if any(f.endswith("prefkit/train.py") and n == "train" for f, n in outer):
        return "arm training"
    if any(n.startswith("train") or n in ("fit", "spo", "bt_rl") for f, n in outer if "/prefkit/" in f):
        return "arm training"
    return "other"


class StackSampler(threading.Thread):
    """Samples ``thread_id``'s stack every ``interval`` seconds and counts samples per category."""

    def __init__(self, thread_id: int, interval: float = 0.005):
        super().__init__(daemon=True)
        self.thread_id, self.interval = thread_id, interval
        self.counts: Counter = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            frame = sys._current_frames().get(self.thread_id)
            if frame is not None:
                self.counts[_category(frame)] += 1
            del frame
            time.sleep(self.interval)


def notebook_code(py: Path, overrides: dict) -> str:
    """The notebook's code cells, with ``overrides`` assigned right after its parameters cell."""
    import jupytext

    nb = jupytext.read(py)
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        src = cell.source
        if "pip" in src and "find_spec" in src:  # the install cell: prefkit is installed here
            continue
        cells.append(src)
        if "parameters" in cell.metadata.get("tags", []):
            cells.append("\n".join(f"{k} = {v!r}" for k, v in overrides.items()))
    return "\n\n".join(cells)


def profile(name: str, full: bool) -> dict:
    py = ROOT / "notebooks" / f"{name}.py"
    out = Path(tempfile.mkdtemp(prefix=f"profile-{name}-"))
    overrides = {"out_dir": str(out)} if full else {"smoke": True, "out_dir": str(out)}
    code = compile(notebook_code(py, overrides), str(py), "exec")
    cwd = os.getcwd()
    os.chdir(py.parent)
    sampler = StackSampler(threading.get_ident())
    t0 = time.perf_counter()
    sampler.start()
    try:
        exec(code, {"__name__": "__main__", "display": lambda *a, **k: None})
    finally:
        sampler.stop.set()
        sampler.join()
        os.chdir(cwd)
    wall = time.perf_counter() - t0
    n = max(1, sum(sampler.counts.values()))
    import matplotlib.pyplot as plt

    plt.close("all")
    return {"notebook": name, "wall_s": wall, **{c: wall * sampler.counts[c] / n for c in CATEGORIES}}


def table(rows: list[dict]) -> str:
    head = "| notebook | wall s | " + " | ".join(CATEGORIES) + " |"
    lines = [head, "|---" * (len(CATEGORIES) + 2) + "|"]
    for r in rows:
        cells = [f"{r[c]:.1f} ({100 * r[c] / r['wall_s']:.0f}%)" for c in CATEGORIES]
        lines.append(f"| {r['notebook']} | {r['wall_s']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def profile_reproduce(names: list[str], jobs: int, threads: int, force: bool) -> list[dict]:
    """Run ``python -m prefkit.reproduce`` with every notebook kernel profiling itself; one row per kernel."""
    import json
    import subprocess

    hook = ROOT / "bench" / "profile_hook"
    prof = Path(tempfile.mkdtemp(prefix="prefkit-profile-"))
    env = {**os.environ, "PREFKIT_PROFILE_DIR": str(prof)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "prefkit.reproduce", *names, "--jobs", str(jobs), "--threads", str(threads)]
    rc = subprocess.run(cmd + (["--force"] if force else []), env=env, cwd=ROOT).returncode
    rows = []
    for f in sorted(prof.glob("*.json")):
        r = json.loads(f.read_text())
        n = max(1, sum(r["counts"].values()))
        name = Path(r["out_dir"]).name if r["out_dir"] else f.stem
        shares = {c: r["wall_s"] * r["counts"].get(c, 0) / n for c in CATEGORIES}
        rows.append({"notebook": name, "wall_s": r["wall_s"], **shares})
    if rc != 0:
        print(f"prefkit.reproduce exited with status {rc}", file=sys.stderr)
    return sorted(rows, key=lambda r: r["notebook"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="names like 01_dpo (default: all)")
    ap.add_argument("--full", action="store_true", help="full toy profile instead of smoke mode")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warm-cache", action="store_true", help="reuse cached toy bases instead of a fresh cache")
    ap.add_argument("--out", help="write the table (markdown) here as well")
    ap.add_argument("--reproduce", action="store_true", help="profile a real `make reproduce` run (see above)")
    ap.add_argument("--jobs", type=int, default=2, help="--reproduce: notebooks side by side")
    ap.add_argument("--force", action="store_true", help="--reproduce: run even the notebooks that are up to date")
    args = ap.parse_args()
    if args.reproduce:
        rows = profile_reproduce(args.notebooks, args.jobs, args.threads, args.force)
        _report(rows, args)
        return
    import matplotlib

    matplotlib.use("Agg")
    os.environ["PREFKIT_THREADS"] = str(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("PREFKIT_ALLOW_DIRTY", "1")  # in-process results go to a temporary folder, not reproductions/
    if not args.warm_cache:
        os.environ["PREFKIT_CACHE"] = tempfile.mkdtemp(prefix="prefkit-cache-")
    import torch

    torch.set_num_threads(args.threads)
    names = args.notebooks or sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    rows = []
    for name in names:
        print(f"== {name} ({'full' if args.full else 'smoke'})", flush=True)
        rows.append(profile(name, args.full))
        print(table(rows[-1:]), flush=True)
    _report(rows, args)


def _report(rows: list[dict], args: argparse.Namespace) -> None:
    text = table(rows)
    print(text)
    if args.out:
        cmd = " ".join(["bench/profile_notebooks.py", *sys.argv[1:]])
        meta = f"`{cmd}` on {os.cpu_count()} cores, {args.threads} torch thread(s), {time.strftime('%Y-%m-%d')}"
        Path(args.out).write_text(f"{meta}\n\n{text}\n")


if __name__ == "__main__":
    main()
