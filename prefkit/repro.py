"""Seeding, claims, atomic result records with their provenance, and the claims ledger.

A reproduction records *claims* (``prefkit.claims``: headline and secondary comparisons with an estimate, a 95%
interval and a minimum effect fixed before the run, and the gates they rest on). ``write_result`` writes
``reproductions/<method>/result.json`` atomically (temporary file, then rename), so an interrupted run leaves the
previous result intact, with what produced it (commit, clean or dirty tree, sha256 of the notebook and of prefkit,
versions, device, seeds, wall time); ``write_ledger`` regenerates ``reproductions/README.md`` from every result.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prefkit.claims import (
    CLAIM_STATUSES,
    GATE_STATUSES,
    NOT_ASSERTED,
    OLD_RULE,
    Claim,
    compare,
    fmt_interval,
    gate,
    mean_spread,
    old_rule_status,
    per_seed,
    resolve,
)

__all__ = [
    "Claim",
    "compare",
    "gate",
    "per_seed",
    "make_claim",
    "mean_spread",
    "claims_table",
    "write_result",
    "write_ledger",
]

STATUSES = (*CLAIM_STATUSES, *GATE_STATUSES, NOT_ASSERTED)
_T0 = time.time()  # when prefkit.repro was first imported: a notebook imports it in its first cells


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


def claims_table(claims: Sequence[Claim]):
    """The "paper vs ours" table of a notebook: one row per claim (a pandas DataFrame), gates resolved."""
    import pandas as pd

    resolve(claims)
    rows = []
    for c in claims:
        d = c.to_dict()
        rows.append({
            "id": c.id, "kind": c.kind, "statement": c.statement, "paper": c.paper, "metric": c.metric,
            "ours": _ours(d), "test": c.test, "status": c.status,
        })  # fmt: skip
    return pd.DataFrame(rows)


def make_claim(
    id: str,
    statement: str,
    metric: str,
    values: Sequence[float],
    rule: Callable[[float], bool],
    test: str,
    **kw,
) -> Claim:
    """The old per-seed rule: ``rule`` applied to each seed's value, recorded as ``"old rule: k/n seeds"``.

    A sign that holds on every seed is not evidence (with no effect at all, 3 seeds pass 1 time in 8), so this is
    kept only for notebooks not yet restated with ``compare``, ``per_seed`` and ``gate``; the ledger lists such
    claims apart."""
    vals = [float(v) for v in values]
    passed = [bool(rule(v)) for v in vals]
    return Claim(
        id, statement, metric, OLD_RULE, vals, test=test, per_seed_pass=passed, own_status=old_rule_status(passed),
        **kw,
    )  # fmt: skip


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


_UMASK = os.umask(0o022)  # read the process's umask (setting it is the only way) and put it back
os.umask(_UMASK)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file in the same folder and an atomic rename; the file gets the
    usual permissions (0666 less the umask), not the temporary file's owner-only ones."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
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


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that a killed process left in ``folder`` (``.name.*.tmp`` from
    :func:`atomic_write_text`, ``.name.tmp.png`` from :func:`prefkit.plot.save`) older than this process; returns
    them."""
    folder, removed = Path(folder), []
    for f in [*folder.glob(".*.tmp"), *folder.glob(".*.tmp.*")] if folder.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            if f.is_file() and f.stat().st_mtime < _T0:
                f.unlink()
                removed.append(f)
    return removed


class DirtyTreeError(RuntimeError):
    """A full-profile result from a tree with uncommitted changes, without an explicit override."""


def _allow_dirty_env() -> bool:
    return os.environ.get("PREFKIT_ALLOW_DIRTY", "").strip().lower() in ("1", "true", "yes")


