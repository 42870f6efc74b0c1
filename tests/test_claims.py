"""Claims judged by their evidence: the status rule, the bootstrap and t intervals, gates, provenance."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from prefkit import repro
from prefkit.claims import (
    compare,
    fmt_interval,
    gate,
    hierarchical_bootstrap,
    judge,
    per_seed,
    resolve,
    t_interval,
)
from prefkit.repro import DirtyTreeError, claims_table, make_claim, update_readme_table, write_ledger, write_result

PAPER = {"arxiv": "0000.00000", "title": "T", "number": "+3 points"}


def _const(x: float, n: int = 50, seeds: int = 3) -> list[np.ndarray]:
    return [np.full(n, x) for _ in range(seeds)]


def _zeros(n: int = 50, seeds: int = 3) -> list[np.ndarray]:
    return _const(0.0, n, seeds)


@pytest.fixture(autouse=True)
def clean_tree(monkeypatch):
    """Results in these tests come from a clean tree unless a test says otherwise (the checkout may be dirty)."""
    monkeypatch.setattr(repro, "git_state", lambda: {"commit": "c" * 40, "dirty": False})
    monkeypatch.delenv("PREFKIT_ALLOW_DIRTY", raising=False)


# --- the status rule ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "est, lo, hi, direction, delta, margin, status",
    [
        (0.05, 0.03, 0.07, "greater", 0.02, None, "reproduced"),
        (0.02, 0.001, 0.04, "greater", 0.02, None, "reproduced"),  # the estimate reaches delta exactly
        (-0.05, -0.07, -0.03, "greater", 0.02, None, "reversed"),
        (0.01, 0.005, 0.015, "greater", 0.02, None, "not reproduced"),  # real, but smaller than matters
        (0.0, -0.01, 0.015, "greater", 0.02, None, "not reproduced"),
        (0.01, -0.02, 0.04, "greater", 0.02, None, "inconclusive"),
        (0.015, 0.005, 0.03, "greater", 0.02, None, "inconclusive"),  # above 0, below delta, could still matter
        (-0.05, -0.07, -0.03, "less", 0.02, None, "reproduced"),  # the paper says "lowers"
        (0.05, 0.03, 0.07, "less", 0.02, None, "reversed"),
        (-0.01, -0.02, 0.0, "greater", None, 0.03, "reproduced"),  # non-inferiority: low end above -margin
        (-0.02, -0.04, 0.0, "greater", None, 0.03, "inconclusive"),
        (-0.06, -0.08, -0.04, "greater", None, 0.03, "reversed"),
        (0.06, 0.04, 0.08, "less", None, 0.03, "reversed"),  # "less" non-inferiority: it must not rise
        (-0.3, -math.inf, math.inf, "greater", 0.02, None, "inconclusive"),  # no interval (one seed)
    ],
)
def test_judge_applies_the_first_rule_that_holds(est, lo, hi, direction, delta, margin, status):
    assert judge(est, lo, hi, direction, delta, margin) == status


@pytest.mark.parametrize(
    "diff, delta, status",
    [(0.05, 0.02, "reproduced"), (-0.05, 0.02, "reversed"), (0.01, 0.02, "not reproduced")],
)
def test_compare_on_constant_differences(diff, delta, status):
    c = compare("C", "a beats b", "score", _const(diff), _zeros(), delta=delta)
    assert c.estimate == pytest.approx(diff) and c.interval == pytest.approx([diff, diff])
    assert c.status == status and c.values == pytest.approx([diff] * 3)


def test_compare_inconclusive_when_noise_swamps_the_effect():
    rng = np.random.default_rng(1)
    t = [rng.normal(0.01, 1.0, 40) for _ in range(3)]
    c = compare("C", "a beats b", "score", t, _zeros(40), delta=0.02)
    assert c.interval[0] < 0 < c.interval[1] and c.interval[1] > 0.02
    assert c.status == "inconclusive"


def test_compare_direction_less_and_a_number_as_control():
    c = compare("C", "lowers confusion", "confusion", _const(0.2), _const(0.3), delta=0.05, direction="less")
    assert c.estimate == pytest.approx(-0.1) and c.status == "reproduced"
    w = compare("W", "wins", "win rate", [np.ones(10), np.ones(10)], 0.5, delta=0.03)
    assert w.estimate == pytest.approx(0.5) and w.status == "reproduced"


def test_compare_is_paired_by_default():
    """Paired units cancel what the arms share; resampled apart the same data gives a wider interval."""
    rng = np.random.default_rng(2)
    shared = [rng.normal(0, 1, 300) for _ in range(2)]
    t = [s + 0.05 for s in shared]
    paired = compare("P", "x", "m", t, shared, delta=0.02)
    unpaired = compare("U", "x", "m", t, shared, delta=0.02, paired=False)
    assert paired.interval == pytest.approx([0.05, 0.05])
    assert unpaired.interval[0] < 0 < unpaired.interval[1] and unpaired.status == "inconclusive"
    assert "unpaired" in unpaired.interval_method and "paired" in paired.interval_method


# --- intervals ---------------------------------------------------------------------------------------------------


def test_bootstrap_is_deterministic_and_depends_on_its_seed():
    rng = np.random.default_rng(3)
    groups = [[rng.normal(0.1, 1, 200)] for _ in range(3)]
    a = hierarchical_bootstrap(groups)
    assert hierarchical_bootstrap(groups) == a
    assert hierarchical_bootstrap(groups, seed=1)[1:3] != a[1:3]


def test_one_seed_bootstrap_matches_the_normal_interval_of_a_mean():
    rng = np.random.default_rng(4)
    x = rng.normal(0.3, 2.0, 2000)
    est, lo, hi, per = hierarchical_bootstrap([[x]])
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert est == pytest.approx(x.mean()) and per == [pytest.approx(x.mean())]
    assert lo == pytest.approx(x.mean() - half, abs=0.1 * half) and hi == pytest.approx(x.mean() + half, abs=0.1 * half)


def test_seed_to_seed_variation_widens_the_hierarchical_interval():
    rng = np.random.default_rng(5)
    noise = [rng.normal(0, 0.1, 200) for _ in range(3)]
    same = [[n + 0.1] for n in noise]
    spread = [[n + off] for n, off in zip(noise, (-0.2, 0.1, 0.4))]
    w_same = np.diff(hierarchical_bootstrap(same)[1:3])[0]
    w_spread = np.diff(hierarchical_bootstrap(spread)[1:3])[0]
    assert w_spread > 5 * w_same


def test_t_interval_and_per_seed_claims():
    v = [0.1, 0.12, 0.07]
    m, lo, hi = t_interval(v)
    half = stats.t.ppf(0.975, 2) * np.std(v, ddof=1) / math.sqrt(3)
    assert (m, lo, hi) == pytest.approx((np.mean(v), np.mean(v) - half, np.mean(v) + half))
    c = per_seed("S", "a beats b", "accuracy", [0.8, 0.82, 0.79], [0.7, 0.71, 0.72], delta=0.01)
    assert c.estimate == pytest.approx(0.0933, abs=1e-4) and c.status == "reproduced"
    assert "t-interval over 3 seed(s)" in c.interval_method
    one = per_seed("S1", "a beats b", "accuracy", [0.9], 0.5, delta=0.01)
    assert one.interval == [-math.inf, math.inf] and one.status == "inconclusive"


# --- gates -------------------------------------------------------------------------------------------------------


def test_gate_passes_only_when_its_whole_interval_clears_the_threshold():
    assert gate("G", "judge beats chance", "accuracy", _const(0.7), 0.55).status == "passed"
    rng = np.random.default_rng(6)
    near = [rng.binomial(1, 0.57, 60).astype(float) for _ in range(3)]
    g = gate("G", "judge beats chance", "accuracy", near, 0.55)
    assert g.interval[0] < 0.55 and g.status == "failed"
    assert gate("L", "loss falls", "loss ratio", [0.5, 0.52, 0.48], 0.9, direction="less").status == "passed"
    assert gate("L1", "one seed", "loss ratio", [0.5], 0.9, direction="less").status == "failed"  # no interval


def test_a_failed_gate_makes_its_dependents_not_testable():
    g = gate("G", "head learns", "accuracy", _const(0.5), 0.6)
    ok = gate("H", "data differ", "share", _const(0.9), 0.5)
    c1 = compare("C1", "x", "m", _const(0.1), _zeros(), delta=0.02, requires=["G"])
    c2 = compare("C2", "x", "m", _const(0.1), _zeros(), delta=0.02, requires=["H"])
    c3 = compare("C3", "x", "m", _const(-0.1), _zeros(), delta=0.02, requires=["G", "H"])
    resolve([g, ok, c1, c2, c3])
    assert [c.status for c in (g, ok, c1, c2, c3)] == ["failed", "passed", "not testable", "reproduced", "not testable"]
    assert c3.blocked_by == ["G"] and c3.own_status == "reversed"  # the evidence is kept, the verdict is not given
    t = claims_table([g, ok, c1, c2, c3])
    assert list(t["status"]) == ["failed", "passed", "not testable", "reproduced", "not testable"]
    assert list(t["kind"]) == ["gate", "gate", "headline", "headline", "headline"]


def test_requires_must_name_a_gate_among_the_claims():
    c = compare("C", "x", "m", _const(0.1), _zeros(), delta=0.02, requires=["G"])
    with pytest.raises(ValueError, match="requires gate 'G', which is not among the claims"):
        resolve([c])
    e = compare("E", "x", "m", _const(0.1), _zeros(), delta=0.02)
    d = compare("D", "x", "m", _const(0.1), _zeros(), delta=0.02, requires=["E"])
    with pytest.raises(ValueError, match="requires 'E', which is a headline claim, not a gate"):
        resolve([e, d])
    with pytest.raises(ValueError, match=r"claim ids must be unique, got duplicates \['C'\]"):
        resolve([c, c])


# --- bad input ---------------------------------------------------------------------------------------------------


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="C treatment: seed 1, unit 2 is nan"):
        compare("C", "x", "m", [np.ones(3), np.array([1.0, 1.0, np.nan])], _zeros(3, 2), delta=0.1)
    with pytest.raises(ValueError, match="seed 0 pairs 3 treatment units with 4 control units"):
        compare("C", "x", "m", [np.ones(3)], [np.ones(4)], delta=0.1)
    with pytest.raises(ValueError, match="treatment has 2 seeds and control 1"):
        compare("C", "x", "m", _zeros(3, 2), _zeros(3, 1), delta=0.1)
    with pytest.raises(ValueError, match="C control: seed 0 has no units"):
        compare("C", "x", "m", [np.ones(2)], [np.ones(0)], delta=0.1)
    with pytest.raises(ValueError, match="exactly one of delta"):
        compare("C", "x", "m", _zeros(), _zeros())
    with pytest.raises(ValueError, match="exactly one of delta"):
        compare("C", "x", "m", _zeros(), _zeros(), delta=0.1, margin=0.1)
    with pytest.raises(ValueError, match="must be finite and > 0, got 0"):
        compare("C", "x", "m", _zeros(), _zeros(), delta=0)
    with pytest.raises(ValueError, match="direction must be 'greater' or 'less', got 'up'"):
        compare("C", "x", "m", _zeros(), _zeros(), delta=0.1, direction="up")
    with pytest.raises(ValueError, match="'headline' or 'secondary', got kind='gate'"):
        compare("C", "x", "m", _zeros(), _zeros(), delta=0.1, kind="gate")
    with pytest.raises(ValueError, match="must be finite and non-empty"):
        per_seed("S", "x", "m", [0.1, float("nan")], delta=0.1)


# --- records and the ledger --------------------------------------------------------------------------------------


def _claims():
    g = gate("G", "judge beats chance", "accuracy", _const(0.7), 0.55)
    c = compare("C1", "a beats b", "score", _const(0.05), _zeros(), delta=0.02, requires=["G"], paper="+3")
    s = compare("C2", "b stays", "score", _const(-0.01), _zeros(), margin=0.03, kind="secondary")
    return [g, c, s]


def test_write_result_records_provenance(tmp_path, monkeypatch):
    nb = tmp_path / "nbs"
    nb.mkdir()
    (nb / "01_t.ipynb").write_text(json.dumps({"cells": [{"cell_type": "code", "source": "x = 1", "metadata": {}}]}))
    monkeypatch.chdir(nb)  # a notebook runs in its own folder
    path = write_result(tmp_path / "t", "t", PAPER, _claims(), {"seed": 0}, extra={"notebook": "01_t"}, seeds=[0, 1])
    env = json.loads(path.read_text())["environment"]
    assert env["commit"] == "c" * 40 and env["dirty"] is False and "dirty_override" not in env
    assert len(env["notebook_sha256"]) == 64 and len(env["prefkit_sha256"]) == 64
    assert env["seeds"] == [0, 1] and env["wall_s"] >= 0
    assert {"python", "torch", "transformers", "device"} <= set(env)
    claims = json.loads(path.read_text())["claims"]
    assert [c["status"] for c in claims] == ["passed", "reproduced", "reproduced"]
    assert claims[1]["interval"] == pytest.approx([0.05, 0.05]) and claims[1]["requires"] == ["G"]


def test_full_result_from_a_dirty_tree_is_refused_unless_overridden(tmp_path, monkeypatch):
    monkeypatch.setattr(repro, "git_state", lambda: {"commit": "d" * 40, "dirty": True})
    with pytest.raises(DirtyTreeError, match="commit first, or pass allow_dirty=True"):
        write_result(tmp_path / "t", "t", PAPER, _claims(), {})
    assert not (tmp_path / "t" / "result.json").exists()
    write_result(tmp_path / "s", "s", PAPER, _claims(), {}, smoke=True)  # smoke runs are never refused
    write_result(tmp_path / "t", "t", PAPER, _claims(), {}, allow_dirty=True)
    monkeypatch.setenv("PREFKIT_ALLOW_DIRTY", "1")
    write_result(tmp_path / "u", "u", PAPER, _claims(), {})
    for m in ("t", "u"):
        assert json.loads((tmp_path / m / "result.json").read_text())["environment"]["dirty_override"] is True
    summary = write_ledger(tmp_path).read_text().split("## Claims", 1)[0]
    assert summary.count("| dirty (override) |") == 2 and summary.count("| dirty |") == 1


def test_ledger_shows_intervals_gates_and_counts(tmp_path):
    write_result(tmp_path / "t", "t", PAPER, _claims(), {}, extra={"notebook": "01_t"})
    text = write_ledger(tmp_path).read_text()
    claims = text.split("## Claims", 1)[1].split("## Gates", 1)[0]
    gates = text.split("## Gates", 1)[1]
    assert "| C1 | headline | a beats b | +3 | score: +0.05 [0.05, 0.05] | delta 0.02 |" in claims
    assert "| C2 | secondary | b stays |" in claims and "margin 0.03" in claims
    assert "| G | judge beats chance | accuracy: +0.7 [0.7, 0.7] | 95% interval > 0.55 | **passed** |" in gates
    row = next(ln for ln in text.splitlines() if ln.startswith("| [01_t]"))
    assert row.startswith("| [01_t](t/) | 1 reproduced | 1 reproduced | 1 passed | - |")
    readme = tmp_path / "R.md"
    readme.write_text("<!-- notebooks:start -->\n<!-- notebooks:end -->\n")
    table = update_readme_table(readme, tmp_path).read_text()
    assert "| 1 reproduced | 1 reproduced | 1 passed | - | **1 of 1 headline reproduced** |" in table


def test_old_format_results_still_render_without_partial(tmp_path):
    """A result written before claims had kinds (status "partial") renders under the old rule, from its passes."""
    old = {
        "method": "old", "notebook": "09_old", "paper": PAPER, "smoke": False, "figures": [], "parameters": {},
        "environment": {"prefkit_commit": "1234567"},
        "claims": [
            {"id": "a", "statement": "s", "metric": "m", "values": [0.1, -0.1, 0.2], "test": "> 0 per seed",
             "per_seed_pass": [True, False, True], "paper": "", "asserted": True, "extra": {}, "status": "partial",
             "spread": {"mean": 0.0667, "std": 0.153, "min": -0.1, "max": 0.2, "n": 3}},
            {"id": "b", "statement": "s", "metric": "m", "values": [0.3], "test": "> 0", "per_seed_pass": [True],
             "paper": "", "asserted": False, "extra": {}, "status": "not asserted", "spread": {}},
        ],
    }  # fmt: skip
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "result.json").write_text(json.dumps(old))
    make = make_claim("n", "s", "m", [0.2, 0.3], lambda v: v > 0, "> 0")
    write_result(tmp_path / "new", "new", PAPER, [make], {}, extra={"notebook": "10_new"})
    text = write_ledger(tmp_path).read_text()
    readme = tmp_path / "R.md"
    readme.write_text("<!-- notebooks:start -->\n<!-- notebooks:end -->\n")
    table = update_readme_table(readme, tmp_path).read_text()
    assert "partial" not in text and "partial" not in table
    assert "**old rule: 2/3 seeds**" in text and "**old rule: 2/2 seeds**" in text and "**not asserted**" in text
    assert "| 1 some seeds, 1 not asserted | **old rule (not yet restated)** |" in table
    assert "| 1 all seeds | **old rule (not yet restated)** |" in table


def test_fmt_interval_handles_missing_and_infinite_ends():
    assert fmt_interval(None, None) == "-"
    assert fmt_interval(0.1234, [0.1, 0.15]) == "+0.123 [0.1, 0.15]"
    assert fmt_interval(0.5, [None, None]) == "+0.5 [-inf, inf]"  # as stored in result.json
    assert fmt_interval(0.5, [-math.inf, math.inf]) == "+0.5 [-inf, inf]"


# --- "What we found" ---------------------------------------------------------------------------------------------


def _found_claims():
    g = gate("G", "judge beats chance", "accuracy", _const(0.7), 0.55)
    c1 = compare("C1", "a beats b", "score", _const(0.05), _zeros(), delta=0.02, requires=["G"])
    rng = np.random.default_rng(7)
    noisy = [rng.normal(0.01, 1.0, 40) for _ in range(3)]
    c2 = compare("C2", "a beats c", "score", noisy, _zeros(40), delta=0.02)
    c3 = compare(
        "C3", "b lowers length", "length", _const(1.0), _zeros(), delta=0.5, direction="less", kind="secondary"
    )
    old = make_claim("O1", "sanity", "acc", [0.9, 0.8], lambda v: v > 0.5, "> 0.5 per seed")
    return [g, c1, c2, c3, old]


def test_what_we_found_reads_the_record_and_keeps_notes_to_their_status(tmp_path):
    path = write_result(tmp_path / "t", "t", PAPER, _found_claims(), {}, extra={"notebook": "01_t"})
    why = {"C2": ("inconclusive", "the noise is larger than the effect."), "C3": ("reproduced", "old note.")}
    text = repro.what_we_found(path, why)
    r = json.loads(path.read_text())
    c2 = next(c for c in r["claims"] if c["id"] == "C2")
    assert text.startswith("### What we found\n")
    assert "**Headline claims**: 1 reproduced, 1 inconclusive." in text
    assert "**Secondary claims**: 1 reversed." in text and "**Gates**: 1 passed." in text
    assert "**Claims under the old per-seed rule (not evidence; to be restated)**: 1 all seeds." in text
    assert fmt_interval(c2["estimate"], c2["interval"]) in text  # the numbers are the record's
    assert (
        "- **C1** (reproduced): a beats b; score +0.05 [0.05, 0.05] against delta 0.02, interval half-width 0." in text
    )
    assert "  *Why:* the noise is larger than the effect." in text
    assert "written for a *reproduced* result; this run's is *reversed*, so the note is out of date" in text
    assert "old note." not in text
    assert "- **O1** (old rule: 2/2 seeds): sanity; acc 0.85 ± 0.071 (n=2), rule > 0.5 per seed." in text
    bare = repro.what_we_found(path)
    assert bare.count("*Why:* not yet explained.") == 2  # C2 and C3: every claim that did not reproduce
    with pytest.raises(ValueError, match=r"why names claims that the result does not have: \['C9'\]"):
        repro.what_we_found(path, {"C9": ("reproduced", "x")})


def test_what_we_found_marks_smoke_runs_and_blocked_claims(tmp_path):
    g = gate("G", "head learns", "accuracy", _const(0.5), 0.6)
    c = compare("C1", "a beats b", "score", _const(0.05), _zeros(), delta=0.02, requires=["G"])
    path = write_result(tmp_path / "t", "t", PAPER, [g, c], {}, smoke=True)
    text = repro.what_we_found(path)
    assert "*A smoke run:" in text and "**Gates**: 1 failed." in text
    assert "- **C1** (not testable): a beats b;" in text and "rests on gate(s) G, which did not pass." in text
    assert "not yet explained" not in text  # smoke numbers are not results to explain


def test_ledger_and_readme_link_the_executed_notebook(tmp_path):
    root = tmp_path / "reproductions"
    write_result(root / "t", "t", PAPER, _claims(), {}, extra={"notebook": "01_t"})
    readme = tmp_path / "README.md"
    readme.write_text("<!-- notebooks:start -->\n<!-- notebooks:end -->\n")
    assert "executed" not in update_readme_table(readme, root).read_text()
    (root / "t" / "01_t.ipynb").write_text("{}")
    assert "| [01_t](t/) ([executed](t/01_t.ipynb)) |" in write_ledger(root).read_text()
    table = update_readme_table(readme, root).read_text()
    assert "| [01_t](notebooks/01_t.ipynb) ([executed](reproductions/t/01_t.ipynb)) |" in table
