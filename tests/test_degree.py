"""RAKE keyword extraction, preference-degree variants, and the degree task added to a preference objective."""

from __future__ import annotations

import math
import random

import pytest
import torch

from prefkit.degree import DegreeConfig, DegreeHead, DegreeTask, add_degree_variants, degree_variant
from prefkit.losses import dpo_loss
from prefkit.models import Reference
from prefkit.rake import candidate_phrases, key_spans, rake
from prefkit.train import StepBatches, TrainConfig, preference_objective, train

# The worked example of Rose et al. 2010 (Fig. 1.1-1.4): its phrase scores are given in the paper.
ABSTRACT = (
    "Compatibility of systems of linear constraints over the set of natural numbers. Criteria of compatibility of a "
    "system of linear Diophantine equations, strict inequations, and nonstrict inequations are considered."
)
TOY = {"stopwords": (), "delimiters": ("|",)}


def test_rake_reproduces_the_papers_worked_example():
    scores = {k.text: k.score for k in rake(ABSTRACT)}
    assert scores["linear diophantine equations"] == pytest.approx(8.5)
    assert scores["linear constraints"] == pytest.approx(4.5)
    assert scores["natural numbers"] == pytest.approx(4.0)
    assert scores["nonstrict inequations"] == pytest.approx(4.0)
    assert scores["strict inequations"] == pytest.approx(4.0)
    assert rake(ABSTRACT)[0].text == "linear diophantine equations"


def test_rake_merges_repeated_phrases_and_keeps_every_span():
    text = "red apples | green pears | red apples"
    top = rake(text, **TOY)[0]
    assert top.text == "red apples" and len(top.spans) == 4
    assert [text[s:e] for s, e in top.spans] == ["red", "apples", "red", "apples"]


def test_candidate_phrases_split_at_stopwords_and_punctuation():
    assert [[w for w, *_ in p] for p in candidate_phrases("The cat sat, on the big mat.")] == [
        ["cat", "sat"],
        ["big", "mat"],
    ]
    assert candidate_phrases("the of and") == [] and key_spans("") == []


def test_key_spans_cover_a_third_of_the_content_words():
    text = "b a c | c b d e f"  # the longer step ranks first and already covers 5 of 8 words
    assert key_spans(text, **TOY) == [(8, 9), (10, 11), (12, 13), (14, 15), (16, 17)]


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_degree_variant_alters_the_promised_number_of_key_words_and_keeps_length(degree):
    text = "b a c | c b d e f"
    out = degree_variant(text, degree, 4, random.Random(degree), list("abcdefgh"), **TOY)
    assert len(out) == len(text) and out.split("|")[0] == text.split("|")[0]  # only key words change
    changed = sum(x != y for x, y in zip(out.split(), text.split()))
    assert changed == round(degree / 3 * 5)


def test_degree_variants_rows_labels_shuffle_and_errors():
    rows = [{"prompt": "p", "chosen": "a b c | d e", "rejected": "h g"} for _ in range(40)]
    cfg = DegreeConfig(n_degrees=3)
    out = add_degree_variants(rows, cfg, seed=1, **TOY)
    assert all(len(r["degree_texts"]) == 2 and all(0 <= d < 3 for d in r["degree_labels"]) for r in out)
    assert all(r["chosen"] == "a b c | d e" for r in out)  # the original rows are kept
    shuffled = add_degree_variants(rows, cfg, seed=1, shuffle_labels=True, **TOY)
    flat = lambda rs: [d for r in rs for d in r["degree_labels"]]  # noqa: E731
    assert sorted(flat(shuffled)) == sorted(flat(out)) and flat(shuffled) != flat(out)
    assert [r["degree_texts"] for r in shuffled] == [r["degree_texts"] for r in out]
    bad = [*rows[:3], {"prompt": "p", "chosen": "a", "rejected": ""}]
    with pytest.raises(ValueError, match=r"row 3, field 'rejected': no content word"):
        add_degree_variants(bad, cfg, **TOY)
    skipped = add_degree_variants(bad, cfg, no_content="skip", **TOY)
    assert skipped[3]["degree_skipped"] == ["rejected"] and len(skipped[3]["degree_texts"]) == 1
    with pytest.raises(ValueError, match=r"degree must lie in \[0, 3\)"):
        degree_variant("a b", 3, 3, random.Random(0), ["c"])


def test_degree_head_pools_only_response_tokens():
    head = DegreeHead(4, 3)
    h = torch.randn(2, 5, 4)
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 1, 1]])
    h2 = h.clone()
    h2[0, 0], h2[1, :2] = 99.0, -99.0  # prompt / padding positions must not matter
    torch.testing.assert_close(head(h, mask), head(h2, mask))


def test_degree_variants_record_their_sources():
    rows = [{"prompt": "p", "chosen": "a b c | d e", "rejected": ""}]
    out = add_degree_variants(rows, DegreeConfig(), no_content="skip", **TOY)
    assert out[0]["degree_sources"] == ["chosen"] and len(out[0]["degree_texts"]) == 1


def test_paired_head_sees_only_the_difference():
    """Degree 0 (the variant is its original) gives δ = 0, so the logits are the bias alone whatever W is; a head that
    read the variant alone, or the original alone, would not."""
    torch.manual_seed(0)
    head = DegreeHead(4, 3, paired=True)
    torch.nn.init.normal_(head.proj.weight)
    torch.nn.init.normal_(head.proj.bias)
    h, mask = torch.randn(2, 5, 4), torch.ones(2, 5)
    torch.testing.assert_close(head(h, mask, h.clone(), mask), head.proj.bias.expand(2, 3))
    other = torch.randn(2, 5, 4)
    assert not torch.allclose(head(other, mask, h, mask), head(h, mask, h, mask))
    with pytest.raises(ValueError, match="originals"):
        head(h, mask)
    with pytest.raises(ValueError, match="not paired"):
        DegreeHead(4, 3)(h, mask, h, mask)


