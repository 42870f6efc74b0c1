"""Preference-data validation and conversion: every bad row is refused with its row index and field named."""

from __future__ import annotations

import math
import re

import pytest

from prefkit.data import (
    PreferenceDataError,
    from_hf_dataset,
    listwise_to_pairwise,
    to_hf_dataset,
    validate_listwise,
    validate_pairwise,
)

GOOD_PAIR = {"prompt": "reverse : a b =", "chosen": "b a", "rejected": "a b"}
GOOD_LIST = {"prompt": "sort : c a =", "responses": ["a c", "c a", "a"], "scores": [1.0, 0.0, 0.5]}


def _assert_names(err: PreferenceDataError, row: int, field: str | None) -> None:
    """The error carries the row and field as attributes and names both in its message."""
    assert err.row == row
    assert err.field == field
    assert f"row {row}" in str(err)
    if field is not None:
        assert repr(field) in str(err)


# (bad row, field the error must name); each bad row is placed at index 1, after a good one.
BAD_PAIRS = {
    "missing_key": ({"prompt": "p", "chosen": "a"}, "rejected"),
    "empty_response": ({"prompt": "p", "chosen": "   ", "rejected": "a"}, "chosen"),
    "empty_token_list": ({"prompt": "p", "chosen": [4, 5], "rejected": []}, "rejected"),
    "wrong_type_int": ({"prompt": "p", "chosen": 3, "rejected": "a"}, "chosen"),
    "wrong_type_none": ({"prompt": "p", "chosen": "a", "rejected": None}, "rejected"),
    "wrong_type_float_tokens": ({"prompt": "p", "chosen": [4, 5.0], "rejected": "a"}, "chosen"),
    "wrong_type_bool_tokens": ({"prompt": "p", "chosen": [True], "rejected": "a"}, "chosen"),
    "wrong_type_prompt": ({"prompt": 1.5, "chosen": "a", "rejected": "b"}, "prompt"),
    "chosen_equals_rejected": ({"prompt": "p", "chosen": "a b", "rejected": "a b"}, "rejected"),
    "chosen_equals_rejected_ids": ({"prompt": "p", "chosen": [4, 5], "rejected": [4, 5]}, "rejected"),
    "strength_nan": ({**GOOD_PAIR, "strength": math.nan}, "strength"),
    "strength_inf": ({**GOOD_PAIR, "strength": math.inf}, "strength"),
    "strength_above_1": ({**GOOD_PAIR, "strength": 1.5}, "strength"),
    "strength_below_0": ({**GOOD_PAIR, "strength": -0.1}, "strength"),
    "strength_string": ({**GOOD_PAIR, "strength": "0.5"}, "strength"),
    "strength_bool": ({**GOOD_PAIR, "strength": True}, "strength"),
    "gold_empty": ({**GOOD_PAIR, "gold": " "}, "gold"),
    "gold_none": ({**GOOD_PAIR, "gold": None}, "gold"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAIRS))
def test_bad_pairwise_row_is_refused_naming_row_and_field(case):
    bad, field = BAD_PAIRS[case]
    with pytest.raises(PreferenceDataError, match=re.escape(f"row 1, field {field!r}: ")) as e:
        validate_pairwise([GOOD_PAIR, bad])
    _assert_names(e.value, 1, field)


BAD_LISTS = {
    "missing_key": ({"prompt": "p", "responses": ["a", "b"]}, "scores"),
    "one_response": ({"prompt": "p", "responses": ["a"], "scores": [1.0]}, "responses"),
    "no_responses": ({"prompt": "p", "responses": [], "scores": []}, "responses"),
    "responses_a_string": ({"prompt": "p", "responses": "a b", "scores": [1.0, 0.0]}, "responses"),
    "scores_length_mismatch": ({"prompt": "p", "responses": ["a", "b", "c"], "scores": [1.0, 0.0]}, "scores"),
    "scores_not_a_list": ({"prompt": "p", "responses": ["a", "b"], "scores": 1.0}, "scores"),
    "score_nan": ({"prompt": "p", "responses": ["a", "b"], "scores": [1.0, math.nan]}, "scores[1]"),
    "score_inf": ({"prompt": "p", "responses": ["a", "b"], "scores": [-math.inf, 0.0]}, "scores[0]"),
    "score_string": ({"prompt": "p", "responses": ["a", "b"], "scores": [1.0, "2"]}, "scores[1]"),
    "empty_response": ({"prompt": "p", "responses": ["a", " "], "scores": [1.0, 0.0]}, "responses[1]"),
    "wrong_type_response": ({"prompt": "p", "responses": ["a", 7], "scores": [1.0, 0.0]}, "responses[1]"),
}


