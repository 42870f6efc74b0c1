"""``make reproduce``: run the reproduction notebooks side by side and skip the ones that are up to date.

    python -m prefkit.reproduce                      # every notebook that changed since its recorded run
    python -m prefkit.reproduce 01_dpo 04_delta      # these two (if they changed)
    python -m prefkit.reproduce --force --jobs 2 --threads 1
    python -m prefkit.reproduce --dry-run            # say what would run and why, run nothing

Each notebook runs in its own papermill process (full toy profile: ``-p smoke False``), with ``THREADS`` torch and
OpenMP threads, ``JOBS`` at a time, the longest first (by the wall time of its previous run; unknown ones first, as
they may be the longest). Its log goes to ``runs/<notebook>.log`` and the executed copy to ``runs/<notebook>.ipynb``.
A run writes its figures and result into a staging folder, ``reproductions/.<method>.staging``; when it succeeds, the
executed copy (outputs and figures inline, for readers who do not run anything) joins them as
``<notebook>.ipynb`` and the folder is swapped in for ``reproductions/<method>``. A run that fails or is killed
leaves the previous files as they were, all from one run, and the next run clears what it left.

When papermill succeeds, the scheduler adds a ``run`` record to the notebook's result.json: the *run key* (sha256 of
the notebook's cells, of the prefkit modules the run imported, as ``write_result`` lists them, and of the parameters
passed) with the wall time, threads, jobs and when it ran. Editing a module that a notebook never imported leaves its
result up to date. A notebook whose result carries the same key, and whose figures exist, is up to date and skipped. At the
end, after every job finished (also when some failed), the claims ledger and the README's notebook table are
regenerated from the results on disk.

Cells tagged ``findings`` (the closing "What we found": our reading of a finished result, after ``write_result``)
are not part of the run key: editing that reading does not make a result stale. Instead, for every notebook that is
up to date, ``make reproduce`` re-renders those cells of the executed copy from the notebook's current ones, against
the result on disk (``--findings-only`` does just that and runs nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .keydiff import used_changes
from .repro import atomic_write_text, load_result, update_readme_table, write_ledger
from .runkey import (
    FINDINGS,
    PACKAGE_DIR,
    combine_hashes,
    executed_parts,
    file_hashes,
    joined,
    notebook_sha256,
    parameters_sha256,
    prefkit_sha256,
    tags,
)

# The defaults of `make reproduce`, in one place: notebooks run side by side, and torch / OpenMP threads per notebook.
# Two CPU cores: one single-threaded notebook per core (small models gain little from a second thread, and threads
# that compete for a core slow each other down).
JOBS = 2
THREADS = 1
KEY_PARTS = ("notebook", "prefkit", "parameters")


@dataclass(frozen=True)
class Notebook:
    """One notebook to reproduce: ``notebooks/01_dpo.ipynb`` writes ``reproductions/dpo/``."""

    path: Path  # notebooks/NN_method.ipynb
    out_dir: Path  # reproductions/method

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def result(self) -> Path:
        return self.out_dir / "result.json"

    @property
    def parameters(self) -> dict[str, Any]:
        """The papermill ``-p`` overrides: full toy profile, output relative to the kernel's folder (the notebook's)."""
        return {"smoke": False, "out_dir": os.path.relpath(self.out_dir, self.path.parent)}

    def run_key(self, package: Path, modules: Sequence[str] | None = None) -> dict[str, str]:
        """The notebook's cells, the prefkit ``modules`` its run imported (all of prefkit when unknown: a run
        recorded before modules were listed) and the parameters."""
        return {
            "notebook_sha256": notebook_sha256(self.path),
            "prefkit_sha256": prefkit_sha256(package, modules),
            "parameters_sha256": parameters_sha256(self.parameters),
        }

    @property
    def staging(self) -> Path:
        """Where a run writes its figures, result and executed copy, swapped in for ``out_dir`` when it succeeds."""
        return self.out_dir.parent / f".{self.out_dir.name}.staging"

    @property
    def retired(self) -> Path:
        """Where the previous ``out_dir`` waits, during a swap, to be removed."""
        return self.out_dir.parent / f".{self.out_dir.name}.old"

    @property
    def executed(self) -> Path:
        """The executed copy, with outputs and figures inline, that a reader sees without running anything."""
        return self.out_dir / f"{self.name}.ipynb"

    def previous_run(self) -> dict[str, Any]:
        """The ``run`` record of the notebook's current result.json, ``{}`` if there is none."""
        try:
            return load_result(self.result).get("run") or {}
        except (OSError, ValueError):
            return {}


