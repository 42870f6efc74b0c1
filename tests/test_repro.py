"""Seeding, claims and their status, atomic result records and the claims ledger."""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from prefkit import repro
from prefkit.repro import (
    Claim,
    environment,
    git_state,
    load_result,
    make_claim,
    mean_spread,
    method_status,
    seed_everything,
    update_readme_table,
    write_ledger,
    write_result,
)
from prefkit.reproduce import Notebook, find_notebooks, refresh_findings, reproduce
from prefkit.runkey import notebook_sha256, parameters_sha256, prefkit_sha256

ROOT = Path(__file__).resolve().parents[1]

PAPER = {"arxiv": "2305.18290", "title": "DPO", "claim": "DPO beats PPO", "number": "61% win rate"}


def _claim(id: str = "c1", values=(0.6, 0.7, 0.4), threshold: float = 0.5, **kw) -> Claim:
    return make_claim(
        id,
        "A beats B on win rate",
        "win_rate",
        values,
        lambda v: v > threshold,
        f"win rate > {threshold} per seed",
        **kw,
    )


def _write(out_dir, claims=None, **kw):
    return write_result(
        out_dir, "dpo", PAPER, claims if claims is not None else [_claim()], {"beta": 0.1, "seed": 0}, **kw
    )


@pytest.fixture(autouse=True)
def clean_tree(monkeypatch, request):
    """Full-profile results written here come from a clean tree (this checkout may have uncommitted changes, and a
    dirty one is refused); tests of the git state itself see the real one."""
    if "git" not in request.node.name and "environment" not in request.node.name:
        monkeypatch.setattr(repro, "git_state", lambda: {"commit": "c" * 40, "dirty": False})
    monkeypatch.delenv("PREFKIT_ALLOW_DIRTY", raising=False)


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "result.json")


@pytest.mark.parametrize(
    "values, asserted, status",
    [
        ([0.6, 0.7, 0.8], True, "old rule: 3/3 seeds"),
        ([0.6, 0.4, 0.8], True, "old rule: 2/3 seeds"),
        ([0.1, 0.4, 0.2], True, "old rule: 0/3 seeds"),
        ([0.6, 0.7, 0.8], False, "not asserted"),
        ([0.1, 0.2], False, "not asserted"),
    ],
)
def test_claim_status(values, asserted, status):
    c = _claim(values=values, asserted=asserted)
    assert c.per_seed_pass == [v > 0.5 for v in values]
    assert c.status == status
    assert c.to_dict()["status"] == status


def test_claim_without_values_is_not_reproduced():
    """No seeds, no evidence: an empty claim must not count as reproduced."""
    c = _claim(values=[])
    assert c.status == "old rule: 0/0 seeds"
    assert method_status({"claims": [c.to_dict()]}) == "old rule (not yet restated)"


def test_claim_to_dict_has_spread_and_fields():
    d = _claim(values=[1, 2, 3], threshold=1.5, paper="61%").to_dict()
    assert d["values"] == [1.0, 2.0, 3.0] and all(type(v) is float for v in d["values"])
    assert d["per_seed_pass"] == [False, True, True]
    assert d["spread"] == mean_spread([1, 2, 3])
    assert d["status"] == "old rule: 2/3 seeds" and d["kind"] == "old rule"
    assert d["paper"] == "61%" and d["test"] == "win rate > 1.5 per seed"


def test_mean_spread():
    s = mean_spread([1.0, 2.0, 3.0, 4.0])
    assert s["mean"] == 2.5
    assert s["std"] == pytest.approx(math.sqrt(5 / 3))  # sample std (ddof = 1)
    assert (s["min"], s["max"], s["n"]) == (1.0, 4.0, 4)
    one = mean_spread([0.3])
    assert one == {"mean": 0.3, "std": 0.0, "min": 0.3, "max": 0.3, "n": 1}


def test_method_status():
    def result(*claims):
        return {"claims": [{"kind": k, "status": s} for k, s in claims]}

    h, s, g = "headline", "secondary", "gate"
    assert method_status(result((h, "reproduced"), (h, "reproduced"), (h, "not asserted"))) == (
        "2 of 2 headline reproduced"
    )
    assert method_status(result((h, "reproduced"), (h, "inconclusive"), (s, "reproduced"), (g, "passed"))) == (
        "1 of 2 headline reproduced"
    )
    assert method_status(result((h, "not testable"), (g, "failed"))) == "0 of 1 headline reproduced"
    assert method_status(result((s, "reproduced"))) == "no headline claim"
    assert method_status(result((h, "not asserted"))) == "not asserted"
    old = {"status": "partial", "per_seed_pass": [True, False]}  # a record from before claims had kinds
    assert method_status({"claims": [old, {"kind": h, "status": "reproduced"}]}) == "old rule (not yet restated)"