@pytest.mark.parametrize("case", sorted(BAD_LISTS))
def test_bad_listwise_row_is_refused_naming_row_and_field(case):
    bad, field = BAD_LISTS[case]
    with pytest.raises(PreferenceDataError, match=re.escape(f"row 1, field {field!r}: ")) as e:
        validate_listwise([GOOD_LIST, bad])
    _assert_names(e.value, 1, field)


def test_listwise_ties_refused_only_when_not_allowed():
    tied = {"prompt": "p", "responses": ["a", "b", "c"], "scores": [0.5, 1.0, 0.5]}
    assert validate_listwise([GOOD_LIST, tied])[1]["scores"] == [0.5, 1.0, 0.5]
    with pytest.raises(PreferenceDataError, match=r"row 1, field 'scores': has ties") as e:
        validate_listwise([GOOD_LIST, tied], allow_ties=False)
    _assert_names(e.value, 1, "scores")
    assert "ties" in str(e.value)


@pytest.mark.parametrize("validate", [validate_pairwise, validate_listwise])
@pytest.mark.parametrize("bad", ["prompt chosen rejected", ["p", "a", "b"], None])
def test_non_mapping_row_is_refused_naming_row(validate, bad):
    good = GOOD_PAIR if validate is validate_pairwise else GOOD_LIST
    with pytest.raises(PreferenceDataError, match="row 1: must be a mapping of fields") as e:
        validate([good, bad])
    _assert_names(e.value, 1, None)
    assert "mapping" in str(e.value)


@pytest.mark.parametrize("validate", [validate_pairwise, validate_listwise])
def test_empty_dataset_is_refused(validate):
    with pytest.raises(PreferenceDataError, match="no rows") as e:
        validate(iter([]))
    assert e.value.row is None and e.value.field is None


def test_valid_pairwise_rows_pass_through_unchanged():
    rows = [
        dict(GOOD_PAIR),
        {"prompt": "", "chosen": "c", "rejected": "d", "strength": 0.75},  # empty prompt is allowed
        {"prompt": "p", "chosen": "c", "rejected": "d", "strength": None},  # None means a hard label
        {"prompt": "p", "chosen": "c", "rejected": "d", "extra": {"source": "x"}},  # extra fields are kept
    ]
    out = validate_pairwise(rows)
    assert out == rows
    assert all(o is not r for o, r in zip(out, rows)), "rows are copied, not aliased"


def test_integer_strength_becomes_float():
    out = validate_pairwise([{**GOOD_PAIR, "strength": 1}, {**GOOD_PAIR, "strength": 0}])
    assert [r["strength"] for r in out] == [1.0, 0.0]
    assert all(type(r["strength"]) is float for r in out)


def test_token_id_rows_are_accepted():
    rows = [
        {"prompt": [1, 9, 10], "chosen": (5, 6), "rejected": [6, 5, 2]},
        {"prompt": [], "chosen": [4], "rejected": [5]},
    ]
    assert validate_pairwise(rows) == rows


def test_identical_pair_accepted_when_allowed():
    row = {"prompt": "p", "chosen": "a", "rejected": "a"}
    assert validate_pairwise([row], allow_identical=True) == [row]


def test_listwise_scores_become_floats():
    out = validate_listwise([{"prompt": "p", "responses": ["a", [5, 6]], "scores": [1, 0]}])
    assert out[0]["scores"] == [1.0, 0.0] and all(type(s) is float for s in out[0]["scores"])
    assert out[0]["responses"] == ["a", [5, 6]]


