"""Every notebook's first code cell installs prefkit where the kernel lacks it: from the clone it sits in, from
PREFKIT_SOURCE, or not at all with a message that says what to set."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _install_cell(path: Path) -> str:
    cells = [c for c in json.loads(path.read_text())["cells"] if "install" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{path.name}: expected one cell tagged 'install'"
    return "".join(cells[0]["source"])


def test_every_notebook_has_the_same_install_cell_and_no_made_up_repository():
    cells = {p.name: _install_cell(p) for p in NOTEBOOKS}
    assert len(cells) >= 10 and len(set(cells.values())) == 1
    assert "github.com/prefkit/prefkit" not in next(iter(cells.values()))


def _exec(monkeypatch, cwd: Path, source: str | None) -> list[list[str]]:
    """Run the install cell in a kernel that lacks prefkit; returns the pip commands it ran."""
    calls = []
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    monkeypatch.setattr(subprocess, "check_call", lambda cmd, *a, **k: calls.append(cmd))
    if source is None:
        monkeypatch.delenv("PREFKIT_SOURCE", raising=False)
    else:
        monkeypatch.setenv("PREFKIT_SOURCE", source)
    exec(_install_cell(NOTEBOOKS[0]), {})
    return calls


def test_a_kernel_inside_a_clone_installs_that_clone(monkeypatch):
    (calls,) = _exec(monkeypatch, ROOT / "notebooks", None)
    assert calls[1:4] == ["-m", "pip", "install"] and calls[-1] == str(ROOT)


def test_prefkit_source_wins_and_an_uploaded_copy_without_it_says_what_to_set(monkeypatch, tmp_path):
    (calls,) = _exec(monkeypatch, tmp_path, "git+https://example.org/me/prefkit")
    assert calls[-1] == "git+https://example.org/me/prefkit"
    with pytest.raises(RuntimeError, match=r"not inside a prefkit clone.*set PREFKIT_SOURCE"):
        _exec(monkeypatch, tmp_path, None)
    with pytest.raises(RuntimeError, match="set PREFKIT_SOURCE"):
        _exec(monkeypatch, tmp_path, "")
