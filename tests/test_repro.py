"""Seeding, claims and their status, atomic result records and the claims ledger."""

from __future__ import annotations

import json
import math
import os
import random

import numpy as np
import pytest
import torch

from prefkit.repro import (
    Claim,
    load_result,
    make_claim,
    mean_spread,
    method_status,
    seed_everything,
    write_ledger,
    write_result,
)

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


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "result.json")


@pytest.mark.parametrize(
    "values, asserted, status",
    [
        ([0.6, 0.7, 0.8], True, "reproduced"),
        ([0.6, 0.4, 0.8], True, "partial"),
        ([0.1, 0.4, 0.2], True, "not reproduced"),
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
    assert c.status == "not reproduced"


def test_claim_to_dict_has_spread_and_fields():
    d = _claim(values=[1, 2, 3], threshold=1.5, paper="61%").to_dict()
    assert d["values"] == [1.0, 2.0, 3.0] and all(type(v) is float for v in d["values"])
    assert d["per_seed_pass"] == [False, True, True]
    assert d["spread"] == mean_spread([1, 2, 3])
    assert d["status"] == "partial"
    assert d["paper"] == "61%" and d["test"] == "win rate > 1.5 per seed"


def test_mean_spread():
    s = mean_spread([1.0, 2.0, 3.0, 4.0])
    assert s["mean"] == 2.5
    assert s["std"] == pytest.approx(math.sqrt(5 / 3))  # sample std (ddof = 1)
    assert (s["min"], s["max"], s["n"]) == (1.0, 4.0, 4)
    one = mean_spread([0.3])
    assert one == {"mean": 0.3, "std": 0.0, "min": 0.3, "max": 0.3, "n": 1}


def test_method_status():
    def result(*statuses):
        return {"claims": [{"status": s} for s in statuses]}

    assert method_status(result("reproduced", "reproduced", "not asserted")) == "reproduced"
    assert method_status(result("reproduced", "not reproduced")) == "partial"
    assert method_status(result("partial")) == "partial"
    assert method_status(result("not reproduced", "not reproduced")) == "not reproduced"
    assert method_status(result("not asserted")) == "not asserted"


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
    assert {"prefkit_commit", "torch", "device"} <= set(r["environment"])
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
    with pytest.raises(TypeError):
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


def test_write_ledger_one_row_per_claim(tmp_path):
    _write(tmp_path / "dpo", claims=[_claim("c1"), _claim("c2", values=[0.1, 0.2], paper="paper | number")])
    write_result(tmp_path / "ipo", "ipo", {"number": "n/a"}, [_claim("i1", asserted=False)], {}, smoke=True)
    (tmp_path / "notes").mkdir()  # a folder without result.json is skipped
    path = write_ledger(tmp_path)
    assert path == tmp_path / "README.md"
    lines = path.read_text().splitlines()
    rows = [ln for ln in lines if ln.startswith("| [")]
    assert len(rows) == 3
    header = next(ln for ln in lines if ln.startswith("| method"))
    n_cols = header.count(" | ") + 1
    for row in rows:
        assert row.replace("\\|", "").count(" | ") + 1 == n_cols, row
    c1, c2, i1 = rows
    assert c1.startswith("| [dpo](dpo/) | c1 |") and "**partial**" in c1 and "61% win rate" in c1
    assert "toy (full)" in c1
    assert "0.567 ± 0.15 (n=3)" in c1
    assert "**not reproduced**" in c2 and "paper \\| number" in c2
    assert i1.startswith("| [ipo](ipo/) | i1 |") and "**not asserted**" in i1 and "smoke" in i1
    assert _leftovers(tmp_path) == ["README.md", "dpo", "ipo", "notes"]


def test_write_ledger_is_regenerated_not_appended(tmp_path):
    _write(tmp_path / "dpo")
    first = write_ledger(tmp_path).read_text()
    assert write_ledger(tmp_path).read_text() == first


def _draws(gen: torch.Generator) -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1)), float(torch.rand(1, generator=gen))


def test_seed_everything_reproduces_draws():
    a = _draws(seed_everything(123))
    b = _draws(seed_everything(123))
    c = _draws(seed_everything(124))
    assert a == b
    assert all(x != y for x, y in zip(a, c))
    assert isinstance(seed_everything(2**40), torch.Generator)  # seeds beyond NumPy's 32-bit range are accepted