def test_listwise_to_pairwise_all_pairs_skip_ties():
    rows = [{"prompt": "p", "responses": ["a", "b", "c", "d"], "scores": [0.1, 0.9, 0.5, 0.5]}]
    pairs = listwise_to_pairwise(rows, how="all")
    got = {(p["chosen"], p["rejected"]) for p in pairs}
    # c and d are tied at 0.5: that pair carries no preference and is skipped
    assert got == {("b", "c"), ("b", "d"), ("b", "a"), ("c", "a"), ("d", "a")}
    assert len(pairs) == 5
    assert all(p["prompt"] == "p" and set(p) == {"prompt", "chosen", "rejected"} for p in pairs)
    validate_pairwise(pairs)  # the output is valid pairwise data


def test_listwise_to_pairwise_best_worst():
    rows = [
        {"prompt": "p", "responses": ["a", "b", "c"], "scores": [0.5, 2.0, -1.0]},
        {"prompt": "q", "responses": ["x", "y"], "scores": [1.0, 1.0]},  # all tied: no pair
        {"prompt": "r", "responses": ["u", "v"], "scores": [0.0, 3.0]},
    ]
    with pytest.raises(PreferenceDataError, match=r"row 1, field 'scores': are all equal \(1.0\)") as e:
        listwise_to_pairwise(rows, how="best_worst")
    _assert_names(e.value, 1, "scores")
    pairs = listwise_to_pairwise(rows, how="best_worst", allow_all_tied=True)  # e.g. a policy's own samples
    assert pairs == [
        {"prompt": "p", "chosen": "b", "rejected": "c"},
        {"prompt": "r", "chosen": "v", "rejected": "u"},
    ]


def test_all_tied_lists_are_refused_unless_allowed_like_identical_pairs():
    rows = [GOOD_LIST, {"prompt": "q", "responses": ["x", "y", "z"], "scores": [0.5, 0.5, 0.5]}]
    with pytest.raises(PreferenceDataError, match="carries no preference") as e:
        validate_listwise(rows)
    _assert_names(e.value, 1, "scores")
    assert validate_listwise(rows, allow_all_tied=True)[1]["scores"] == [0.5] * 3
    partly = [{"prompt": "q", "responses": ["x", "y", "z"], "scores": [1.0, 0.5, 0.5]}]
    assert validate_listwise(partly) == partly  # a partial tie still ranks something


def test_listwise_to_pairwise_unknown_how_raises():
    with pytest.raises(ValueError, match="best_worst"):
        listwise_to_pairwise([GOOD_LIST], how="adjacent")


def test_listwise_to_pairwise_validates_its_input():
    with pytest.raises(PreferenceDataError, match="row 1, field 'responses': needs at least 2 responses") as e:
        listwise_to_pairwise([GOOD_LIST, {"prompt": "p", "responses": ["a"], "scores": [1.0]}])
    _assert_names(e.value, 1, "responses")


def test_hf_round_trip_keeps_trl_columns_and_values():
    rows = [
        {"prompt": "reverse : a b =", "chosen": "b a", "rejected": "a b", "strength": 0.9},
        {"prompt": "sort : b a =", "chosen": "a b", "rejected": "b a", "strength": 1.0},
    ]
    ds = to_hf_dataset(rows)
    assert ds.column_names == ["prompt", "chosen", "rejected", "strength"]
    assert ds["chosen"] == ["b a", "a b"]
    assert from_hf_dataset(ds) == rows


def test_hf_round_trip_token_ids():
    rows = [
        {"prompt": [1, 9], "chosen": [5, 6, 2], "rejected": [6, 2]},
        {"prompt": [1], "chosen": [4], "rejected": [7]},
    ]
    ds = to_hf_dataset(rows)
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    assert from_hf_dataset(ds) == rows


def test_hf_round_trip_listwise():
    ds = to_hf_dataset([GOOD_LIST], kind="listwise")
    assert ds.column_names == ["prompt", "responses", "scores"]
    assert from_hf_dataset(ds, kind="listwise") == [GOOD_LIST]


