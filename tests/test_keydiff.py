"""prefkit.keydiff: which changes to a module could a notebook's recorded run have used?"""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from prefkit.keydiff import changed_definitions, names_in, reachable_changes, used_changes

OLD = textwrap.dedent('''
    """A module."""
    import math

    SCALE = 2.0


    def used(x):
        """Used by the notebook."""
        return helper(x) * SCALE


    def helper(x):
        return math.sqrt(deep(x))


    def deep(x):
        return x


    def ledger(rows):
        return [fmt(r) for r in rows]


    def fmt(r):
        return str(r)


    if __name__ == "__main__":
        print(ledger([1]))
''')


def _repo(tmp_path, source: str):
    """A git repository holding pkg/mod.py = ``source`` in one commit; returns (package dir, commit)."""
    pkg = tmp_path / "repo" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "mod.py").write_text(source)

    def run(*args):
        return subprocess.run(["git", "-C", str(tmp_path / "repo"), *args], check=True, capture_output=True, text=True)

    run("init", "-q")
    run("add", ".")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    return pkg, run("rev-parse", "HEAD").stdout.strip()


NOTEBOOK = ["from pkg.mod import used\nprint(used(4.0))"]


@pytest.mark.parametrize(
    "edit, used, unused",
    [
        (lambda s: s.replace('"""Used by the notebook."""', '"""Used by the notebook, said better."""'), [], []),
        (lambda s: s.replace("# nothing", "") + "\n# a comment\n", [], []),
        (lambda s: s.replace("return str(r)", "return repr(r)"), [], ["mod.py:fmt"]),  # only the unused ledger uses fmt
        (lambda s: s.replace("[fmt(r) for r in rows]", "list(map(fmt, rows))"), [], ["mod.py:ledger"]),
        (lambda s: s + "\n\ndef new_function():\n    return 1\n", [], ["mod.py:new_function"]),
        (lambda s: s.replace("math.sqrt(deep(x))", "math.sqrt(abs(deep(x)))"), ["mod.py:helper"], []),  # via used()
        (lambda s: s.replace("    return x\n", "    return abs(x)\n"), ["mod.py:deep"], []),  # via used(), helper()
        (lambda s: s.replace("* SCALE", "/ SCALE"), ["mod.py:used"], []),
        (lambda s: s.replace("SCALE = 2.0", "SCALE = 3.0"), ["mod.py: module-level code"], []),
        (lambda s: s.replace("print(ledger([1]))", "print(ledger([2]))"), [], ["mod.py:__main__"]),
    ],
    ids=[
        "docstring",
        "comment",
        "helper-of-unused",
        "unused",
        "added",
        "helper-of-used",
        "two-hops",
        "used",
        "module-level",
        "script-block",
    ],  # fmt: skip
)
def test_used_changes(tmp_path, edit, used, unused):
    pkg, commit = _repo(tmp_path, OLD)
    (pkg / "mod.py").write_text(edit(OLD))
    assert used_changes(pkg, ["mod.py"], commit, NOTEBOOK) == (used, unused)


def test_a_name_the_notebook_calls_directly_is_used(tmp_path):
    pkg, commit = _repo(tmp_path, OLD)
    (pkg / "mod.py").write_text(OLD.replace("return str(r)", "return repr(r)"))
    assert used_changes(pkg, ["mod.py"], commit, ["from pkg.mod import fmt\nfmt(1)"])[0] == ["mod.py:fmt"]


def test_what_cannot_be_read_counts_as_a_change(tmp_path):
    pkg, commit = _repo(tmp_path, OLD)
    assert used_changes(pkg, ["mod.py"], "0" * 40, NOTEBOOK)[0] == [f"mod.py: not readable at {'0' * 10}"]
    (pkg / "mod.py").write_text(OLD + "\ndef broken(:\n")
    assert used_changes(pkg, ["mod.py"], commit, NOTEBOOK)[0] == ["mod.py: unreadable (SyntaxError)"]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "mod.py").write_text(OLD)
    assert used_changes(outside, ["mod.py"], commit, NOTEBOOK)[0] == ["(no git repository: cannot compare)"]


def test_names_in_reads_code_not_strings_or_comments():
    src = 'x = f(y)  # g\n__all__ = ["h"]\n'
    assert names_in(src) == {"x", "f", "y", "__all__"}
    assert names_in(src, hidden=[(1, 1)]) == {"__all__"}


def test_changed_definitions_and_reachability():
    names, other = changed_definitions(OLD, OLD.replace("return str(r)", "return repr(r)"))
    assert names == {"fmt"} and not other
    sources = {"mod.py": OLD}
    assert reachable_changes({"mod.py": {"fmt", "ledger"}}, sources, NOTEBOOK) == set()
    assert reachable_changes({"mod.py": {"fmt", "ledger"}}, sources, ["ledger([])"]) == {"mod.py:ledger", "mod.py:fmt"}
