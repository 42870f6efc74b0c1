"""The project's set-up files agree with each other."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(spec: str) -> str:
    return re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower()


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in ("notebooks", "dev"):
        wanted |= set(project["optional-dependencies"][extra])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    have = {s for s in pip if not s.startswith("-e")}
    assert have == wanted, f"only in environment.yml: {have - wanted}; only in pyproject.toml: {wanted - have}"
    assert "-e ." in pip, "environment.yml must install prefkit itself"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^make test$", readme, re.M), "README must show `make test`"
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_notebooks_are_paired_and_in_sync():
    import jupytext
    import nbformat

    pys = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    assert pys, "no notebooks"
    for py in pys:
        ipynb = py.with_suffix(".ipynb")
        assert ipynb.exists(), f"{ipynb.name} missing: run jupytext --sync {py.name}"
        src = [c.source for c in jupytext.read(py).cells]
        nb = nbformat.read(ipynb, as_version=4)
        assert [c.source for c in nb.cells] == src, f"{ipynb.name} differs from {py.name}: run jupytext --sync"
        assert not any(c.get("outputs") for c in nb.cells), f"{ipynb.name} committed with outputs"
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{ipynb.name}: exactly one cell must be tagged 'parameters'"