def provenance(notebook: str | None = None, seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """sha256 of the notebook's cells (``<notebook>.ipynb`` in the working folder, where papermill and Jupyter run
    it) and of the prefkit package, the prefkit modules imported so far (what the result can depend on: the run key
    of ``make reproduce`` covers only these), the seeds, and the seconds since prefkit.repro was imported."""
    from prefkit.runkey import loaded_modules, notebook_sha256, prefkit_sha256

    nb = Path(f"{notebook}.ipynb") if notebook else None
    return {
        "notebook_sha256": notebook_sha256(nb) if nb is not None and nb.exists() else None,
        "prefkit_sha256": prefkit_sha256(),
        "prefkit_modules": loaded_modules(),
        "seeds": None if seeds is None else [int(x) for x in seeds],
        "wall_s": round(time.time() - _T0, 1),
    }


def write_result(
    out_dir: str | os.PathLike,
    method: str,
    paper: dict[str, Any],
    claims: Sequence[Claim],
    parameters: dict[str, Any],
    figures: Sequence[str] = (),
    smoke: bool = False,
    extra: dict[str, Any] | None = None,
    seeds: Sequence[int] | None = None,
    allow_dirty: bool = False,
) -> Path:
    """Write ``<out_dir>/result.json`` atomically and return its path.

    ``paper``: ``{"arxiv": ..., "title": ..., "claim": ..., "number": ...}``. Figures are file names relative to
    ``out_dir`` and must exist (a result never points at a figure that was not written). Gates are resolved first
    (``prefkit.claims.resolve``). A full-profile result (``smoke=False``) from a git tree with uncommitted changes is
    refused with ``DirtyTreeError`` unless ``allow_dirty`` (or ``PREFKIT_ALLOW_DIRTY=1``); it is then written with
    ``environment.dirty_override`` set and the ledger marks it.
    """
    out_dir = Path(out_dir)
    remove_stale_temporaries(out_dir)
    missing = [f for f in figures if not (out_dir / f).exists()]
    if missing:
        raise FileNotFoundError(f"figures not found in {out_dir}: {missing}")
    resolve(claims)
    env = environment()
    override = allow_dirty or _allow_dirty_env()
    if env["dirty"] and not smoke:
        if not override:
            raise DirtyTreeError(
                f"refusing to write a full-profile result to {out_dir / 'result.json'} from a tree with uncommitted "
                "changes (git status lists them): commit first, or pass allow_dirty=True / set PREFKIT_ALLOW_DIRTY=1 "
                "to write it marked as dirty"
            )
        env["dirty_override"] = True
    env.update(provenance((extra or {}).get("notebook"), seeds))
    record = {
        "method": method,
        "paper": paper,
        "claims": [c.to_dict() for c in claims],
        "parameters": parameters,
        "environment": env,
        "smoke": bool(smoke),
        "figures": list(figures),
        **(extra or {}),
    }
    return atomic_write_text(out_dir / "result.json", json.dumps(_jsonable(record), indent=2) + "\n")


def load_result(path: str | os.PathLike) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def _is_old(claim: dict[str, Any]) -> bool:
    """A claim judged by the per-seed rule: written by ``make_claim`` or before claims had a kind."""
    return claim.get("kind", OLD_RULE) == OLD_RULE


def claim_status(claim: dict[str, Any]) -> str:
    """The status of a recorded claim. Old-rule claims are re-read from their per-seed passes (their stored word,
    from before, may be "partial"), so every result renders under today's vocabulary."""
    if claim.get("status") == NOT_ASSERTED or claim.get("asserted") is False:
        return NOT_ASSERTED
    if _is_old(claim):
        return old_rule_status(claim.get("per_seed_pass", []))
    return claim["status"]


def _spread(claim: dict[str, Any]) -> str:
    """``mean ± std (n=k)`` of a claim's per-seed values; a seed whose value was NaN or infinite (stored as null)
    is named instead of hidden, since its spread is undefined."""
    values, spread = claim.get("values", []), claim.get("spread", {})
    bad = [i + 1 for i, v in enumerate(values) if v is None]
    if bad:
        seeds = ", ".join(map(str, bad))
        return f"n/a (NaN or inf in seed {seeds} of {len(values)})"
    if not spread:
        return "-"
    return f"{spread['mean']:.3g} ± {spread['std']:.2g} (n={spread['n']})"


def _ours(claim: dict[str, Any]) -> str:
    """Estimate [95% interval] of a claim, or per-seed mean ± std for an old-rule claim."""
    if _is_old(claim):
        return _spread(claim)
    return fmt_interval(claim.get("estimate"), claim.get("interval"))


def claim_estimate(claim: dict[str, Any]) -> str:
    """A recorded claim's result as the ledger writes it: estimate [95% interval], or per-seed mean ± std for a claim
    still under the old per-seed rule."""
    return _ours(claim)


def result_scale(result: dict[str, Any]) -> str:
    """The scale a result's numbers are at, for the ledger: "smoke" for a smoke run, else the notebook's own words
    (13_diffusion: a 2-D toy) or "toy (full)"."""
    return "smoke" if result.get("smoke") else result.get("scale", "toy (full)")


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(x).replace("|", "\\|").replace("\n", " ") for x in cells) + " |"


