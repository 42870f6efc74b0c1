"""Did a prefkit change touch code a notebook's recorded run could have used? (A finer look behind the run key.)

The run key (:mod:`prefkit.runkey`) hashes whole module files, so an edit anywhere in a module a notebook imported
marks its result stale: a new function, a docstring, or the ledger writer that lives beside ``write_result``. This
module looks behind a changed hash, at the module's source at the commit the result records and at the working
tree, definition by definition:

- docstrings and comments are ignored (each definition is compared as its syntax tree without docstrings);
- any change to module-level code other than ``def`` and ``class`` statements (imports, assignments, calls) counts;
- a changed, added or removed top-level function or class counts only if its name is *reachable*: referenced (as a
  name in code, not in a string or comment) by the notebook's executed cells or the imported modules' module-level
  code, or by the body of a definition that is itself reachable (followed to a fixed point). A changed helper used
  only by functions the notebook never reaches (the ledger writer, say) does not count.

What it cannot see: a definition looked up by a string (``getattr(module, "name")``) or from outside prefkit. The
answer errs towards "used": anything it cannot read (no git, an unknown commit, a syntax error) counts as a change.
"""

from __future__ import annotations

import ast
import io
import subprocess
import tokenize
from collections.abc import Iterable, Sequence
from pathlib import Path

DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, *DEFS)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def _is_main_block(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":``"""
    t = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(t, ast.Compare)
        and isinstance(t.left, ast.Name)
        and t.left.id == "__name__"
        and len(t.comparators) == 1
        and isinstance(t.comparators[0], ast.Constant)
        and t.comparators[0].value == "__main__"
    )


def top_level(source: str) -> tuple[dict[str, str], list[str], dict[str, tuple[int, int]]]:
    """(definitions: name -> syntax dump without docstrings, other module-level statements' dumps in order, each
    definition's line span (first line with its decorators, last line))."""
    tree = _strip_docstrings(ast.parse(source))
    defs, other, spans = {}, [], {}
    for node in tree.body:
        if _is_main_block(node):  # runs only as a script, never on import: a definition no import can reach
            defs["__main__"] = ast.dump(node)
            spans["__main__"] = (node.lineno, node.end_lineno)
        elif isinstance(node, DEFS):
            defs[node.name] = ast.dump(node)
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            spans[node.name] = (first, node.end_lineno)
        else:
            other.append(ast.dump(node))
    return defs, other, spans


def names_in(source: str, hidden: Iterable[tuple[int, int]] = ()) -> set[str]:
    """The NAME tokens of ``source`` (identifiers in code, not in strings or comments), outside the ``hidden`` line
    spans (inclusive)."""
    hidden = list(hidden)
    out = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME and not any(a <= tok.start[0] <= b for a, b in hidden):
            out.add(tok.string)
    return out


def changed_definitions(old: str, new: str) -> tuple[set[str], bool]:
    """(names of top-level definitions that differ between the two sources, or exist in one only; whether other
    module-level code differs)."""
    old_defs, old_other, _ = top_level(old)
    new_defs, new_other, _ = top_level(new)
    names = {n for n in old_defs.keys() | new_defs.keys() if old_defs.get(n) != new_defs.get(n)}
    return names, old_other != new_other


def reachable_changes(changed: dict[str, set[str]], sources: dict[str, str], extra_code: Sequence[str]) -> set[str]:
    """The changed definitions (``changed``: module -> names) that code can reach, as ``module:name`` strings.

    Reachable names start as those in ``extra_code`` (the notebook's cells) and in the modules' module-level code
    (everything outside their top-level definitions); a top-level definition of any module whose name is reachable
    adds the names in its body; repeated until nothing new is found. Names are matched across modules (a name defined
    in two modules reaches both: the safe side)."""
    spans = {m: top_level(src)[2] for m, src in sources.items()}
    seen = set().union(*(names_in(code) for code in extra_code)) if extra_code else set()
    for m, src in sources.items():
        seen |= names_in(src, spans[m].values())
    done: set[tuple[str, str]] = set()
    while True:
        new = {(m, n) for m in sources for n in spans[m] if n in seen and (m, n) not in done}
        if not new:
            break
        for m, n in new:
            a, b = spans[m][n]
            seen |= names_in("\n".join(sources[m].splitlines()[a - 1 : b]))
        done |= new
    return {f"{m}:{n}" for m, names in changed.items() for n in names if n in seen}


def git_show(repo: Path, commit: str, path: str) -> str | None:
    """The file at ``path`` (relative to the repository root) at ``commit``, or None when git cannot tell."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{path}"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.decode()


def used_changes(
    package: Path, modules: Sequence[str], commit: str, notebook_code: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Compare the ``modules`` (paths relative to ``package``) at ``commit`` with the working tree. Returns (the
    changes the notebook could have used: ``module:name``, ``module: module-level code`` or ``module: unreadable``;
    the changed definitions it could not reach). An empty first list means the recorded result still describes what
    the code would compute."""
    package = Path(package).resolve()
    try:
        top = subprocess.run(["git", "-C", str(package), "rev-parse", "--show-toplevel"], capture_output=True,
                             check=True, text=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return ["(no git repository: cannot compare)"], []
    repo = Path(top)
    prefix = package.relative_to(repo).as_posix()
    used, changed, sources = [], {}, {}
    for rel in sorted(set(modules)):
        path = package / rel
        old = git_show(repo, commit, f"{prefix}/{rel}")
        try:
            new = path.read_text()
            ast.parse(new)
            sources[rel] = new
            if old is None:
                used.append(f"{rel}: not readable at {commit[:10]}")
                continue
            if old == new:
                continue
            names, other = changed_definitions(old, new)
        except (OSError, SyntaxError, UnicodeDecodeError) as e:
            used.append(f"{rel}: unreadable ({type(e).__name__})")
            continue
        if other:
            used.append(f"{rel}: module-level code")
        if names:
            changed[rel] = names
    reached = reachable_changes(changed, sources, notebook_code)
    unused = sorted(f"{m}:{n}" for m, names in changed.items() for n in names if f"{m}:{n}" not in reached)
    return used + sorted(reached), unused
