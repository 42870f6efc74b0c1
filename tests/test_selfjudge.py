"""Self-judged strengths, ranked pairing and the judge world."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest
import torch

from prefkit.selfjudge import (
    Judge,
    agreement,
    answer_probs,
    judge_accuracy,
    judge_strengths,
    oracle_strengths,
    ranked_pairs,
    self_judge,
)
from prefkit.worlds import JudgeStringWorld, StringWorld
from prefkit.worlds.grading import GradedJudgeWorld
from prefkit.worlds.judging import AlignedJudgeWorld, interleave


def test_self_judged_strengths_are_a_proper_preference_matrix(tok, model):
    judge = Judge("{prompt} {a} | {b} =", ("a", "b"))
    mats = self_judge(model, tok, judge, ["reverse : a b =", "sort : c ="], [["a b", "b a", "c"], ["c", "d"]])
    assert [m.shape for m in mats] == [(3, 3), (2, 2)]
    for m in mats:
        np.testing.assert_allclose(m + m.T, 1.0, atol=1e-6)  # both orders averaged: P(i > j) + P(j > i) = 1
        assert ((m >= 0) & (m <= 1)).all()
    q = answer_probs(model, tok, [judge.query("sort : c =", "c", "d"), judge.query("sort : c =", "d", "c")], ("a", "b"))
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-6)
    assert mats[1][0, 1] == pytest.approx(0.5 * (q[0, 0] + 1 - q[1, 0]), abs=1e-6)


def test_multi_token_answers_are_refused(tok, model):
    with pytest.raises(ValueError, match="is 2 tokens"):
        answer_probs(model, tok, ["a ="], ("a b", "c"))


def test_ranked_pairing_best_with_worst_then_inwards():
    ys = ["y0", "y1", "y2", "y3", "y4"]
    P = oracle_strengths([0.2, 0.9, 0.5, 0.1, 0.7])  # ranks: y1 > y4 > y2 > y0 > y3
    rows = ranked_pairs("p", ys, P)
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("y1", "y3"), ("y4", "y0")]
    assert all(r["strength"] == 1.0 and r["judged"] == 1.0 for r in rows)
    soft = np.full((4, 4), 0.5)
    soft[0, 3], soft[3, 0] = 0.8, 0.2
    soft[1, 2], soft[2, 1] = 0.5, 0.5  # a tie: no preference, no pair
    rows = ranked_pairs("p", ["a", "b", "c", "d"], soft)
    assert [(r["chosen"], r["rejected"], r["strength"]) for r in rows] == [("a", "d", 0.8)]
    hard = ranked_pairs("p", ["a", "b", "c", "d"], soft, hard=True)  # hard labels keep what the judge said
    assert [(r["strength"], r["judged"]) for r in hard] == [(1.0, 0.8)]
    assert ranked_pairs("p", ["a", "d", "a", "d"], oracle_strengths([1, 0, 1, 0])) == [
        {"prompt": "p", "chosen": "a", "rejected": "d", "strength": 1.0, "judged": 1.0},
        {"prompt": "p", "chosen": "a", "rejected": "d", "strength": 1.0, "judged": 1.0},
    ]
    assert ranked_pairs("p", ["a", "a"], oracle_strengths([1, 0])) == []  # identical texts: nothing to learn
    with pytest.raises(ValueError, match=r"must be \(3, 3\)"):
        ranked_pairs("p", ["a", "b", "c"], soft)


def test_judge_world_sft_rows_teach_judging_with_rater_labels():
    world = JudgeStringWorld(seed=0, n_train=50, n_eval=10, judge_per_prompt=2)
    rows = world.sft_rows(1, random.Random(0))
    judge_rows = [r for r in rows if r["prompt"].startswith("judge ")]
    assert len(rows) == 150 and len(judge_rows) == 100
    assert {r["response"] for r in judge_rows} == {"first", "second"}
    ids = world.tokenizer(judge_rows[0]["prompt"])["input_ids"]
    assert world.tokenizer.unk_token_id not in ids
    plain = StringWorld(seed=0, n_train=50, n_eval=10)
    assert plain.sft_rows(1, random.Random(0)) == rows[:50]  # the plain world's SFT data is unchanged


def test_interleave_lines_up_reference_and_answers_token_by_token():
    assert interleave("b c", "b c", "b d") == "b b b c c d"
    assert interleave("a b | c", "a", "a b | c d") == "a a a b _ b | _ | c _ c _ _ d"
    assert interleave("a " * 40, "b", "c", max_tokens=3) == "a b c a _ _ a _ _"


def _read_query(query: str) -> tuple[str, str, str, str]:
    """(prompt, reference, a, b) of an :class:`AlignedJudge` query, its interleaving undone."""
    p, aligned = re.fullmatch(r"judge (.+=) \? (.*) \?", query).groups()
    ref, a, b = (" ".join(w for w in aligned.split()[k::3] if w != "_") for k in range(3))
    return p, ref, a, b


def test_aligned_judge_world_teaches_each_comparison_in_both_orders():
    world = AlignedJudgeWorld(seed=0, n_train=60, n_eval=10, judge_per_prompt=4)
    rows = world.sft_rows(1, random.Random(0))
    lessons = rows[60:]
    assert rows[:60] == StringWorld(seed=0, n_train=60, n_eval=10).sft_rows(1, random.Random(0))
    assert len(lessons) == 60 * 4 and all(r["prompt"].startswith("judge ") for r in lessons)
    answers = [r["response"] for r in lessons]
    assert answers.count("first") == answers.count("second")  # the answer word says nothing about position
    for one, two in zip(lessons[::2], lessons[1::2]):
        p, ref, a, b = _read_query(one["prompt"])
        assert two["prompt"] == world.judge.query(p, b, a, ref)  # the same comparison and reference, order swapped
        assert one["prompt"] == world.judge.query(p, a, b, ref)
        assert (one["response"], two["response"]) == ("first", "second")
        assert world.score(p, a) > world.score(p, b)  # "first" names the better answer, never a tie
        assert ref == world.gold(p)  # a teacher's worked solution
        assert world.tokenizer.unk_token_id not in world.tokenizer(one["prompt"])["input_ids"]
    with pytest.raises(ValueError, match="must be even"):
        AlignedJudgeWorld(seed=0, n_train=10, n_eval=2, judge_per_prompt=3)


def _lessons(world):
    """(prompt, reference, first answer, second answer) of each comparison, read back from its first query."""
    out = []
    for one in world.sft_rows(1, random.Random(0))[len(world.train_prompts) :: 2]:
        assert one["response"] == "first"
        out.append(_read_query(one["prompt"]))
    return out


def test_graded_lessons_name_the_answer_closer_to_their_reference():
    world = GradedJudgeWorld(seed=0, n_train=100, n_eval=10, judge_per_prompt=4, copy_refs=0.0)
    for p, ref, a, b in _lessons(world):  # gold references: the lesson's answer is the oracle's
        assert ref == world.gold(p) and world.score(p, a) > world.score(p, b)
    world = GradedJudgeWorld(seed=0, n_train=100, n_eval=10, judge_per_prompt=4, copy_refs=1.0)
    lessons = _lessons(world)
    assert all(world.graded(ref, a) > world.graded(ref, b) for p, ref, a, b in lessons)
    copied = [(p, ref, a, b) for p, ref, a, b in lessons if ref != world.gold(p)]
    assert len(copied) > 100  # most of the 200 comparisons (a copy that grades both answers alike gives way)
    against = [world.score(p, a) < world.score(p, b) for p, ref, a, b in copied]
    assert 0.2 < sum(against) / len(copied) < 0.8  # the answer graded higher is often the oracle's worse one
    with pytest.raises(ValueError, match="copy_refs"):
        GradedJudgeWorld(seed=0, n_train=10, n_eval=2, copy_refs=1.5)
    with pytest.raises(ValueError, match="must be even"):
        GradedJudgeWorld(seed=0, n_train=10, n_eval=2, judge_per_prompt=3)


def test_graded_against_the_gold_answer_is_the_oracle_score():
    world = GradedJudgeWorld(seed=0, n_train=50, n_eval=2)
    rng = random.Random(3)
    for p in world.train_prompts:
        y = world.demonstration(p, rng)
        for r in (y, y + " | a b", y.split(" | ")[0], "", "a | | b"):
            assert world.graded(world.gold(p), r) == pytest.approx(world.score(p, r), abs=1e-12)
        assert world.graded(y, y) == 1.0
    quiet = GradedJudgeWorld(seed=0, n_train=5, n_eval=2, demo_noise=0.0)
    assert quiet.noisy_copy("a b | c d", rng) == "a b | c d"


def test_aligned_judge_world_has_its_own_cached_base():
    from prefkit.toy import ToyBaseConfig, _base_path

    cfg = ToyBaseConfig(steps=1)
    one_order = JudgeStringWorld(seed=0, n_train=10, n_eval=2, judge_per_prompt=4)
    aligned = AlignedJudgeWorld(seed=0, n_train=10, n_eval=2, judge_per_prompt=4)
    graded = GradedJudgeWorld(seed=0, n_train=10, n_eval=2, judge_per_prompt=4)
    paths = {_base_path(w, cfg, "toy-bases") for w in (one_order, aligned, graded)}
    assert len(paths) == 3


def test_agreement_counts_the_judge_right_when_it_prefers_chosen():
    np.testing.assert_array_equal(agreement(np.array([0.9, 0.5, 0.2, 0.51])), [1.0, 0.5, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        agreement(np.array([1.2]))


class _FixedAnswer(torch.nn.Module):
    """A judge that answers the same word whatever the query: pure position bias."""

    def __init__(self, vocab: int, favoured: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.vocab, self.favoured = vocab, favoured

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.favoured] = 3.0
        return type("Out", (), {"logits": logits})()


def test_a_position_biased_judge_is_at_chance_after_averaging_both_orders(tok):
    judge = Judge("{prompt} {a} | {b} =", ("a", "b"))
    rows = [{"prompt": "reverse : a b =", "chosen": "b a", "rejected": "a b"}, {"prompt": "sort : c =", "chosen": "c",
            "rejected": "d"}]  # fmt: skip
    biased = _FixedAnswer(len(tok), tok.convert_tokens_to_ids("a"))  # always "the first is better", q = σ(3)
    np.testing.assert_allclose(judge_strengths(biased, tok, judge, rows), 0.5, atol=1e-6)
    assert judge_accuracy(biased, tok, judge, rows) == 0.5  # ties count half
    with pytest.raises(ValueError, match="no labelled pairs"):
        judge_strengths(biased, tok, judge, [])


@pytest.mark.parametrize("arm", [{}, {"hard": True}, {"oracle": True}])
def test_osp_rounds_on_the_online_loop_equal_the_hand_written_rounds(tok, model, arm):
    """07_osp's rounds as `online_rounds` + `self_preference_label` train exactly the weights of its former loop
    (`self_preference_pairs`, then `run_arm` from the round's policy), in every arm."""
    from prefkit.losses import dpo_loss
    from prefkit.online import online_rounds
    from prefkit.selfjudge import self_preference_label, self_preference_pairs
    from prefkit.toy import run_arm
    from prefkit.train import TrainConfig

    world = StringWorld(n_train=8, n_eval=4)
    judge = Judge("{prompt} {a} | {b} =", ("a", "b"))
    oracle = world.score if arm.get("oracle") else None
    prompts, rounds = world.train_prompts[:6], 2
    config = lambda t: TrainConfig(steps=2, lr=1e-3, seed=100 + t, progress=False)  # noqa: E731
    policy = model
    for t in range(1, rounds + 1):
        rows, _ = self_preference_pairs(policy, tok, judge, prompts, 3, seed=1000 + t, hard=arm.get("hard", False),
                                        oracle=oracle)  # fmt: skip
        policy, _, _ = run_arm(policy, tok, rows, dpo_loss, config(t), batch_size=4, beta=0.1)
    label = self_preference_label(tok, judge, arm.get("hard", False), oracle)
    looped, log = online_rounds(model, tok, prompts, label, dpo_loss, config, rounds, k=3, batch_size=4,
                                sample_seed=lambda t: 1000 + t, beta=0.1)  # fmt: skip
    assert [r["round"] for r in log] == [1, 2] and all(r["pairs"] > 0 for r in log)
    for (name, a), b in zip(policy.named_parameters(), looped.parameters()):
        assert torch.equal(a, b), name
    assert not torch.equal(next(model.parameters()), next(looped.parameters()))  # the rounds did train


def test_self_preference_label_soft_hard_and_oracle_strengths(tok, model):
    """Soft rows train on the judged strength, hard rows on 1; oracle rows put the better-scored response first."""
    from prefkit.selfjudge import self_preference_label

    world = StringWorld(n_train=8, n_eval=4)
    judge = Judge("{prompt} {a} | {b} =", ("a", "b"))
    prompts = world.train_prompts[:4]
    samples = [[world.gold(p), world.gold(p).split(" |")[0], world.gold(p)[:3]] for p in prompts]
    soft = self_preference_label(tok, judge)(model, prompts, samples, 1)
    hard = self_preference_label(tok, judge, hard=True)(model, prompts, samples, 1)
    assert soft and [(r["chosen"], r["rejected"]) for r in soft] == [(r["chosen"], r["rejected"]) for r in hard]
    assert all(r["strength"] == r["judged"] != 1.0 for r in soft)
    assert all(r["strength"] == 1.0 and r["judged"] != 1.0 for r in hard)
    oracle = self_preference_label(tok, judge, oracle=world.score)(model, prompts, samples, 1)
    assert oracle and all(r["strength"] == 1.0 for r in oracle)
    assert all(world.score(r["prompt"], r["chosen"]) > world.score(r["prompt"], r["rejected"]) for r in oracle)
