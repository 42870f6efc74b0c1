"""The run key of a reproduction: what a notebook's result depends on, as sha256 digests.

``write_result`` records the prefkit modules a run imported (``loaded_modules``) and the digest of the notebook's
cells; ``make reproduce`` (:mod:`prefkit.reproduce`) keys each run on the notebook's cells, those modules and the
parameters, and skips a notebook whose key has not changed. Kept apart from the scheduler so that editing the
scheduler does not change the key of every result.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent

FINDINGS = "findings"  # the tag of the cells that read a finished result (left out of the run key)
INJECTED = "injected-parameters"  # the cell papermill adds to an executed copy


def joined(text: str | list[str]) -> str:
    """A notebook field stored as one string or as a list of lines (cell sources, stream outputs), as one string."""
    return "".join(text) if isinstance(text, list) else text


def _sha256(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def tags(cell: dict[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def executed_parts(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cells that produce a result: type, tags and source, without ``findings`` cells or papermill's own."""
    return [
        {"cell_type": c["cell_type"], "tags": tags(c), "source": joined(c["source"])}
        for c in cells
        if FINDINGS not in tags(c) and INJECTED not in tags(c)
    ]


def notebook_sha256(path: str | os.PathLike) -> str:
    """sha256 of what papermill executes to produce the result: each cell's type, tags and source (not outputs or
    other metadata), leaving out the cells tagged ``findings``, which only read the finished result."""
    return _sha256(json.dumps(executed_parts(json.loads(Path(path).read_text())["cells"]), sort_keys=True))


def file_hashes(package: Path) -> dict[str, str]:
    """sha256 of each ``*.py`` under ``package``, by its path relative to ``package``."""
    return {p.relative_to(package).as_posix(): _sha256(p.read_bytes()) for p in package.rglob("*.py")}


def combine_hashes(hashes: dict[str, str], modules: Sequence[str] | None) -> str:
    """One sha256 over ``modules`` (all files when None), each path with its content's sha256 (so no two packages hash
    alike by moving bytes between files); a listed module that no longer exists hashes as missing."""
    names = sorted(hashes) if modules is None else sorted(set(modules))
    return _sha256("".join(f"{rel}\0{hashes.get(rel, 'missing')}\n" for rel in names))


def prefkit_sha256(package: str | os.PathLike = PACKAGE_DIR, modules: Sequence[str] | None = None) -> str:
    """sha256 of the ``*.py`` files under ``package``: all of them, or only ``modules`` (paths relative to
    ``package``, as ``loaded_modules`` lists them)."""
    return combine_hashes(file_hashes(Path(package)), modules)


def loaded_modules(package: str | os.PathLike = PACKAGE_DIR) -> list[str]:
    """The files of the modules under ``package`` that this process has imported, relative to ``package``: all the
    library code a notebook's result can depend on (a module imported only inside a function that ran is here too)."""
    package = Path(package).resolve()
    files = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and Path(path).resolve().is_relative_to(package):
            files.add(Path(path).resolve().relative_to(package).as_posix())
    return sorted(files)


def parameters_sha256(parameters: dict[str, Any]) -> str:
    """sha256 of the parameters as canonical JSON (sorted keys, no spaces)."""
    return _sha256(json.dumps(parameters, sort_keys=True, separators=(",", ":")))