def test_hf_round_trip_keeps_strength_missing_from_the_first_row():
    # a soft label on any row must survive conversion, whichever row happens to come first
    rows = [
        {"prompt": "p", "chosen": "a", "rejected": "b"},
        {"prompt": "p", "chosen": "a", "rejected": "c", "strength": 0.7},
    ]
    ds = to_hf_dataset(rows)
    assert "strength" in ds.column_names
    back = from_hf_dataset(ds)
    assert back[1]["strength"] == 0.7
    assert back[0].get("strength") is None


def test_to_hf_dataset_validates_and_checks_kind():
    with pytest.raises(PreferenceDataError, match="row 1, field 'rejected': is identical") as e:
        to_hf_dataset([GOOD_PAIR, {"prompt": "p", "chosen": "a", "rejected": "a"}])
    _assert_names(e.value, 1, "rejected")
    with pytest.raises(ValueError, match="kind"):
        to_hf_dataset([GOOD_PAIR], kind="joint")


def test_from_hf_dataset_validates():
    import datasets

    ds = datasets.Dataset.from_dict(
        {"prompt": ["p", "q"], "chosen": ["a", "a"], "rejected": ["b", "b"], "strength": [1.0, 2.0]}
    )
    with pytest.raises(PreferenceDataError, match=r"row 1, field 'strength': must lie in \[0, 1\]") as e:
        from_hf_dataset(ds)
    _assert_names(e.value, 1, "strength")