def test_write_result_record(tmp_path):
    (tmp_path / "curve.png").write_bytes(b"png")
    path = _write(
        tmp_path,
        claims=[_claim("c1"), _claim("c2", values=[float("nan"), 0.9])],
        figures=["curve.png"],
        smoke=True,
        extra={"loss": np.float32(1.5), "step": np.int64(3), "t": torch.tensor([0.5, float("inf")])},
    )
    assert path == tmp_path / "result.json"
    r = load_result(path)
    assert r["method"] == "dpo" and r["paper"] == PAPER
    assert [c["id"] for c in r["claims"]] == ["c1", "c2"]
    assert r["claims"][1]["values"][0] is None  # NaN is written as null, keeping the file valid JSON
    assert r["parameters"] == {"beta": 0.1, "seed": 0}
    assert r["smoke"] is True and r["figures"] == ["curve.png"]
    assert r["loss"] == 1.5 and r["step"] == 3 and r["t"] == [0.5, None]
    assert {"prefkit_commit", "commit", "dirty", "torch", "device"} <= set(r["environment"])
    assert _leftovers(tmp_path) == ["curve.png"]


def test_write_result_accepts_numpy_arrays(tmp_path):
    """Per-step curves kept as NumPy arrays are recorded as lists, like tensors are."""
    _write(tmp_path, extra={"history": np.array([1.5, np.nan]), "grid": np.arange(3).reshape(1, 3)})
    r = load_result(tmp_path / "result.json")
    assert r["history"] == [1.5, None] and r["grid"] == [[0, 1, 2]]


def test_write_result_refuses_missing_figures(tmp_path):
    (tmp_path / "a.png").write_bytes(b"png")
    with pytest.raises(FileNotFoundError, match="b.png"):
        _write(tmp_path, figures=["a.png", "b.png"])
    assert not (tmp_path / "result.json").exists()