def find_notebooks(notebooks_dir: Path, reproductions_dir: Path, names: Sequence[str] = ()) -> list[Notebook]:
    """The ``NN_method.ipynb`` notebooks of ``notebooks_dir`` (all, or those named: ``01_dpo``, ``01_dpo.ipynb`` or
    ``notebooks/01_dpo.ipynb``), each writing ``reproductions_dir/<method>``."""
    found = {p.stem: p for p in sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))}
    wanted = [Path(n).name.removesuffix(".ipynb") for n in names] or list(found)
    unknown = [n for n in wanted if n not in found]
    if unknown:
        raise ValueError(f"no such notebook in {notebooks_dir}: {', '.join(unknown)} (there are: {', '.join(found)})")
    return [Notebook(found[n], Path(reproductions_dir) / n.split("_", 1)[1]) for n in dict.fromkeys(wanted)]


def why_run(nb: Notebook, key: dict[str, str], package: Path | None = None) -> str | None:
    """Why ``nb`` must run, or None when its result is up to date (same run key, every figure it lists exists).

    With ``package``, a result whose key differs only in prefkit is looked at more closely
    (:func:`prefkit.keydiff.used_changes`): if no definition the notebook's code can reach changed since the commit
    the result records (only docstrings, comments, or functions it never uses, such as the ledger writer beside
    ``write_result``), the result is up to date."""
    if not nb.result.exists():
        return f"no {nb.result} yet"
    try:
        result = load_result(nb.result)
    except (OSError, ValueError) as e:
        return f"{nb.result} unreadable ({e})"
    run = result.get("run")
    if not run:
        return f"{nb.result} has no run key (not written by `make reproduce`)"
    changed = [part for part in KEY_PARTS if run.get(f"{part}_sha256") != key[f"{part}_sha256"]]
    if changed == ["prefkit"] and package is not None and run.get("prefkit_modules"):
        commit = (result.get("environment") or {}).get("commit") or ""
        code = [
            p["source"] for p in executed_parts(json.loads(nb.path.read_text())["cells"]) if p["cell_type"] == "code"
        ]
        used, _ = used_changes(package, run["prefkit_modules"], commit, code) if commit else (["no commit"], [])
        if used:
            named = [u for u in used if not u.startswith("(")]  # "(no git repository ...)": nothing to name
            detail = f" ({', '.join(named[:4])})" if named else ""
            return f"prefkit changed since {run.get('finished', 'its last run')}{detail}"
        changed = []
    if changed:
        return f"{' and '.join(changed)} changed since {run.get('finished', 'its last run')}"
    if not nb.executed.exists():
        return f"the executed notebook {nb.executed} is missing"
    missing = [f for f in result.get("figures", []) if not (nb.out_dir / f).exists()]
    if missing:
        return f"figures missing from {nb.out_dir}: {', '.join(missing)}"
    return None


def recover(nb: Notebook) -> None:
    """Clear what a killed run left: a staging folder (a run that never finished), and a retired folder (a swap cut
    short; the previous set of files is put back if the new one was not yet in place)."""
    if nb.retired.exists():
        if nb.out_dir.exists():
            shutil.rmtree(nb.retired)
        else:
            nb.retired.replace(nb.out_dir)
    if nb.staging.exists():
        shutil.rmtree(nb.staging)


def swap_in(nb: Notebook) -> None:
    """Put ``nb.staging`` in the place of ``nb.out_dir`` by two renames (a kill between them is undone by
    :func:`recover`), so a reader finds the figures, result and executed copy of one run, never a mix of two."""
    if nb.out_dir.exists():
        nb.out_dir.replace(nb.retired)
    nb.staging.replace(nb.out_dir)
    shutil.rmtree(nb.retired, ignore_errors=True)


