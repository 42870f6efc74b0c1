"""Do the speed changes leave the numbers alone? Every notebook in smoke mode at an earlier commit and at the working
tree, side by side, and every number of the two result.json files compared.

    .venv/bin/python bench/same_numbers.py 4a9654c                 # all notebooks
    .venv/bin/python bench/same_numbers.py 4a9654c 01_dpo 05_tpo   # some
    .venv/bin/python bench/same_numbers.py 4a9654c --out bench/results/same_numbers.md

The earlier commit is checked out into a temporary worktree; each side's notebook runs under papermill with that
side's prefkit first on ``PYTHONPATH``, a fresh toy-model cache (so the bases are trained by that side's code too) and
its own ``out_dir``. Both sides run with that side's notebook defaults for threads: this compares the whole change,
thread count included. Compared: every claim's per-seed values and every other numeric leaf of result.json (arms,
curves, summaries), except the records of the run itself (environment, run, timings). Two notebooks run at a time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"environment", "run", "wall_s", "time", "seconds", "elapsed", "torch_threads"}


def leaves(x, path=""):
    """(path, number) for every numeric leaf of a JSON value; strings are compared as well (as themselves)."""
    if isinstance(x, dict):
        for k, v in x.items():
            if k not in SKIP:
                yield from leaves(v, f"{path}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from leaves(v, f"{path}[{i}]")
    elif isinstance(x, bool) or x is None or isinstance(x, str):
        yield path, x
    elif isinstance(x, int | float):
        yield path, float(x)


def compare(a: dict, b: dict) -> dict:
    la, lb = dict(leaves(a)), dict(leaves(b))
    diffs, worst = [], 0.0
    for k in sorted(set(la) | set(lb)):
        x, y = la.get(k, "<missing>"), lb.get(k, "<missing>")
        if isinstance(x, float) and isinstance(y, float):
            if math.isnan(x) and math.isnan(y):
                continue
            d = abs(x - y)
            if d > 0:
                worst = max(worst, d)
                diffs.append((k, x, y))
        elif x != y:
            diffs.append((k, x, y))
            worst = math.inf
    claims = [c["id"] for c in a.get("claims", [])]
    changed = sorted({claims[int(k[len(".claims[") :].split("]")[0])] for k, _, _ in diffs if k.startswith(".claims[")})
    return {"n": len(la), "differ": len(diffs), "max_abs": worst, "claims": len(claims), "claims_differ": changed,
            "examples": diffs[:5]}  # fmt: skip


def run(tree: Path, name: str, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    cache = tempfile.mkdtemp(prefix="prefkit-cache-")
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "PREFKIT_CACHE": cache,
        "HF_HUB_OFFLINE": "1",
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    env.pop("PREFKIT_THREADS", None)
    cmd = [sys.executable, "-m", "papermill", "-k", "python3", "--cwd", str(tree / "notebooks"),
           str(tree / "notebooks" / f"{name}.ipynb"), str(out / f"{name}.ipynb"),
           "-p", "smoke", "True", "-p", "out_dir", str(out)]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return json.loads((out / "result.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", help="the earlier commit")
    ap.add_argument("notebooks", nargs="*")
    ap.add_argument("--out")
    a = ap.parse_args()
    names = a.notebooks or sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    work = Path(tempfile.mkdtemp(prefix="same-numbers-"))
    base = work / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), a.base], check=True)
    try:
        jobs = [(tree, n, work / side / n) for n in names for side, tree in (("base", base), ("new", ROOT))]
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda j: run(*j), jobs))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    lines = [f"`bench/same_numbers.py {a.base}` (working tree at {head.stdout.strip()}), smoke mode, {os.cpu_count()} cores",
             "", "| notebook | numbers compared | differ | max abs difference | claims with a different value |",
             "|---|---|---|---|---|"]  # fmt: skip
    for i, name in enumerate(names):
        c = compare(results[2 * i], results[2 * i + 1])
        lines.append(
            f"| {name} | {c['n']} | {c['differ']} | {c['max_abs']:.3g} | {', '.join(c['claims_differ']) or '-'} |"
        )
        for ex in c["examples"]:
            print(name, ex)
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
