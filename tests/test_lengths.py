"""The length policy: rows longer than max_length are cut as TRL cuts them, counted, and never left empty."""

from __future__ import annotations

import pytest
import torch

from prefkit.data import PreferenceDataError
from prefkit.logps import encode
from prefkit.train import StepBatches, TrainConfig, train

LONG = " ".join(["a b c d e f g h"] * 75)  # 600 tokens


def _ids(tok, text, special=False):
    return tok(text, add_special_tokens=special)["input_ids"]


def test_a_long_response_is_cut_from_the_right_at_the_models_context_and_counted(tok, model, pair_rows):
    from prefkit.losses import dpo_loss
    from prefkit.models import Reference
    from prefkit.train import preference_objective

    rows = [*pair_rows, {"prompt": "sort : a b =", "chosen": LONG, "rejected": "a b"}]
    batches = StepBatches(rows, tok, batch_size=4)
    assert batches.max_length is None
    objective = preference_objective(dpo_loss, Reference(model), beta=0.1)
    hist = train(model, objective, batches, TrainConfig(steps=1, lr=1e-3, progress=False))
    assert hist.steps["loss"].iloc[0] == pytest.approx(0.6931, abs=1e-3)  # the step-0 check passed on the cut batch
    context = model.config.max_position_embeddings
    assert batches.max_length == context
    assert batches.truncation == {"rows": 4, "cut": 1, "prompts_cut": 0, "responses_cut": 1}
    b = batches[0]
    assert b["input_ids"].shape[1] == context
    prompt = _ids(tok, "sort : a b =", special=True)
    long_row = (b["input_ids"][:, : len(prompt)] == torch.tensor(prompt)).all(-1) & (b["attention_mask"].sum(-1) > 10)
    (i,) = long_row.nonzero()[0].tolist()
    assert b["input_ids"][i].tolist() == prompt + _ids(tok, LONG)[: context - len(prompt)]  # the start kept, no EOS


def test_a_prompt_over_max_length_is_cut_from_the_left_keeping_bos_and_one_prompt_per_row(tok):
    prompt = "sort : " + " ".join(["a b c d"] * 10) + " ="  # 1 + 43 tokens
    rows = [{"prompt": prompt, "chosen": "a b c", "rejected": "a b c d e f"}]
    batches = StepBatches(rows, tok, batch_size=1, max_length=32)
    assert batches.truncation == {"rows": 1, "cut": 1, "prompts_cut": 1, "responses_cut": 0}
    b = batches[0]
    full = _ids(tok, prompt, special=True)
    kept = [tok.bos_token_id] + full[len(full) - (32 - 7 - 1) :]  # room for the longest response (6 + EOS)
    for k, y in enumerate(("a b c", "a b c d e f")):
        n = int(b["attention_mask"][k].sum())
        assert b["input_ids"][k, :n].tolist() == kept + _ids(tok, y) + [tok.eos_token_id]  # chosen and rejected alike
    assert b["input_ids"].shape[1] == 32 and int(b["response_mask"][0].sum()) == 4  # nothing of the response lost


def test_the_prompt_keeps_keep_prompt_tokens_and_the_response_gives_way(tok):
    rows = [{"prompt": "sort : " + "a " * 40 + "=", "response": LONG}]
    batches = StepBatches(rows, tok, batch_size=1, kind="sft", max_length=40, keep_prompt=10)
    b = batches[0]
    assert batches.truncation == {"rows": 1, "cut": 1, "prompts_cut": 1, "responses_cut": 1}
    assert int((b["attention_mask"] - b["response_mask"]).sum()) == 10 and int(b["response_mask"].sum()) == 30
    assert b["input_ids"][0, 0].item() == tok.bos_token_id
    default = StepBatches(rows, tok, batch_size=1, kind="sft", max_length=40)[0]
    assert int((default["attention_mask"] - default["response_mask"]).sum()) == 20  # default: half of max_length


def test_rows_that_fit_are_left_as_they_are(tok, pair_rows):
    plain, fitted = StepBatches(pair_rows, tok, 3), StepBatches(pair_rows, tok, 3, max_length=64)
    assert fitted.truncation["cut"] == 0 and fitted.rows == pair_rows
    for k in plain[0]:
        torch.testing.assert_close(fitted[0][k], plain[0][k])


def test_lists_and_joint_rows_are_fitted_per_prompt(tok):
    lists = [{"prompt": "sort : " + "a " * 30 + "=", "responses": ["a b", LONG, "c"], "scores": [1.0, 0.0, 0.5]}]
    b = StepBatches(lists, tok, 1, kind="listwise", max_length=48)[0]
    assert b["prompt_ids"].shape[1] == 24 and b["response_mask"].sum(-1).tolist() == [3, 24, 2]
    joint = [{"prompt_chosen": "sort : " + "a " * 30 + "=", "chosen": "a b", "prompt_rejected": "p =", "rejected": "b"}]
    batches = StepBatches(joint, tok, 1, max_length=20)
    assert batches.truncation == {"rows": 1, "cut": 1, "prompts_cut": 1, "responses_cut": 0}
    assert batches[0]["attention_mask"].sum(-1).tolist() == [20, len(_ids(tok, "p =", True)) + 2]


def test_cuts_that_would_lose_meaning_are_errors_naming_row_and_field(tok):
    unk = tok.unk_token  # a special token in the prompt, as an image token is in a vision-language prompt
    rows = [
        {"prompt": "a =", "chosen": "a", "rejected": "b"},
        {"prompt": f"{unk} " + "a " * 40, "chosen": "a", "rejected": "b"},
    ]
    with pytest.raises(PreferenceDataError, match=r"row 1, field 'prompt': would lose special tokens") as e:
        StepBatches(rows, tok, 2, max_length=16)
    assert (e.value.row, e.value.field) == (1, "prompt")
    spans = [{"prompt": "a =", "responses": ["a b", LONG], "scores": [1.0, 0.0], "step_spans": [[(0, 2)], [(0, 600)]]}]
    with pytest.raises(PreferenceDataError, match=r"row 0, field 'responses\[1\]': .* step spans cannot be cut"):
        StepBatches(spans, tok, 1, kind="listwise", max_length=64)
    with pytest.raises(ValueError, match="keep_prompt"):
        StepBatches(rows[:1], tok, 1, max_length=16, keep_prompt=16)


def test_encode_refuses_a_prompt_that_leaves_no_room_for_the_response(tok):
    with pytest.raises(ValueError, match=r"sequence 1: its prompt has 12 tokens, which leaves no room"):
        encode(tok, ["a =", "a " * 11], ["b", "b"], max_length=12)
    assert encode(tok, ["a ="], ["b c d e"], max_length=5)["response_mask"].sum().item() == 2