def papermill_command(nb: Notebook, executed: Path, out_dir: Path | None = None) -> list[str]:
    """papermill in this Python, the kernel working in the notebook's folder; ``out_dir`` replaces the output folder
    of :attr:`Notebook.parameters` (the run writes to its staging folder)."""
    cmd = [
        sys.executable,
        "-m",
        "papermill",
        "-k",
        "python3",
        "--cwd",
        str(nb.path.parent),
        str(nb.path),
        str(executed),
    ]
    parameters = dict(nb.parameters)
    if out_dir is not None:
        parameters["out_dir"] = os.path.relpath(out_dir, nb.path.parent)
    for k, v in parameters.items():
        cmd += ["-p", k, str(v)]
    return cmd


def thread_env(threads: int) -> dict[str, str]:
    """The environment of a notebook process: ``threads`` torch (``repro.torch_threads``) and OpenMP threads, which
    sleep rather than spin while they wait (a spinning thread slows down the notebook next to it many times)."""
    n = str(threads)
    return {**os.environ, "PREFKIT_THREADS": n, "OMP_NUM_THREADS": n, "OMP_WAIT_POLICY": "PASSIVE"}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _or_inf(x: float | None) -> float:
    return float("inf") if x is None else x


def _execute(nb: Notebook, runs_dir: Path, package: Path, threads: int, jobs: int) -> tuple[str | None, float]:
    """Run papermill on ``nb`` (output to ``runs_dir/<name>.log``) into its staging folder, add the ``run`` record to
    the result and the executed copy next to it, and swap the folder in. Returns (None or what went wrong, wall time
    in seconds); a run that fails or is killed leaves the previous files untouched."""
    key = nb.run_key(package)  # what is executed now, should a file change while other notebooks run
    hashes = file_hashes(package)  # ... of which the modules the run imports are keyed once it has listed them
    recover(nb)
    nb.staging.mkdir(parents=True)
    cmd = papermill_command(nb, runs_dir / f"{nb.name}.ipynb", nb.staging)
    staged = nb.staging / nb.result.name
    started, t0 = _now(), time.perf_counter()
    with open(runs_dir / f"{nb.name}.log", "w") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=thread_env(threads)).returncode
    wall = time.perf_counter() - t0
    if rc != 0:
        return f"papermill exited with status {rc}", wall
    if not staged.exists():
        return f"the notebook ran but did not write {nb.result}", wall
    record = load_result(staged)
    modules = record.get("environment", {}).get("prefkit_modules")
    if modules is not None:
        key.update(prefkit_sha256=combine_hashes(hashes, modules), prefkit_modules=modules)
    record["run"] = {**key, "wall_s": round(wall, 1), "threads": threads, "jobs": jobs}
    record["run"].update(started=started, finished=_now())
    atomic_write_text(staged, json.dumps(record, indent=2) + "\n")
    # the reader's copy names the output folder the files end up in, not the staging folder they were written to
    final, staging = (os.path.relpath(d, nb.path.parent) for d in (nb.out_dir, nb.staging))
    executed = reader_copy((runs_dir / f"{nb.name}.ipynb").read_text())
    atomic_write_text(nb.staging / nb.executed.name, executed.replace(staging, final))
    swap_in(nb)
    return None, wall


_PROGRESS = re.compile(r"\r|\d+%\||\d+/\d+ \[\d")  # a tqdm bar: carriage returns, "42%|", "3/10 [00:01"


def reader_copy(executed: str) -> str:
    """The executed notebook as a reader gets it next to the results: the same cells and outputs, without the
    progress bars written to stderr (thousands of outputs, most of a notebook's size; the full copy stays in runs/)."""
    nb = json.loads(executed)
    for cell in nb.get("cells", []):
        if "outputs" in cell:
            cell["outputs"] = [
                o
                for o in cell["outputs"]
                if not (
                    o.get("output_type") == "stream"
                    and o.get("name") == "stderr"
                    and _PROGRESS.search(joined(o.get("text", "")))
                )
            ]
    return _notebook_json(nb)