def _results(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every ``<root>/*/result.json`` with its record, in notebook order (results without a notebook name last)."""
    found = [(rj, load_result(rj)) for rj in root.glob("*/result.json")]
    return sorted(found, key=lambda x: (x[1].get("notebook") or "~", x[1]["method"]))


_ORDER = (*CLAIM_STATUSES, *GATE_STATUSES, "all seeds", "some seeds", "no seed", NOT_ASSERTED)


def _count(statuses: Sequence[str]) -> str:
    """``"2 reproduced, 1 inconclusive"``, in the order of ``_ORDER`` (then any other word alphabetically)."""
    counts: dict[str, int] = {}
    for st in statuses:
        counts[st] = counts.get(st, 0) + 1
    order = sorted(counts, key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER), k))
    return ", ".join(f"{counts[k]} {k}" for k in order) or "-"


def status_counts(result: dict[str, Any], kind: str | None = None) -> str:
    """How many claims of a result have each status, e.g. ``"1 inconclusive, 2 reproduced"``: of one ``kind``
    (``"headline"``, ``"secondary"``, ``"gate"`` or ``"old rule"``), or of every claim."""
    claims = [c for c in result["claims"] if kind is None or c.get("kind", OLD_RULE) == kind]
    if kind == OLD_RULE:  # "old rule: 2/3 seeds" per claim is too fine to count: all seeds, some, none
        words = []
        for c in claims:
            st = claim_status(c)
            if st != NOT_ASSERTED:
                p = c.get("per_seed_pass", [])
                st = "all seeds" if p and all(p) else ("some seeds" if any(p) else "no seed")
            words.append(st)
        return _count(words)
    return _count([claim_status(c) for c in claims])


def _tree(result: dict[str, Any]) -> str:
    env = result.get("environment", {})
    dirty = env.get("dirty")
    if dirty is None:
        return "not recorded"
    return ("dirty (override)" if env.get("dirty_override") else "dirty") if dirty else "clean"


def _executed_link(rj: Path, r: dict[str, Any], prefix: str) -> str:
    """`` ([executed](<prefix>/<notebook>.ipynb))`` when ``make reproduce`` saved the executed notebook."""
    nb = r.get("notebook")
    return f" ([executed]({prefix}/{nb}.ipynb))" if nb and (rj.parent / f"{nb}.ipynb").exists() else ""


def _summary_row(rj: Path, r: dict[str, Any]) -> list[str]:
    env, run = r.get("environment", {}), r.get("run", {})
    wall = run.get("wall_s")
    commit = env.get("commit") or env.get("prefkit_commit") or "unknown"
    return [
        f"[{r.get('notebook') or r['method']}]({rj.parent.name}/){_executed_link(rj, r, rj.parent.name)}",
        status_counts(r, "headline"),
        status_counts(r, "secondary"),
        status_counts(r, "gate"),
        status_counts(r, OLD_RULE),
        "not recorded" if wall is None else f"{wall / 60:.1f}",
        run.get("threads", "not recorded"),
        run.get("jobs", "not recorded"),
        env.get("device", "not recorded"),
        commit[:7] if commit != "unknown" else commit,
        _tree(r),
    ]


def _rule(claim: dict[str, Any]) -> str:
    test = claim.get("test", "")
    return test if not _is_old(claim) or "per seed" in test else f"{test} (per seed)"