def test_write_result_refuses_duplicate_claim_ids(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        _write(tmp_path, claims=[_claim("c1"), _claim("c2"), _claim("c1")])
    assert not (tmp_path / "result.json").exists()


def test_write_result_failed_serialisation_keeps_previous_result(tmp_path, monkeypatch):
    previous = _write(tmp_path).read_bytes()

    def boom(*a, **k):
        raise RuntimeError("serialisation failed")

    monkeypatch.setattr(json, "dumps", boom)
    with pytest.raises(RuntimeError, match="serialisation failed"):
        _write(tmp_path, claims=[_claim("other")])
    assert (tmp_path / "result.json").read_bytes() == previous
    assert _leftovers(tmp_path) == []


def test_write_result_unserialisable_parameter_keeps_previous_result(tmp_path):
    previous = _write(tmp_path).read_bytes()
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_result(tmp_path, "dpo", PAPER, [_claim()], {"beta": 0.1, "optimizer": object()})
    assert (tmp_path / "result.json").read_bytes() == previous
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_write_result_failure_while_writing_keeps_previous_result(tmp_path, monkeypatch, step):
    """A failure after the temporary file is opened (mid-write or at the rename) leaves no trace."""
    previous = _write(tmp_path).read_bytes()

    def boom(*a, **k):
        raise OSError(f"{step} failed")

    monkeypatch.setattr(os, step, boom)
    with pytest.raises(OSError, match=f"{step} failed"):
        _write(tmp_path, claims=[_claim("other")])
    monkeypatch.undo()
    assert (tmp_path / "result.json").read_bytes() == previous
    assert _leftovers(tmp_path) == []


def test_written_files_get_the_usual_permissions_and_stale_temporaries_go(tmp_path):
    from prefkit.repro import remove_stale_temporaries

    old = os.umask(0o022)
    try:
        path = _write(tmp_path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # not the temporary file's 0600
    stale = [tmp_path / ".result.json.abc123.tmp", tmp_path / ".fig.png.tmp.png"]
    fresh = tmp_path / ".result.json.other.tmp"
    for f in [*stale, fresh]:
        f.write_text("x")
    for f in stale:  # left by a process killed before this one started
        os.utime(f, (0, 0))
    _write(tmp_path)  # write_result clears them; a temporary file of a process running now stays
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted([".result.json.other.tmp", "result.json"])
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_write_ledger_one_row_per_claim(tmp_path):
    _write(tmp_path / "dpo", claims=[_claim("c1"), _claim("c2", values=[0.1, 0.2], paper="paper | number")])
    write_result(tmp_path / "ipo", "ipo", {"number": "n/a"}, [_claim("i1", asserted=False)], {}, smoke=True)
    (tmp_path / "notes").mkdir()  # a folder without result.json is skipped
    path = write_ledger(tmp_path)
    assert path == tmp_path / "README.md"
    lines = _claim_lines(path)
    rows = [ln for ln in lines if ln.startswith("| [")]
    assert len(rows) == 3
    header = next(ln for ln in lines if ln.startswith("| method"))
    n_cols = header.count(" | ") + 1
    for row in rows:
        assert row.replace("\\|", "").count(" | ") + 1 == n_cols, row
    c1, c2, i1 = rows
    assert c1.startswith("| [dpo](dpo/) | c1 |") and "**old rule: 2/3 seeds**" in c1 and "61% win rate" in c1
    assert "toy (full)" in c1
    assert "0.567 ± 0.15 (n=3)" in c1
    assert "**old rule: 0/2 seeds**" in c2 and "paper \\| number" in c2
    assert i1.startswith("| [ipo](ipo/) | i1 |") and "**not asserted**" in i1 and "smoke" in i1
    assert _leftovers(tmp_path) == ["README.md", "dpo", "ipo", "notes"]


def test_write_ledger_names_a_notebooks_own_scale(tmp_path):
    """A result may say what scale its numbers are at (notebook 13: a 2-D diffusion toy); smoke runs stay "smoke"."""
    scale = "2-D diffusion toy: optimisation behaviour, not image quality"
    _result(tmp_path, "diffusion", "13_diffusion", {"d1": True}, scale=scale)
    _result(tmp_path, "dpo", "01_dpo", {"c1": True})
    rows = [ln for ln in _claim_lines(write_ledger(tmp_path)) if ln.startswith("| [")]
    assert rows[0].startswith("| [diffusion]") and rows[0].endswith(f"| {scale} |")
    assert rows[1].startswith("| [dpo]") and rows[1].endswith("| toy (full) |")


def test_write_ledger_is_regenerated_not_appended(tmp_path):
    _write(tmp_path / "dpo")
    first = write_ledger(tmp_path).read_text()
    assert write_ledger(tmp_path).read_text() == first


def _claim_lines(ledger: Path) -> list[str]:
    """The lines of the ledger's claims table (after the per-notebook summary)."""
    return ledger.read_text().split("## Claims", 1)[1].splitlines()


def _summary_rows(ledger: Path) -> dict[str, list[str]]:
    """The ledger's per-notebook summary rows, by method folder, as lists of cells."""
    summary = ledger.read_text().split("## Notebooks", 1)[1].split("## Claims", 1)[0]
    rows = [ln.strip("| ").split(" | ") for ln in summary.splitlines() if ln.startswith("| [")]
    return {re.search(r"\]\((\w+)/\)", r[0]).group(1): r for r in rows}


def test_write_ledger_shows_nan_seeds(tmp_path):
    """A NaN (stored as null) is named in the ledger, not hidden and not a crash."""
    claims = [_claim("c1", values=[0.6, float("nan"), 0.7]), _claim("c2", values=[float("nan")]), _claim("c3")]
    _write(tmp_path / "dpo", claims=claims)
    rows = [ln for ln in _claim_lines(write_ledger(tmp_path)) if ln.startswith("| [")]
    assert "win_rate: n/a (NaN or inf in seed 2 of 3)" in rows[0]
    assert "win_rate: n/a (NaN or inf in seed 1 of 1)" in rows[1]
    assert "win_rate: 0.567 ± 0.15 (n=3)" in rows[2]


def _result(tmp_path, method: str, notebook: str, statuses: dict[str, bool], **extra) -> None:
    """A hand-made result whose claims pass (True) or fail (False) every seed."""
    claims = [_claim(cid, values=[0.9, 0.8] if ok else [0.1, 0.2]) for cid, ok in statuses.items()]
    paper = {"title": method.upper(), "arxiv": "0000.00000"}
    write_result(tmp_path / method, method, paper, claims, {}, extra={"notebook": notebook, **extra})


README = "# project\n\n<!-- notebooks:start -->\nold table\n<!-- notebooks:end -->\n\nafter\n"


def test_readme_table_and_ledger_count_statuses_per_method(tmp_path):
    _result(tmp_path, "mixed", "01_mixed", {"a": True, "b": False, "c": True})
    _result(tmp_path, "good", "02_good", {"a": True, "b": True})
    _result(tmp_path, "bad", "03_bad", {"a": False})
    readme = tmp_path / "README.md"
    readme.write_text(README)
    table = update_readme_table(readme, tmp_path).read_text()
    assert table.startswith("# project\n\n<!-- notebooks:start -->\n| notebook |") and table.endswith("-->\n\nafter\n")
    rows = [ln for ln in table.splitlines() if ln.startswith("| [")]
    assert len(rows) == 3 and "old table" not in table
    assert rows[0].startswith("| [01_mixed](notebooks/01_mixed.ipynb) | MIXED (arXiv:0000.00000) |")
    old = "**old rule (not yet restated)**"
    assert rows[0].endswith(f"| - | - | - | 2 all seeds, 1 no seed | {old} |")
    assert rows[1].endswith(f"| - | - | - | 2 all seeds | {old} |")
    assert rows[2].endswith(f"| - | - | - | 1 no seed | {old} |")
    summary = _summary_rows(write_ledger(tmp_path))
    assert summary["mixed"][:5] == ["[01_mixed](mixed/)", "-", "-", "-", "2 all seeds, 1 no seed"]
    assert summary["good"][4] == "2 all seeds" and summary["bad"][4] == "1 no seed"


def test_ledger_summary_shows_wall_time_threads_commit_and_tree(tmp_path, monkeypatch):
    monkeypatch.setattr(repro, "git_state", lambda: {"commit": "abcdef0123456789" * 2 + "abcdef01", "dirty": True})
    monkeypatch.setenv("PREFKIT_ALLOW_DIRTY", "1")
    run = {"wall_s": 754.0, "threads": 1, "jobs": 2}
    _result(tmp_path, "timed", "01_timed", {"a": True}, run=run)
    monkeypatch.setattr(repro, "git_state", lambda: {"commit": "unknown", "dirty": None})
    _result(tmp_path, "old", "02_old", {"a": True})
    ledger = write_ledger(tmp_path)
    summary = _summary_rows(ledger)
    cpu = f"cpu ({os.cpu_count()} cores)"
    if torch.cuda.is_available():
        cpu = torch.cuda.get_device_name(0)
    assert summary["timed"][5:] == ["12.6", "1", "2", cpu, "abcdef0", "dirty (override)"]
    assert summary["old"][5:] == ["not recorded", "not recorded", "not recorded", cpu, "unknown", "not recorded"]
    rows = [ln for ln in _claim_lines(ledger) if ln.startswith("| [")]
    assert rows[0].startswith("| [old](old/)") and rows[0].endswith("| toy (full) |")
    assert rows[1].startswith("| [timed](timed/)") and rows[1].endswith("| toy (full), dirty (override) tree |")


@pytest.mark.parametrize(
    "status, dirty", [("", False), (" M prefkit/repro.py\n", True), ("?? notes.txt\n", True), (None, None)]
)
def test_git_state_dirty_flag(monkeypatch, status, dirty):
    def fake_git(*args):
        assert args[0] != "status" or ":(top,exclude)runs" in args and ":(top,exclude)reproductions" in args
        return "f" * 40 + "\n" if args[0] == "rev-parse" else status

    monkeypatch.setattr(repro, "_git", fake_git)
    assert git_state() == {"commit": "f" * 40, "dirty": dirty}


def test_environment_records_this_checkout():
    env = environment()
    assert re.fullmatch("[0-9a-f]{40}", env["commit"]) and env["prefkit_commit"] == env["commit"][:7]
    assert isinstance(env["dirty"], bool)


def test_committed_ledger_and_readme_table_are_regenerated_byte_for_byte(tmp_path):
    """reproductions/README.md and README.md's table are what write_ledger / update_readme_table make of the
    committed results: regenerate them (`python -m prefkit.repro ledger reproductions README.md`) after a change."""
    results = sorted((ROOT / "reproductions").glob("*/result.json"))
    assert len(results) >= 10
    for rj in results:  # the results and the executed notebooks saved beside them (the ledger links those)
        (tmp_path / "reproductions" / rj.parent.name).mkdir(parents=True)
        for f in [rj, *rj.parent.glob("*.ipynb")]:
            shutil.copy(f, tmp_path / "reproductions" / rj.parent.name / f.name)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    assert write_ledger(tmp_path / "reproductions").read_bytes() == (ROOT / "reproductions" / "README.md").read_bytes()
    assert (
        update_readme_table(tmp_path / "README.md", tmp_path / "reproductions").read_bytes()
        == (ROOT / "README.md").read_bytes()
    )


def test_notebook_sha256_covers_what_papermill_executes(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}), nbformat.v4.new_code_cell("x")]
    path = tmp_path / "nb.ipynb"

    def sha() -> str:
        nbformat.write(nb, path)
        return notebook_sha256(path)

    first = sha()
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="1")]
    nb.cells[1].execution_count = 3
    nb.metadata["widgets"] = {"state": 1}
    assert sha() == first  # outputs and metadata are not executed
    nb.cells[0].metadata["tags"] = []
    assert sha() != first  # without the tag papermill injects its parameters elsewhere
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.cells[1].source = "x + 1"
    second = sha()
    assert second != first
    # The closing reading of the result is not part of what produces it: editing it does not make the result stale.
    nb.cells.append(nbformat.v4.new_code_cell("why = {}", metadata={"tags": ["findings"]}))
    assert sha() == second
    nb.cells[-1].source = "why = {'C1': ('reversed', 'because')}"
    assert sha() == second
    nb.cells[-1].metadata["tags"] = []
    assert sha() != second


