"""A named reward model scores (prompt, response) texts: batched scores equal one-at-a-time scores, bad input errs."""

from __future__ import annotations

import pytest
import torch

from prefkit.reward import load_reward_model, reward_scores


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from prefkit.worlds import StringWorld

    tok = StringWorld(n_train=8, n_eval=4).tokenizer
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rm")
    LlamaForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_batched_scores_equal_single_text_scores(reward_dir):
    model, tok = load_reward_model(str(reward_dir), device="cpu")
    prompts = ["ab rev", "abc dup", "a rev"]
    responses = ["b a", "a b c a b c | x", "a"]  # different lengths: the batch pads the short ones
    batched = reward_scores(model, tok, prompts, responses, batch_size=3)
    single = [reward_scores(model, tok, [p], [r])[0] for p, r in zip(prompts, responses)]
    assert batched == pytest.approx(single, abs=1e-5)
    assert len(set(round(x, 6) for x in batched)) == 3  # the texts are told apart
    direct = model(**tok(["ab rev b a"], return_tensors="pt")).logits[0, 0].item()
    assert batched[0] == pytest.approx(direct, abs=1e-5)


def test_bad_input_is_named(reward_dir):
    model, tok = load_reward_model(str(reward_dir), device="cpu")
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        reward_scores(model, tok, ["a", "b"], ["x"])
    with pytest.raises(ValueError, match="row 1: prompt and response must be strings"):
        reward_scores(model, tok, ["a", "b"], ["x", None])


def test_a_classifier_with_two_labels_is_not_a_reward_model(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from prefkit.worlds import StringWorld

    tok = StringWorld(n_train=8, n_eval=4).tokenizer
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=2)  # fmt: skip
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_labels = 1"):
        load_reward_model(str(tmp_path), device="cpu")