def test_paired_head_features_are_delta_and_its_size():
    """W [δ, |δ|]: with W reading δ's first coordinate, a variant above its original scores positive (a flipped
    difference would score negative); with W reading |δ|, more changed tokens score higher, in either direction."""
    head = DegreeHead(2, 2, paired=True, scale=3.0)
    src, mask = torch.zeros(1, 6, 2), torch.ones(1, 6)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.weight[0, 0] = 1.0  # class 0 reads δ_0
        head.proj.weight[1, 2] = 1.0  # class 1 reads |δ_0|
    var = src.clone()
    var[0, :3, 0] = 1.0  # 3 of 6 tokens moved up by 1: δ_0 = 0.5
    torch.testing.assert_close(head(var, mask, src, mask), torch.tensor([[1.5, 1.5]]))  # scale 3 × (0.5, 0.5)
    down = src.clone()
    down[0, :, 0] = -1.0  # all 6 moved down: δ_0 = -1
    torch.testing.assert_close(head(down, mask, src, mask), torch.tensor([[-3.0, 3.0]]))


def test_head_starts_at_zero_and_rejects_bad_sizes():
    head = DegreeHead(4, 3, paired=True)
    assert head.proj.weight.shape == (3, 8) and not head.proj.weight.any() and not head.proj.bias.any()
    with pytest.raises(ValueError, match="at least 2"):
        DegreeHead(4, 1)
    with pytest.raises(ValueError, match="scale"):
        DegreeHead(4, 3, scale=0.0)


def test_paired_batch_carries_each_variants_original(tok, pair_rows):
    rows = add_degree_variants(pair_rows, DegreeConfig(), seed=0, **TOY)
    task = DegreeTask(DegreeHead(8, 4, paired=True), tok, lam=1.0)
    b = task.batch(rows)
    assert b["degree_input_ids"].shape[0] == b["degree_source_input_ids"].shape[0] == 6
    assert b["degree_labels"].shape == (6,)
    ids = b["degree_source_input_ids"] * b["degree_source_response_mask"]
    expected = [r[f] for r in rows for f in r["degree_sources"]]
    assert [o.split() for o in tok.batch_decode(ids, skip_special_tokens=True)] == [e.split() for e in expected]
    with pytest.raises(ValueError, match="degree_sources"):
        task.batch([{k: v for k, v in r.items() if k != "degree_sources"} for r in rows])
    assert "degree_source_input_ids" not in DegreeTask(DegreeHead(8, 4), tok, 1.0).batch(rows)


@pytest.mark.parametrize("paired", [False, True])
def test_degree_task_trains_the_head_and_keeps_the_step0_check(tok, model, pair_rows, paired):
    rows = add_degree_variants([dict(r) for r in pair_rows] * 6, DegreeConfig(n_degrees=2), seed=0, **TOY)
    torch.manual_seed(0)
    head = DegreeHead(model.config.hidden_size, 2, paired=paired, scale=10.0)
    task = DegreeTask(head, tok, lam=1.0)
    before = head.proj.weight.detach().clone()
    ref = Reference(model)
    batches = StepBatches(rows, tok, 6, seed=0, extra=task.batch)
    b0 = batches[0]
    assert b0["degree_labels"].shape == (12,)
    assert b0["degree_input_ids"].shape[0] == 12 and ("degree_source_input_ids" in b0) == paired
    objective = task.objective(preference_objective(dpo_loss, ref, beta=0.1))
    hist = train(model, objective, batches, TrainConfig(steps=12, lr=1e-2, progress=False))
    assert hist.steps["loss"].iloc[0] == pytest.approx(math.log(2), abs=1e-6)  # the preference part starts at ln 2
    assert hist.steps["degree/loss"].iloc[0] == pytest.approx(math.log(2), abs=1e-6)  # zero head: ln C, C = 2
    assert "degree/loss" in hist.steps and not torch.equal(before, head.proj.weight)
    assert hist.steps["degree/loss"].iloc[-4:].mean() < hist.steps["degree/loss"].iloc[:4].mean()
    right = task.correct(model, rows)
    assert len(right) == 2 * len(rows) and set(right) <= {0.0, 1.0}
    assert task.accuracy(model, rows) == pytest.approx(sum(right) / len(right))


def test_paired_head_trains_the_policy_through_the_variant_only(tok, model, pair_rows):
    """With the variant equal to its original, δ's gradient would vanish if both forwards carried gradient; the
    original is a fixed anchor, so the policy still gets the variant's gradient."""
    rows = add_degree_variants(pair_rows, DegreeConfig(n_degrees=2), seed=0, **TOY)
    rows = [{**r, "degree_texts": [r[f] for f in r["degree_sources"]]} for r in rows]  # every variant = its original
    head = DegreeHead(model.config.hidden_size, 2, paired=True)
    torch.nn.init.normal_(head.proj.weight)
    task = DegreeTask(head, tok, lam=1.0)
    logits = task.logits(model, task.batch(rows))
    torch.testing.assert_close(logits, head.proj.bias.expand_as(logits))  # δ = 0
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