def write_ledger(root: str | os.PathLike = "reproductions") -> Path:
    """Regenerate ``<root>/README.md`` from every ``<root>/*/result.json``: a summary row per notebook (headline and
    secondary claims by status, gates, claims still under the old per-seed rule, wall time, threads, commit, clean
    or dirty tree), then the claims, then the gates, then the old-rule claims."""
    root = Path(root)
    results = _results(root)
    lines = [
        "# Claims ledger",
        "",
        "Generated by `make reproduce` (`prefkit.repro.write_ledger`); do not edit by hand.",
        "Paper numbers come from the paper's scale; ours come from the offline toy world (tiny models, exact oracle),",
        "so the comparison is of directions and orderings, not absolute values.",
        "",
        "How a claim is judged (`prefkit.claims`): the difference between the arms, oriented so that positive is the",
        "paper's direction, is estimated with a 95% interval (hierarchical bootstrap over seeds, then paired units;",
        "a t-interval over seeds where there are no units). First rule that applies: **not testable** (a gate it",
        "rests on failed), **reversed** (interval below 0), **reproduced** (interval above 0 and estimate >= delta,",
        "the minimum effect fixed before the run), **not reproduced** (upper end below delta), **inconclusive**",
        "(anything else). A non-inferiority claim is reproduced when the interval's low end is above -margin.",
        "Gates are mechanism checks: **passed** when their whole interval is beyond their threshold.",
        "",
        'Claims under the **old rule** were judged by a sign that held on every seed or not ("old rule: 2/3',
        'seeds"). That is not evidence: with no effect at all, 3 seeds pass together 1 time in 8. They are listed',
        "apart until their notebook is restated.",
        "",
        "## Notebooks",
        "",
        "Wall time is the notebook's run under `make reproduce` as recorded in its result.json (`run.wall_s`), with",
        "`threads` torch threads and `jobs` notebooks running side by side on the device shown; results from before",
        "it was recorded say so. `dirty`: the result was produced from a tree with uncommitted changes.",
        "",
        "| notebook | headline | secondary | gates | old rule | wall time (min) | threads | jobs | device | commit"
        " | tree |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row(_summary_row(rj, r)) for rj, r in results),
    ]
    sections = [
        ("Claims", "headline and secondary", lambda c: not _is_old(c) and c.get("kind") != "gate",
         ["method", "claim", "kind", "statement", "paper", "ours: estimate [95% interval]", "delta / margin",
          "rule", "status", "scale"]),
        ("Gates", "mechanism checks", lambda c: c.get("kind") == "gate",
         ["method", "gate", "statement", "ours: estimate [95% interval]", "rule", "status", "scale"]),
        ("Claims under the old rule", "per-seed sign rule, not evidence", _is_old,
         ["method", "claim", "statement", "paper", "ours: mean ± std over seeds", "rule", "status", "scale"]),
    ]  # fmt: skip
    for title, _what, keep, cols in sections:
        rows = []
        for rj, r in sorted(results, key=lambda x: x[0]):
            scale = result_scale(r)
            tree = _tree(r)
            if tree.startswith("dirty"):
                scale += f", {tree} tree"
            for c in r["claims"]:
                if not keep(c):
                    continue
                m = f"[{r['method']}]({rj.parent.name}/)"
                paper = c.get("paper") or r["paper"].get("number", "")
                st = f"**{claim_status(c)}**"
                if c.get("blocked_by"):
                    st += f" (gate {', '.join(c['blocked_by'])} did not pass)"
                if title == "Claims":
                    size = f"delta {c['delta']:g}" if c.get("delta") is not None else f"margin {c.get('margin'):g}"
                    cells = [m, c["id"], c["kind"], c["statement"], paper, f"{c['metric']}: {_ours(c)}", size,
                             c.get("test", ""), st, scale]  # fmt: skip
                elif title == "Gates":
                    cells = [m, c["id"], c["statement"], f"{c['metric']}: {_ours(c)}", c.get("test", ""), st, scale]
                else:
                    cells = [m, c["id"], c["statement"], paper, f"{c['metric']}: {_ours(c)}", _rule(c), st, scale]
                rows.append(_row(cells))
        if rows:
            lines += ["", f"## {title}", "", _row(cols), "|---" * len(cols) + "|", *rows]
    return atomic_write_text(root / "README.md", "\n".join(lines) + "\n")


def method_status(result: dict[str, Any]) -> str:
    """One line for a method in the README: its headline claims by status, or that it is still judged by the old
    per-seed rule."""
    claims = [c for c in result["claims"] if claim_status(c) != NOT_ASSERTED]
    if not claims:
        return NOT_ASSERTED
    if any(_is_old(c) for c in claims):
        return "old rule (not yet restated)"
    head = [claim_status(c) for c in claims if c.get("kind") == "headline"]
    return f"{sum(s == 'reproduced' for s in head)} of {len(head)} headline reproduced" if head else "no headline claim"