def test_load_pairwise_and_listwise_from_json_and_jsonl(tmp_path):
    import json

    from prefkit.data import load_listwise, load_pairwise

    pairs = [GOOD_PAIR, {**GOOD_PAIR, "prompt": "q"}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    (tmp_path / "p.json").write_text(json.dumps(pairs))
    assert load_pairwise(str(tmp_path / "p.jsonl")) == load_pairwise(str(tmp_path / "p.json")) == pairs
    assert load_pairwise(str(tmp_path / "p.json"), limit=1) == pairs[:1]
    lists = [{"prompt": "p", "responses": ["a", "b", "c"], "scores": [1, 0.5, 0]}]
    (tmp_path / "l.jsonl").write_text(json.dumps(lists[0]) + "\n")
    assert load_listwise(str(tmp_path / "l.jsonl"))[0]["scores"] == [1.0, 0.5, 0.0]
    from prefkit.data import load_joint

    joint = [{"prompt_chosen": "p", "chosen": "a", "prompt_rejected": "q", "rejected": "b"}]
    (tmp_path / "j.json").write_text(json.dumps(joint))
    assert load_joint(str(tmp_path / "j.json")) == joint
    bad = [{**lists[0], "scores": [1, 0.5]}]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(PreferenceDataError, match="row 0, field 'scores': has 2 scores for 3 responses") as e:
        load_listwise(str(tmp_path / "bad.json"))
    _assert_names(e.value, 0, "scores")


@pytest.mark.parametrize("kind", ["pairwise", "listwise"])
def test_conversational_rows_are_refused_with_a_hint(tmp_path, kind):
    import json

    from prefkit.data import load_listwise, load_pairwise

    msgs = [{"role": "assistant", "content": "a"}]
    row = (
        {"prompt": "p", "chosen": msgs, "rejected": "b"}
        if kind == "pairwise"
        else {"prompt": "p", "responses": ["a", msgs], "scores": [1, 0]}
    )
    (tmp_path / "c.json").write_text(json.dumps([row]))
    with pytest.raises(PreferenceDataError, match="render it to text first") as e:
        (load_pairwise if kind == "pairwise" else load_listwise)(str(tmp_path / "c.json"))
    _assert_names(e.value, 0, "chosen" if kind == "pairwise" else "responses")


def test_sampled_lists_may_hold_empty_responses_when_asked():
    rows = [{"prompt": "p", "responses": ["a", ""], "scores": [1.0, 0.0]}]
    with pytest.raises(PreferenceDataError, match="empty"):
        listwise_to_pairwise(rows)
    assert listwise_to_pairwise(rows, allow_empty=True) == [{"prompt": "p", "chosen": "a", "rejected": ""}]


# ---- files: every format, every failure names the file and the line or row --------------------------------------


def _write_pairs_everywhere(tmp_path, rows):
    """The same pairwise rows as .jsonl, .JSONL, .json, .csv, .parquet and a save_to_disk folder."""
    import json

    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = {s: tmp_path / f"rows{s}" for s in (".jsonl", ".JSONL", ".json", ".csv", ".parquet")}
    paths[".jsonl"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths[".JSONL"].write_text("\n".join(json.dumps(r) for r in rows) + "\n  \n")  # a whitespace-only last line
    paths[".json"].write_text(json.dumps(rows))
    cols = list(rows[0])
    paths[".csv"].write_text(",".join(cols) + "\n" + "".join(",".join(str(r[c]) for c in cols) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), paths[".parquet"])
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    paths["saved"] = tmp_path / "saved"
    return paths


def test_every_file_format_and_a_saved_dataset_load_the_same_rows(tmp_path):
    from prefkit.data import load_pairwise

    rows = [{"prompt": "p", "chosen": "a", "rejected": "b", "strength": 0.75}, {**GOOD_PAIR, "strength": 1.0}]
    for kind, path in _write_pairs_everywhere(tmp_path, rows).items():
        assert load_pairwise(path) == rows, kind
        assert load_pairwise(str(path), limit=1) == rows[:1], kind


def test_listwise_csv_cells_hold_json_lists(tmp_path):
    from prefkit.data import load_listwise

    (tmp_path / "l.csv").write_text('prompt,responses,scores\np,"[""a"", ""b""]","[1, 0]"\n')
    assert load_listwise(tmp_path / "l.csv") == [{"prompt": "p", "responses": ["a", "b"], "scores": [1.0, 0.0]}]
    (tmp_path / "bad.csv").write_text('prompt,responses,scores\np,"[""a"", ""b""]","[1, 0]"\nq,a b,"[1, 0]"\n')
    with pytest.raises(PreferenceDataError, match=r"bad.csv, line 3, field 'responses': must be a JSON list") as e:
        load_listwise(tmp_path / "bad.csv")
    assert (e.value.line, e.value.field) == (3, "responses")


def _raises_located(load, path, line, row, field, match):
    with pytest.raises(PreferenceDataError, match=match) as e:
        load(path)
    err = e.value
    assert (err.line, err.row, err.field) == (line, row, field), str(err)
    assert str(path) in str(err) and err.source == str(path)
    if line is not None:
        assert f"line {line}" in str(err)
    return err


def test_bad_files_name_the_file_and_the_line(tmp_path):
    import json

    from prefkit.data import load_pairwise

    good = json.dumps(GOOD_PAIR)
    p = tmp_path / "broken.jsonl"
    p.write_text(f"{good}\n\n{good[:-5]}\n{good}\n")  # line 3 is cut short
    _raises_located(load_pairwise, p, 3, None, None, r"broken.jsonl, line 3: is not valid JSON")
    p = tmp_path / "gap.jsonl"  # validation errors after blank lines point at the file line, not the row index
    p.write_text(f"{good}\n   \n\n{json.dumps({**GOOD_PAIR, 'chosen': ''})}\n")
    _raises_located(load_pairwise, p, 4, 1, "chosen", r"gap.jsonl, line 4, row 1, field 'chosen': is empty")
    p = tmp_path / "missing.jsonl"
    p.write_text(f"{good}\n{json.dumps({'prompt': 'p', 'chosen': 'a'})}\n")
    _raises_located(load_pairwise, p, 2, 1, "rejected", r"line 2, row 1, field 'rejected': is missing")
    p = tmp_path / "not_rows.jsonl"
    p.write_text(f'{good}\n"just a string"\n')
    _raises_located(load_pairwise, p, 2, 1, None, r"line 2, row 1: must be a mapping of fields, got str")
    p = tmp_path / "object.json"
    p.write_text(json.dumps(GOOD_PAIR))
    _raises_located(load_pairwise, p, None, None, None, r"object.json: holds a JSON dict, expected a list of rows")
    p = tmp_path / "strings.json"
    p.write_text(json.dumps([GOOD_PAIR, "a"]))
    _raises_located(load_pairwise, p, None, 1, None, r"strings.json, row 1: must be a mapping of fields, got str")
    p = tmp_path / "bad.json"
    p.write_text("[\n" + good + ",\n{oops}\n]")
    _raises_located(load_pairwise, p, 3, None, None, r"bad.json, line 3: is not valid JSON")
    p = tmp_path / "tie.csv"
    p.write_text('prompt,chosen,rejected\np,a,b\n"two\nlines",a,a\n')  # a quoted cell spans lines 3-4
    _raises_located(load_pairwise, p, 4, 1, "rejected", r"tie.csv, line 4, row 1, field 'rejected': is identical")
    p = tmp_path / "empty_cell.csv"
    p.write_text("prompt,chosen,rejected\np,a,\n")
    _raises_located(load_pairwise, p, 2, 0, "rejected", r"line 2, row 0, field 'rejected': is empty")
    p = tmp_path / "cells.csv"
    p.write_text("prompt,chosen,rejected\np,a,b,c\n")
    _raises_located(load_pairwise, p, 2, None, None, r"cells.csv, line 2: has 4 cells for 3 columns")
    p = tmp_path / "strength.csv"
    p.write_text("prompt,chosen,rejected,strength\np,a,b,high\n")
    _raises_located(load_pairwise, p, 2, None, "strength", r"field 'strength': must be a number, got 'high'")
    p = tmp_path / "nan.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**GOOD_PAIR, "strength": 1.0}, {**GOOD_PAIR, "strength": float("nan")}]  # schema from row 0
    pq.write_table(pa.Table.from_pylist(rows), p)
    _raises_located(load_pairwise, p, None, 1, "strength", r"nan.parquet, row 1, field 'strength': must be finite")
    p = tmp_path / "junk.parquet"
    p.write_text("not parquet")
    _raises_located(load_pairwise, p, None, None, None, r"junk.parquet: is not a readable Parquet file")
    p = tmp_path / "rows.txt"
    p.write_text(good)
    _raises_located(load_pairwise, p, None, None, None, r"rows.txt: has an unsupported type '.txt'")
    p = tmp_path / "folder"
    p.mkdir()
    _raises_located(load_pairwise, p, None, None, None, r"folder: is a folder but not a dataset saved with")


def test_a_saved_dataset_without_the_split_says_which_it_has(tmp_path):
    import datasets

    from prefkit.data import load_pairwise

    datasets.DatasetDict({"test": datasets.Dataset.from_list([GOOD_PAIR])}).save_to_disk(str(tmp_path / "d"))
    assert load_pairwise(tmp_path / "d", split="test") == [GOOD_PAIR]
    _raises_located(load_pairwise, tmp_path / "d", None, None, None, r"has no split 'train' \(it has \['test'\]\)")


def test_a_path_that_does_not_exist_is_never_sent_to_the_hub(tmp_path, monkeypatch):
    import datasets

    from prefkit.data import load_pairwise, looks_like_hub_id

    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: asked.append((name, split)) or [GOOD_PAIR])
    for missing in ("missing_dir/rows.jsonl", "rows.JSONL", str(tmp_path / "rows.csv"), "./data", "a/b/c", "~/x"):
        assert not looks_like_hub_id(missing)
        _raises_located(load_pairwise, missing, None, None, None, "no such file or folder")
    assert asked == []
    assert looks_like_hub_id("trl-lib/ultrafeedback_binarized") and looks_like_hub_id("imdb")
    assert load_pairwise("trl-lib/ultrafeedback_binarized", split="test") == [GOOD_PAIR]
    assert asked == [("trl-lib/ultrafeedback_binarized", "test")]
    monkeypatch.chdir(tmp_path)  # a local folder of a Hub-like name wins over the Hub
    (tmp_path / "owner").mkdir()
    datasets.Dataset.from_list([{**GOOD_PAIR, "prompt": "local"}]).save_to_disk(str(tmp_path / "owner" / "name"))
    assert load_pairwise("owner/name")[0]["prompt"] == "local"
    assert len(asked) == 1
