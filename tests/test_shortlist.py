import itertools
import random

import numpy as np
import pytest

from prefkit.ranking import ndcg_at_k
from prefkit.worlds.shortlist import ShortlistWorld, dcg, parse_prompt


@pytest.fixture(scope="module")
def world():
    return ShortlistWorld(seed=0, n_train=300, n_eval=50)


def test_relevance_rule(world):
    assert world.item_relevance("q3", "x3") == 3  # topic 3
    assert world.item_relevance("q3", "x12") == 2  # topic 4 = 3 + 1
    assert world.item_relevance("q3", "x29") == 1  # topic 5 = 3 + 2
    assert world.item_relevance("q3", "x2") == 0
    assert world.item_relevance("q7", "x0") == 2  # wraps around: topic 0 = 7 + 1 mod 8
    assert world.item_relevance("q7", "x9") == 1


def test_prompts(world):
    assert len(world.train_prompts) == 300 and len(world.eval_prompts) == 50
    assert not set(world.train_prompts) & set(world.eval_prompts)
    assert ShortlistWorld(seed=0, n_train=300, n_eval=50).eval_prompts == world.eval_prompts
    assert ShortlistWorld(seed=1, n_train=300, n_eval=50).eval_prompts != world.eval_prompts
    for p in world.train_prompts[:50]:
        q, cands = parse_prompt(p)
        assert len(set(cands)) == 8 and sum(r > 0 for r in world.relevance(p)) >= world.min_relevant
        assert len(world.tokenizer(p)["input_ids"]) == 12  # <bos> q : 8 items =
        assert world.tokenizer.unk_token_id not in world.tokenizer(p)["input_ids"]


def test_feedback_marks_the_top_two(world):
    for p in world.train_prompts[:100]:
        rel = world.relevance(p)
        fb = world.feedback(p)
        assert 1 <= len(fb) <= 2
        top = sorted(rel, reverse=True)[:2]
        assert sorted(fb.values(), reverse=True) == [x for x in top if x > 0]
        _, cands = parse_prompt(p)
        assert all(rel[cands.index(i)] == g for i, g in fb.items())
        assert world.feedback(p) == fb  # the tie-break coin is fixed


def test_score_is_ndcg3(world):
    p = world.eval_prompts[0]
    _, cands = parse_prompt(p)
    rel = world.relevance(p)
    assert world.score(p, " ".join(cands[i] for i in world.ideal_order(p))) == pytest.approx(1.0)
    rng = random.Random(0)
    for _ in range(20):
        order = rng.sample(range(8), 8)
        assert world.score(p, " ".join(cands[i] for i in order)) == pytest.approx(ndcg_at_k(order, rel, 3))
    best = cands[world.ideal_order(p)[0]]
    assert world.score(p, f"{best} {best} {best}") == pytest.approx(world.score(p, best))  # repeats earn nothing
    assert world.score(p, "") == 0.0 and world.score(p, "x99 q1") == 0.0


def test_chance_ndcg_brute_force():
    w = ShortlistWorld(seed=2, n_train=10, n_eval=2, n_items=12, n_topics=4, n_candidates=5)
    for p in w.train_prompts[:4]:
        rel = w.relevance(p)
        brute = np.mean([ndcg_at_k(list(o), rel, 3) for o in itertools.permutations(range(5))])
        assert w.chance_ndcg(p) == pytest.approx(brute)


def test_demonstrations(world):
    rows = world.sft_rows(2, random.Random(0))
    assert len(rows) == 600
    for r in rows[:40]:
        assert sorted(r["response"].split()) == sorted(parse_prompt(r["prompt"])[1])
    noisy = np.mean([world.score(r["prompt"], r["response"]) for r in rows])
    clean = ShortlistWorld(seed=0, n_train=300, n_eval=50, demo_noise=0.0)
    exact = [clean.score(p, clean.demonstration(p, random.Random(0))) for p in clean.train_prompts[:50]]
    assert np.allclose(exact, 1.0) and 0.5 < noisy < 0.95  # noisy, but far better than chance (~0.34)


def test_dcg_and_errors():
    assert dcg([3, 0, 1], 3) == pytest.approx(7 + 0 + 1 / 2)
    with pytest.raises(ValueError, match="not a prompt"):
        parse_prompt("x1 x2 =")
    with pytest.raises(ValueError, match="feedback_k"):
        ShortlistWorld(n_train=5, n_eval=2, feedback_k=0)