def _claim_line(c: dict[str, Any]) -> str:
    """One claim with its numbers, as a markdown list item (numbers from the record, never typed)."""
    st = claim_status(c)
    if _is_old(c):
        return f"- **{c['id']}** ({st}): {c['statement']}; {c['metric']} {_spread(c)}, rule {_rule(c)}."
    line = f"- **{c['id']}** ({st}): {c['statement']}; {c['metric']} {_ours(c)}"
    if c.get("kind") == "gate":
        return line + f", {c.get('test', '')}."
    size = f"delta {c['delta']:g}" if c.get("delta") is not None else f"non-inferiority margin {c.get('margin'):g}"
    lo, hi = (c.get("interval") or [None, None])[:2]
    half = "" if lo is None or hi is None else f", interval half-width {(hi - lo) / 2:.3g}"
    gates = f"; rests on gate(s) {', '.join(c['blocked_by'])}, which did not pass" if c.get("blocked_by") else ""
    return line + f" against {size}{half}{gates}."


def what_we_found(result: str | os.PathLike | dict[str, Any], why: dict[str, tuple[str, str]] | None = None) -> str:
    """The "What we found" reading of a result, as markdown: counts by kind and status, then every claim with its
    numbers, each failed or inconclusive one followed by our explanation from ``why``.

    ``why`` maps a claim id to ``(status, text)``: the status the text was written for and the text. A text is shown
    only while the claim still has that status; after a re-run that changed it, the reading says the note is stale
    instead of showing an explanation of a result that no longer exists. Numbers come from the record.
    """
    r = result if isinstance(result, dict) else load_result(result)
    why = why or {}
    unknown = sorted(set(why) - {c["id"] for c in r["claims"]})
    if unknown:
        raise ValueError(f"why names claims that the result does not have: {unknown}")
    lines = ["### What we found", ""]
    if r.get("smoke"):
        lines += [
            "*A smoke run: only the claims meaningful at that size are asserted; the numbers are not results.*",
            "",
        ]
    groups = [("Headline claims", "headline"), ("Secondary claims", "secondary"), ("Gates", "gate"),
              ("Claims under the old per-seed rule (not evidence; to be restated)", OLD_RULE)]  # fmt: skip
    for title, kind in groups:
        claims = [c for c in r["claims"] if c.get("kind", OLD_RULE) == kind]
        if not claims:
            continue
        lines += [f"**{title}**: {status_counts(r, kind)}.", ""]
        for c in claims:
            lines.append(_claim_line(c))
            st = claim_status(c)
            if c["id"] in why:
                written_for, text = why[c["id"]]
                if written_for == st:
                    lines.append(f"  *Why:* {text}")
                else:
                    lines.append(f"  *(Our note on {c['id']} was written for a *{written_for}* result; this run's is "
                                 f"*{st}*, so the note is out of date.)*")  # fmt: skip
            elif kind in ("headline", "secondary") and st not in ("reproduced", NOT_ASSERTED) and not r.get("smoke"):
                lines.append("  *Why:* not yet explained.")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


README_START, README_END = "<!-- notebooks:start -->", "<!-- notebooks:end -->"


def update_readme_table(readme: str | os.PathLike = "README.md", root: str | os.PathLike = "reproductions") -> Path:
    """Rewrite the notebook table between the README's markers from every ``<root>/*/result.json``."""
    readme, root = Path(readme), Path(root)
    rows = ["| notebook | paper | headline | secondary | gates | old rule | status |", "|---|---|---|---|---|---|---|"]
    for rj, r in _results(root):
        nb = r.get("notebook", "")
        link = f"[{nb}](notebooks/{nb}.ipynb)" if nb else r["method"]
        link += _executed_link(rj, r, Path(os.path.relpath(rj.parent, readme.parent)).as_posix())
        paper = f"{r['paper'].get('title', '')} (arXiv:{r['paper'].get('arxiv', '')})"
        scale = " (smoke run)" if r.get("smoke") else ""
        counts = [status_counts(r, k) for k in ("headline", "secondary", "gate", OLD_RULE)]
        rows.append(_row([link, paper, *counts, f"**{method_status(r)}**{scale}"]))
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