def test_refresh_findings_rerenders_the_reading_against_the_result_on_disk(tmp_path):
    cells = [
        nbformat.v4.new_code_cell("smoke = True", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("## What we found", metadata={"tags": ["findings"]}),
        nbformat.v4.new_code_cell(
            "from IPython.display import Markdown\nimport json\nr = json.load(open(path))\nprint('read', r['method'])"
            "\ndisplay(Markdown(f'v1 {profile} smoke={smoke} claims={len(r[\"claims\"])}'))",
            metadata={"tags": ["findings"]},
        ),
    ]
    source = nbformat.v4.new_notebook(cells=cells)
    (tmp_path / "notebooks").mkdir()
    nb = Notebook(tmp_path / "notebooks" / "01_alpha.ipynb", tmp_path / "reproductions" / "alpha")
    nbformat.write(source, nb.path)
    nb.out_dir.mkdir(parents=True)
    record = {"method": "alpha", "parameters": {"profile": "toy"}, "smoke": False, "claims": [{"id": "C1"}] * 2}
    nb.result.write_text(json.dumps(record))
    executed = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("smoke = False", metadata={"tags": [
        "injected-parameters"]}), *[nbformat.from_dict(json.loads(json.dumps(c))) for c in cells]])  # fmt: skip
    executed.cells[2].outputs = [nbformat.v4.new_output("stream", text="ran\n")]
    nbformat.write(executed, nb.executed)
    assert refresh_findings(nb) is False  # the copy already shows the notebook's reading

    source.cells[3].source = source.cells[3].source.replace("v1", "v2")
    nbformat.write(source, nb.path)
    assert refresh_findings(nb) is True
    out = nbformat.read(nb.executed, as_version=4)
    assert [c.source for c in out.cells] == ["smoke = False"] + [c.source for c in source.cells]
    assert out.cells[2].outputs[0].text == "ran\n"  # the cells that produced the result keep their outputs
    stdout, shown = out.cells[4].outputs
    assert stdout.text == "read alpha\n"
    assert shown.data["text/markdown"] == "v2 toy smoke=False claims=2"  # the run's profile and smoke, not defaults
    assert refresh_findings(nb) is False

    source.cells[1].source = "x = 2"  # the result came from other code: only a re-run can say what it shows now
    source.cells[3].source = source.cells[3].source.replace("v2", "v3")
    nbformat.write(source, nb.path)
    with pytest.raises(ValueError, match="was not executed from the current .*01_alpha.ipynb: re-run it"):
        refresh_findings(nb)