def _notebook_json(nb: dict[str, Any]) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


class _Display:
    """``display`` for a findings cell run outside a kernel: collects each object as a notebook output."""

    def __init__(self) -> None:
        self.outputs: list[dict[str, Any]] = []

    def __call__(self, *objs: Any) -> None:
        for obj in objs:
            data = {"text/plain": repr(obj)}
            for mime, method in (("text/markdown", "_repr_markdown_"), ("text/html", "_repr_html_")):
                rendered = getattr(obj, method, None)
                if callable(rendered) and (text := rendered()) is not None:
                    data[mime] = text
            self.outputs.append({"output_type": "display_data", "data": data, "metadata": {}})


def refresh_findings(nb: Notebook) -> bool:
    """Re-render the ``findings`` cells of ``nb``'s executed copy from the notebook's current ones, run against the
    result on disk (with ``path``, ``profile``, ``smoke`` and ``display`` as the run had them). Returns True when the
    copy changed. Refuses when the rest of the copy is not what the notebook executes now: that needs a re-run."""
    if not nb.executed.exists() or not nb.result.exists():
        return False
    source, executed = json.loads(nb.path.read_text()), json.loads(nb.executed.read_text())
    new = [c for c in source["cells"] if FINDINGS in tags(c)]
    at = [i for i, c in enumerate(executed["cells"]) if FINDINGS in tags(c)]
    if [joined(c["source"]) for c in new] == [joined(executed["cells"][i]["source"]) for i in at]:
        return False
    if executed_parts(source["cells"]) != executed_parts(executed["cells"]):
        raise ValueError(f"{nb.executed} was not executed from the current {nb.path}: re-run it instead")
    result = load_result(nb.result)
    show = _Display()
    scope = {"path": nb.result, "profile": result["parameters"].get("profile", "toy"), "smoke": result["smoke"],
             "display": show}  # fmt: skip
    cells = []
    for c in new:
        cell = {**c, "metadata": {**c.get("metadata", {})}}
        if c["cell_type"] == "code":
            show.outputs = []
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(joined(c["source"]), f"{nb.name}:findings", "exec"), scope)
            printed = [{"output_type": "stream", "name": "stdout", "text": out.getvalue()}] if out.getvalue() else []
            cell.update(outputs=printed + show.outputs, execution_count=None)
        cells.append(cell)
    first = at[0] if at else len(executed["cells"])
    kept = [c for c in executed["cells"] if FINDINGS not in tags(c)]
    executed["cells"] = kept[:first] + cells + kept[first:]
    atomic_write_text(nb.executed, _notebook_json(executed))
    return True


def run_notebook(
    nb: Notebook, reason: str, runs_dir: Path, package: Path, threads: int, jobs: int, say: Callable[[str], None]
) -> str | None:
    """Run one notebook, saying when it starts and how it ended. Returns None on success, else what went wrong."""
    log = runs_dir / f"{nb.name}.log"
    say(f"start {nb.name}: {reason}; {threads} thread(s), log {log}")
    try:
        error, wall = _execute(nb, runs_dir, package, threads, jobs)
    except Exception as e:  # a job's own failure must not stop the others or the ledger
        error, wall = f"{type(e).__name__}: {e}", float("nan")
    if error is None:
        say(f"done  {nb.name} in {wall / 60:.1f} min -> {nb.result}")
    else:
        say(f"FAIL  {nb.name} after {wall / 60:.1f} min: {error}; see {log}")
    return error


def reproduce(
    names: Sequence[str] = (),
    *,
    notebooks_dir: str | os.PathLike = "notebooks",
    reproductions_dir: str | os.PathLike = "reproductions",
    runs_dir: str | os.PathLike = "runs",
    readme: str | os.PathLike | None = "README.md",
    package: str | os.PathLike = PACKAGE_DIR,
    jobs: int = JOBS,
    threads: int = THREADS,
    force: bool = False,
    dry_run: bool = False,
    findings_only: bool = False,
    say: Callable[[str], None] = print,
) -> int:
    """Run the notebooks that are not up to date (all with ``force``), ``jobs`` at a time, then regenerate the ledger
    (and the notebook table of ``readme``). Returns the exit status: 0, or 1 when a notebook failed.
    ``findings_only``: run nothing, only re-render the findings cells of the up-to-date notebooks."""
    if jobs < 1 or threads < 1:
        raise ValueError(f"jobs and threads must be positive, got jobs={jobs}, threads={threads}")
    package, runs_dir = Path(package), Path(runs_dir)
    lock = threading.Lock()

    def say_locked(line: str) -> None:
        with lock:
            say(line)

    todo: list[tuple[Notebook, str]] = []
    for nb in find_notebooks(Path(notebooks_dir), Path(reproductions_dir), names):
        key = nb.run_key(package, nb.previous_run().get("prefkit_modules"))
        reason = "--force" if force and not findings_only else why_run(nb, key, package)
        if findings_only:
            if reason is not None:
                say(f"skip  {nb.name}: its result is not up to date ({reason}); run it to render its findings")
            elif refresh_findings(nb):
                say(f"re-rendered the findings cells of {nb.executed}")
            else:
                say(f"skip  {nb.name}: its findings cells are current")
            continue
        if reason is None:
            finished = nb.previous_run().get("finished", "?")
            say(f"skip  {nb.name}: up to date: notebook, prefkit and parameters unchanged since {finished}")
            if not dry_run and refresh_findings(nb):
                say(f"      {nb.name}: re-rendered its findings cells in {nb.executed}")
        else:
            todo.append((nb, reason))
    if findings_only:
        return 0
    # Longest first, so the last job to finish is a short one; a notebook without a recorded time may be the longest.
    todo.sort(key=lambda t: -_or_inf(t[0].previous_run().get("wall_s")))
    if dry_run:
        for nb, reason in todo:
            say(f"would run {nb.name}: {reason}")
        say(f"dry run: {len(todo)} to run; nothing executed, ledger not written")
        return 0
    if not todo:
        say("nothing to run: every notebook is up to date")
    else:
        runs_dir.mkdir(parents=True, exist_ok=True)
        say(f"running {len(todo)} notebook(s), {jobs} at a time, {threads} thread(s) each")
    t0 = time.perf_counter()
    side_by_side = min(jobs, len(todo))  # recorded with each result: how many notebooks shared the machine
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # starts the jobs in submission order
        futures = [
            pool.submit(run_notebook, nb, reason, runs_dir, package, threads, side_by_side, say_locked)
            for nb, reason in todo
        ]
    failed = [nb for (nb, _), f in zip(todo, futures) if f.result() is not None]
    say(f"wrote {write_ledger(reproductions_dir)}")
    if readme is not None:
        say(f"updated {update_readme_table(readme, reproductions_dir)}")
    say(f"{len(todo) - len(failed)} ran, {len(failed)} failed in {(time.perf_counter() - t0) / 60:.1f} min")
    if failed:
        logs = ", ".join(f"{nb.name} ({runs_dir / (nb.name + '.log')})" for nb in failed)
        say(f"failed: {logs}; a failed notebook gets no run key, so the next `make reproduce` runs it again")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prefkit.reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", metavar="NB", help="notebooks to consider (default: all), e.g. 01_dpo")
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"notebooks side by side (default {JOBS})")
    parser.add_argument("--threads", type=int, default=THREADS, help=f"threads per notebook (default {THREADS})")
    parser.add_argument("--force", action="store_true", help="run even the notebooks that are up to date")
    parser.add_argument("--dry-run", action="store_true", help="say what would run and why; run nothing")
    parser.add_argument(
        "--findings-only", action="store_true", help="run nothing; re-render the findings cells of up-to-date notebooks"
    )
    args = parser.parse_args(argv)
    try:
        return reproduce(
            args.notebooks,
            jobs=args.jobs,
            threads=args.threads,
            force=args.force,
            dry_run=args.dry_run,
            findings_only=args.findings_only,
        )
    except ValueError as e:
        parser.error(str(e))


if __name__ == "__main__":
    sys.exit(main())