def test_every_notebook_ends_with_its_findings_after_writing_the_result():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        tagged = [i for i, c in enumerate(cells) if "findings" in c.metadata.get("tags", [])]
        writes = [i for i, c in enumerate(cells) if "write_result(" in c.source]
        assert tagged and tagged == list(range(len(cells) - len(tagged), len(cells))), f"{path.name}: findings last"
        assert writes and max(writes) < min(tagged), f"{path.name}: findings cells must only read the written result"
        assert any("what_we_found(path" in cells[i].source for i in tagged), path.name


def test_prefkit_sha256_covers_paths_and_contents(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("A = 1\n")
    (tmp_path / "sub" / "b.py").write_text("B = 2\n")
    (tmp_path / "notes.txt").write_text("not code")
    first = prefkit_sha256(tmp_path)
    (tmp_path / "notes.txt").write_text("other")
    assert prefkit_sha256(tmp_path) == first
    (tmp_path / "sub" / "b.py").write_text("B = 3\n")
    second = prefkit_sha256(tmp_path)
    assert second != first
    (tmp_path / "sub" / "b.py").rename(tmp_path / "sub" / "c.py")
    assert prefkit_sha256(tmp_path) not in (first, second)


def test_prefkit_sha256_of_listed_modules_ignores_the_others(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("A = 1\n")
    (tmp_path / "sub" / "b.py").write_text("B = 2\n")
    first = prefkit_sha256(tmp_path, ["a.py"])
    assert first != prefkit_sha256(tmp_path)
    (tmp_path / "sub" / "b.py").write_text("B = 3\n")
    assert prefkit_sha256(tmp_path, ["a.py"]) == first
    assert prefkit_sha256(tmp_path, ["a.py", "sub/b.py"]) != prefkit_sha256(tmp_path, ["a.py"])
    (tmp_path / "a.py").write_text("A = 2\n")
    second = prefkit_sha256(tmp_path, ["a.py"])
    assert second != first
    (tmp_path / "a.py").unlink()  # a module the run imported and that is gone
    assert prefkit_sha256(tmp_path, ["a.py"]) not in (first, second)


def test_loaded_modules_lists_what_the_process_imported():
    code = (
        "import prefkit.claims\n"
        "from prefkit.runkey import loaded_modules\n"
        "import prefkit.worlds.logistic\n"
        "print(' '.join(loaded_modules()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert {"__init__.py", "claims.py", "runkey.py", "worlds/logistic.py"} <= set(out)
    assert "genret.py" not in out and "mia_dpo.py" not in out and "reproduce.py" not in out


def test_parameters_sha256_is_canonical():
    assert parameters_sha256({"smoke": False, "out_dir": "x"}) == parameters_sha256({"out_dir": "x", "smoke": False})
    assert parameters_sha256({"smoke": False}) != parameters_sha256({"smoke": True})


# A fake reproduction notebook: a parameters cell and one cell that records its thread settings and when it ran,
# runs BODY, and writes a result with one figure through write_result.
FAKE = """import os, time
from pathlib import Path
from prefkit.repro import make_claim, write_result
started = time.time()
BODY
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
(out / "fig.png").write_bytes(FIGURE)
AFTER_FIGURE
claim = make_claim("c1", "fake", "m", [0.6, 0.7], lambda v: v > 0.5, "> 0.5 per seed")
env = {k: os.environ[k] for k in ("PREFKIT_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
write_result(out, METHOD, {"title": "fake", "arxiv": "0"}, [claim], {"smoke": smoke}, ["fig.png"], smoke=smoke,
             extra={"notebook": NAME, "env": env, "interval": [started, time.time()]},
             allow_dirty=True)  # these test the scheduler, which runs from whatever tree the tests run in
"""

# Each notebook says it started, then waits for the other: they can only both finish if they run side by side.
BARRIER = """Path(BARRIER, NAME).touch()
deadline = time.time() + 120
while len(os.listdir(BARRIER)) < 2:
    assert time.time() < deadline, "the other notebook never started"
    time.sleep(0.05)"""


def _layout(tmp_path, body: str = "", names=("01_alpha", "02_beta")) -> dict:
    """A repository in miniature: notebooks/, reproductions/, runs/, README.md and a package to hash."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "pkg").mkdir()
    # a module each fake notebook imports (prefkit.repro) and one it does not
    (tmp_path / "pkg" / "repro.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "unused.py").write_text("Y = 1\n")
    (tmp_path / "README.md").write_text(README)
    for name in names:
        _write_fake(tmp_path / "notebooks" / f"{name}.ipynb", body)
    return {
        "notebooks_dir": tmp_path / "notebooks",
        "reproductions_dir": tmp_path / "reproductions",
        "runs_dir": tmp_path / "runs",
        "readme": tmp_path / "README.md",
        "package": tmp_path / "pkg",
    }


def _write_fake(path: Path, body: str = "", comment: str = "", figure: bytes = b"png", after_figure: str = "") -> None:
    name = path.stem
    source = FAKE.replace("BODY", body).replace("METHOD", repr(name.split("_", 1)[1])).replace("NAME", repr(name))
    source = source.replace("AFTER_FIGURE", after_figure).replace("FIGURE", repr(figure))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell('smoke = True\nout_dir = "."', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(source + comment),
    ]
    nbformat.write(nb, path)


def _run(layout: dict, capsys, **kw) -> tuple[int, str]:
    rc = reproduce(**layout, **kw)
    return rc, capsys.readouterr().out


@pytest.mark.slow
def test_a_run_killed_between_figure_and_result_leaves_the_previous_set(tmp_path, capsys):
    layout = _layout(tmp_path, names=("01_alpha",))
    alpha = tmp_path / "reproductions" / "alpha"
    rc, out = _run(layout, capsys)
    assert rc == 0, out
    before = {f.name: f.read_bytes() for f in alpha.iterdir()}
    assert set(before) == {"01_alpha.ipynb", "fig.png", "result.json"}
    # the new run writes its figure, then its kernel is killed before the result
    _write_fake(tmp_path / "notebooks" / "01_alpha.ipynb", figure=b"new png", after_figure="os.kill(os.getpid(), 9)")
    rc, out = _run(layout, capsys)
    assert rc == 1 and "FAIL  01_alpha" in out
    assert {f.name: f.read_bytes() for f in alpha.iterdir()} == before  # the old figure with the old result
    staging = tmp_path / "reproductions" / ".alpha.staging"
    assert (staging / "fig.png").read_bytes() == b"new png"  # what the killed run wrote, out of the reader's way
    _write_fake(tmp_path / "notebooks" / "01_alpha.ipynb", figure=b"new png")
    rc, out = _run(layout, capsys)
    assert rc == 0, out
    assert not staging.exists() and (alpha / "fig.png").read_bytes() == b"new png"
    r = load_result(alpha / "result.json")
    assert r["run"]["notebook_sha256"] == notebook_sha256(tmp_path / "notebooks" / "01_alpha.ipynb")
    executed = (alpha / "01_alpha.ipynb").read_text()
    assert ".alpha.staging" not in executed and "../reproductions/alpha" in executed  # names where the files are
    assert sorted(f.name for f in (tmp_path / "reproductions").iterdir()) == ["README.md", "alpha"]


def test_a_swap_cut_short_is_undone_or_finished_by_the_next_run(tmp_path):
    from prefkit.reproduce import recover, swap_in

    nb = Notebook(tmp_path / "notebooks" / "01_alpha.ipynb", tmp_path / "reproductions" / "alpha")
    nb.retired.mkdir(parents=True)
    (nb.retired / "result.json").write_text("old")
    nb.staging.mkdir()
    (nb.staging / "result.json").write_text("new, never swapped in")
    recover(nb)  # killed between the two renames: the previous set is put back, the staged one dropped
    assert (nb.out_dir / "result.json").read_text() == "old" and not nb.retired.exists() and not nb.staging.exists()
    nb.staging.mkdir()
    (nb.staging / "result.json").write_text("new")
    swap_in(nb)
    assert (nb.out_dir / "result.json").read_text() == "new" and not nb.retired.exists() and not nb.staging.exists()
    nb.retired.mkdir()  # killed after both renames, before the old set was removed
    recover(nb)
    assert (nb.out_dir / "result.json").read_text() == "new" and not nb.retired.exists()


@pytest.mark.slow
def test_reproduce_runs_then_skips_what_is_up_to_date(tmp_path, capsys):
    layout = _layout(tmp_path)
    repro_dir = tmp_path / "reproductions"
    rc, out = _run(layout, capsys, threads=3)
    assert rc == 0, out
    assert re.search(r"start 01_alpha: no .*result.json yet; 3 thread\(s\), log .*01_alpha.log", out)
    assert "done  01_alpha" in out and "done  02_beta" in out and "2 ran, 0 failed" in out
    for method in ("alpha", "beta"):
        r = load_result(repro_dir / method / "result.json")
        assert r["smoke"] is False  # the scheduler's parameters reached the notebook
        assert r["env"] == {"PREFKIT_THREADS": "3", "OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "PASSIVE"}
        assert set(r["run"]) == {
            "notebook_sha256",
            "prefkit_sha256",
            "parameters_sha256",
            "prefkit_modules",
            "wall_s",
            "threads",
            "jobs",
            "started",
            "finished",
        }
        assert (r["run"]["threads"], r["run"]["jobs"]) == (3, 2) and r["run"]["wall_s"] > 0
    assert (tmp_path / "runs" / "01_alpha.log").read_text().startswith("$ ")
    assert (tmp_path / "runs" / "01_alpha.ipynb").exists()
    ledger, readme = (repro_dir / "README.md").read_bytes(), (tmp_path / "README.md").read_bytes()
    assert b"[01_alpha](notebooks/01_alpha.ipynb)" in readme and b"| 3 | 2 |" in ledger

    # Nothing changed: nothing runs, and the ledger and README come out byte for byte the same.
    rc, out = _run(layout, capsys)
    assert rc == 0
    finished = load_result(repro_dir / "alpha" / "result.json")["run"]["finished"]
    assert f"skip  01_alpha: up to date: notebook, prefkit and parameters unchanged since {finished}" in out
    assert "skip  02_beta: up to date" in out and "start" not in out and "nothing to run" in out
    assert (repro_dir / "README.md").read_bytes() == ledger and (tmp_path / "README.md").read_bytes() == readme

    # A changed notebook runs again, alone.
    _write_fake(tmp_path / "notebooks" / "01_alpha.ipynb", comment="\n# changed")
    rc, out = _run(layout, capsys)
    assert rc == 0
    assert re.search(r"start 01_alpha: notebook changed since \S+;", out)
    assert "skip  02_beta: up to date" in out and "1 ran, 0 failed" in out

    # The plan names what changed: a prefkit module the runs imported (one they did not import changes nothing), the
    # parameters (another output folder), a missing figure, --force.
    assert "repro.py" in r["run"]["prefkit_modules"] and "unused.py" not in r["run"]["prefkit_modules"]
    (tmp_path / "pkg" / "unused.py").write_text("Y = 2\n")
    _, out = _run(layout, capsys, dry_run=True)
    assert "skip  01_alpha: up to date" in out and "skip  02_beta: up to date" in out
    (tmp_path / "pkg" / "repro.py").write_text("X = 2\n")
    _, out = _run(layout, capsys, dry_run=True)
    assert re.search(r"would run 01_alpha: prefkit changed since \S+\n", out) and "would run 02_beta: prefkit" in out
    assert "ledger not written" in out
    (tmp_path / "pkg" / "repro.py").write_text("X = 1\n")
    (repro_dir / "beta" / "fig.png").unlink()
    _, out = _run(layout, capsys, dry_run=True)
    assert "skip  01_alpha: up to date" in out and "would run 02_beta: figures missing from" in out
    # The executed notebook is saved next to its result (what a reader opens); without it the notebook runs again.
    executed = repro_dir / "alpha" / "01_alpha.ipynb"
    assert "papermill" in nbformat.read(executed, as_version=4).metadata
    executed.unlink()
    _, out = _run(layout, capsys, dry_run=True, names=["01_alpha"])
    assert re.search(r"would run 01_alpha: the executed notebook \S+01_alpha.ipynb is missing", out)
    _, out = _run({**layout, "reproductions_dir": tmp_path / "elsewhere"}, capsys, dry_run=True, names=["01_alpha"])
    assert out.startswith("would run 01_alpha: no ") and "02_beta" not in out
    _, out = _run(layout, capsys, dry_run=True, force=True)
    assert "would run 01_alpha: --force" in out and "would run 02_beta: --force" in out

    # --force runs everything, including what is up to date.
    rc, out = _run(layout, capsys, force=True, names=["01_alpha"])
    assert rc == 0 and "start 01_alpha: --force" in out and "02_beta" not in out


@pytest.mark.slow
def test_reproduce_failed_notebook_still_writes_the_others_and_the_ledger(tmp_path, capsys):
    layout = _layout(tmp_path)
    _write_fake(tmp_path / "notebooks" / "01_alpha.ipynb", body='raise RuntimeError("boom in the notebook")')
    rc, out = _run(layout, capsys)
    assert rc == 1
    assert re.search(r"FAIL  01_alpha after [\d.]+ min: papermill exited with status 1; see .*01_alpha.log", out)
    assert re.search(r"failed: 01_alpha \(.*01_alpha.log\)", out) and "1 ran, 1 failed" in out
    assert "boom in the notebook" in (tmp_path / "runs" / "01_alpha.log").read_text()
    assert not (tmp_path / "reproductions" / "alpha" / "result.json").exists()
    assert "run" in load_result(tmp_path / "reproductions" / "beta" / "result.json")
    assert list(_summary_rows(tmp_path / "reproductions" / "README.md")) == ["beta"]
    assert "[02_beta](notebooks/02_beta.ipynb)" in (tmp_path / "README.md").read_text()
    # The failed notebook gets no run key, so the next run tries it again and skips the other.
    _, out = _run(layout, capsys, dry_run=True)
    assert "would run 01_alpha: no " in out and "skip  02_beta: up to date" in out


@pytest.mark.slow
def test_reproduce_runs_jobs_side_by_side(tmp_path, capsys):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    layout = _layout(tmp_path, body=BARRIER.replace("BARRIER", repr(str(barrier))))
    rc, out = _run(layout, capsys, jobs=2)
    assert rc == 0, out
    (a0, a1), (b0, b1) = (
        load_result(tmp_path / "reproductions" / m / "result.json")["interval"] for m in ("alpha", "beta")
    )
    assert a0 < b1 and b0 < a1  # the two runs overlap in time


def test_reproduce_refuses_unknown_notebooks_and_bad_counts(tmp_path):
    layout = _layout(tmp_path, names=("01_alpha",))
    with pytest.raises(ValueError, match=r"no such notebook in .*: 03_gamma \(there are: 01_alpha\)"):
        reproduce(["03_gamma"], **layout, dry_run=True)
    with pytest.raises(ValueError, match="jobs and threads must be positive"):
        reproduce(**layout, jobs=0)
    assert [nb.name for nb in find_notebooks(tmp_path / "notebooks", tmp_path / "r", ["notebooks/01_alpha.ipynb"])] == [
        "01_alpha"
    ]


def _draws(gen: torch.Generator) -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=gen))


def test_seed_everything_reproduces_draws():
    a = _draws(seed_everything(123))
    b = _draws(seed_everything(123))
    c = _draws(seed_everything(124))
    assert a == b
    assert all(x != y for x, y in zip(a, c))
    assert isinstance(seed_everything(2**40), torch.Generator)  # seeds beyond NumPy's 32-bit range are accepted


def test_reader_copy_drops_progress_bars_and_keeps_everything_else():
    from prefkit.reproduce import reader_copy

    def stream(name, text):
        return {"output_type": "stream", "name": name, "text": text}

    warn = stream("stderr", "UserWarning: something a reader should see\n")
    png = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": ["<Figure>"]}, "metadata": {}}
    outputs = [
        stream("stderr", "DPO s0:  42%|████▏     | 63/150 [00:10<00:14,  6.1it/s]"),
        stream("stderr", ["\r", "SFT:   3/10 [00:01<00:02, 3.2it/s]"]),
        warn,
        stream("stdout", "loss 0.69\n"),
        png,
    ]
    nb = {"cells": [{"cell_type": "code", "source": "x", "outputs": outputs}, {"cell_type": "markdown", "source": "m"}]}
    out = json.loads(reader_copy(json.dumps(nb)))
    assert out["cells"][0]["outputs"] == [warn, stream("stdout", "loss 0.69\n"), png]
    assert out["cells"][1] == nb["cells"][1]
