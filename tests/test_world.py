"""The string-operations world: operations, prompts, tokenizer, oracle, rater and pair building."""

from __future__ import annotations

import random

import pytest

from prefkit.logps import encode
from prefkit.worlds import StringWorld, apply_op, levenshtein
from prefkit.worlds.strings import split_steps


@pytest.fixture(scope="module")
def world() -> StringWorld:
    return StringWorld(seed=0, n_train=300, n_eval=64)


# ---- operations and gold ----------------------------------------------------------------------------------------


def test_ops_on_hand_examples():
    assert apply_op("reverse", list("cab")) == list("bac")
    assert apply_op("sort", list("dbca")) == list("abcd")
    assert apply_op("shift", list("agh")) == list("bha")  # h wraps to a
    assert apply_op("dedupe", list("babcab")) == list("bac")  # first occurrences, in order
    with pytest.raises(ValueError, match="unknown op 'rotate'"):
        apply_op("rotate", list("abc"))


def test_solve_and_gold(world):
    assert world.solve("reverse shift : c a b =") == ["b a c", "c b d"]
    assert world.gold("reverse shift : c a b =") == "b a c | c b d"
    assert world.gold("dedupe sort shift : h a h b =") == "h a b | a b h | b c a"


def test_levenshtein():
    assert levenshtein("abc", "abc") == 0
    assert levenshtein("abc", "") == 3
    assert levenshtein("abc", "acb") == 2
    assert levenshtein("kitten", "sitting") == 3


# ---- prompts ----------------------------------------------------------------------------------------------------


def test_prompts_deterministic_by_seed():
    a, b = StringWorld(seed=3, n_train=50, n_eval=20), StringWorld(seed=3, n_train=50, n_eval=20)
    c = StringWorld(seed=4, n_train=50, n_eval=20)
    assert a.train_prompts == b.train_prompts and a.eval_prompts == b.eval_prompts
    assert a.train_prompts != c.train_prompts
    assert a.fresh_prompts(10, n_ops=3) == b.fresh_prompts(10, n_ops=3)


def test_splits_disjoint_distinct_and_in_range(world):
    train, ev = world.train_prompts, world.eval_prompts
    assert len(train) == 300 and len(ev) == 64
    assert len(set(train)) == len(train) and len(set(ev)) == len(ev)
    assert not set(train) & set(ev)
    for p in train + ev:
        words = p.split()
        i = words.index(":")
        assert 1 <= i <= 3 and 3 <= len(words) - i - 2 <= 7 and words[-1] == "="


def test_prompts_with_ops_and_fresh(world):
    three = world.prompts_with_ops(3)
    assert three and all(p.split().index(":") == 3 for p in three)
    assert set(three) <= set(world.eval_prompts)
    fresh = world.fresh_prompts(40, n_ops=3)
    assert len(set(fresh)) == 40 and all(p.split().index(":") == 3 for p in fresh)
    assert not set(fresh) & (set(world.train_prompts) | set(world.eval_prompts))


# ---- tokenizer --------------------------------------------------------------------------------------------------


def test_tokenizer_round_trip(world):
    tok = world.tokenizer
    assert len(tok) == 19
    prompt = "reverse shift dedupe : c a b h ="
    response = world.gold(prompt)
    ids = tok(prompt)["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == prompt
    r_ids = tok(response, add_special_tokens=False)["input_ids"]
    assert tok.bos_token_id not in r_ids and tok.decode(r_ids) == response


def test_encode_format(world):
    prompt = "sort : c a b ="
    batch = encode(world.tokenizer, [prompt], [world.gold(prompt)])
    ids = batch["input_ids"][0].tolist()
    resp = [t for t, m in zip(ids, batch["response_mask"][0].tolist()) if m]
    assert world.tokenizer.decode(ids) == "<bos> sort : c a b = a b c <eos>"
    assert world.tokenizer.decode(resp) == "a b c <eos>"


# ---- demonstrations ---------------------------------------------------------------------------------------------


def test_demonstrations_noise():
    clean = StringWorld(n_train=50, n_eval=10, demo_noise=0.0)
    rng = random.Random(0)
    assert all(clean.demonstration(p, rng) == clean.gold(p) for p in clean.train_prompts)
    noisy = StringWorld(n_train=200, n_eval=10, demo_noise=0.5)
    demos = [noisy.demonstration(p, rng) for p in noisy.train_prompts]
    wrong = sum(d != noisy.gold(p) for p, d in zip(noisy.train_prompts, demos))
    assert 0.3 * len(demos) < wrong < len(demos)
    for p, d in zip(noisy.train_prompts, demos):  # same number of steps, letters only
        assert len(split_steps(d)) == len(noisy.solve(p))
        assert set(d.split()) <= set("abcdefgh|")


def test_demonstration_errors_propagate():
    w = StringWorld(n_train=10, n_eval=10, demo_noise=1.0)
    prompt = "shift shift : a b c d ="
    d = split_steps(w.demonstration(prompt, random.Random(0)))
    # the second step is the writer's (wrong) first step shifted, then corrupted again: it differs from gold
    assert d[0] != list("bcde") and d[1] != list("cdef")


def test_corrupt_always_changes():
    rng = random.Random(0)
    for s in (list("aaa"), list("a"), list("ab"), list("abcdefg")):
        for _ in range(50):
            assert StringWorld.corrupt(s, rng) != s


# ---- oracle -----------------------------------------------------------------------------------------------------


PROMPT = "reverse shift sort : c a b e ="  # gold: "e b a c | f c b d | b c d f"


def test_gold_scores_one(world):
    for p in world.eval_prompts:
        assert world.score(p, world.gold(p)) == 1.0
        assert world.step_scores(p, world.gold(p)) == [1.0] * len(world.solve(p))


def test_empty_and_garbage_score_zero(world):
    assert world.score(PROMPT, "") == 0.0
    assert world.score(PROMPT, "   ") == 0.0
    assert world.score(PROMPT, "= : sort") == 0.0
    assert world.score(PROMPT, "| | |") == 0.0


def test_extra_steps_never_raise_the_score(world):
    rng = random.Random(0)
    for p in world.eval_prompts:
        for base in (world.gold(p), world.demonstration(p, rng), world.solve(p)[0]):
            k = len(world.solve(p))
            steps = base.split(" | ")
            padded = " | ".join(steps + [world.solve(p)[-1]] * (k - len(steps)))  # at least k steps
            extra = padded + " | " + world.solve(p)[-1]
            assert world.score(p, extra) < world.score(p, padded) or world.score(p, padded) == 0
    assert world.score(PROMPT, world.gold(PROMPT) + " | b c d f") == pytest.approx(4 / 5)


def test_corrupted_step_lowers_score(world):
    assert world.score(PROMPT, "e b a c | f c b d | b c d g") < 1.0
    assert world.score(PROMPT, "e b a d | f c b d | b c d f") < 1.0
    # the final step weighs double: the same slip costs more there
    assert world.score(PROMPT, "e b a c | f c b d | b c d g") < world.score(PROMPT, "e b a d | f c b d | b c d f")
    assert world.step_scores(PROMPT, "e b a c | f c b d | b c d g") == [1.0, 1.0, 0.75]
    assert world.score(PROMPT, "e b a c | f c b d | b c d g") == pytest.approx((1 + 1 + 2 * 0.75) / 4)


def test_partial_credit_monotone_in_edit_distance(world):
    gold = world.solve(PROMPT)[:2]
    last = list("bcdf")
    scores = []
    for n_wrong in range(5):  # replace the first n_wrong letters of the final step: edit distance n_wrong
        step = ["h"] * n_wrong + last[n_wrong:]
        scores.append(world.score(PROMPT, " | ".join([*gold, " ".join(step)])))
    assert scores[0] == 1.0 and scores[-1] == pytest.approx(2 / 4)
    assert all(a > b for a, b in zip(scores, scores[1:]))


def test_missing_steps_and_non_letters(world):
    assert world.step_scores(PROMPT, "e b a c") == [1.0, 0.0, 0.0]
    assert world.score(PROMPT, "e b a c") == pytest.approx(1 / 4)
    assert world.step_scores(PROMPT, "e b a c sort | f c b d | b c d f")[0] == pytest.approx(1 - 1 / 5)
    assert world.step_scores("sort : c a b =", "a b c <unk>") == [pytest.approx(1 - 1 / 4)]


def test_score_in_unit_interval(world):
    rng = random.Random(1)
    words = "a b c d e f g h | | = reverse".split()
    for p in world.eval_prompts[:30]:
        for _ in range(10):
            r = " ".join(rng.choice(words) for _ in range(rng.randint(0, 30)))
            assert 0.0 <= world.score(p, r) <= 1.0


# ---- rater and pairs --------------------------------------------------------------------------------------------


def test_rater_prob_symmetric(world):
    good, bad = world.gold(PROMPT), "e b a c | f c b d | b c d g"
    assert world.rater_prob(PROMPT, good, good) == 0.5
    assert world.rater_prob(PROMPT, good, bad) > 0.5
    assert world.rater_prob(PROMPT, good, bad) + world.rater_prob(PROMPT, bad, good) == pytest.approx(1.0)


def test_build_pairs_distinct_and_dropped(world):
    prompts = world.eval_prompts[:6]
    cands = [[world.gold(p), world.gold(p) + " | a", world.gold(p), "= ="] for p in prompts]  # 3 distinct each
    cands[1] = [world.gold(prompts[1])] * 5  # all identical -> dropped
    cands[4] = ["a b"] * 3  # all identical garbage -> dropped
    rows, dropped = world.build_pairs(prompts, cands, random.Random(0))
    assert dropped == 2 and len(rows) == 4
    assert [r["prompt"] for r in rows] == [prompts[i] for i in (0, 2, 3, 5)]
    for r, c in zip(rows, [cands[i] for i in (0, 2, 3, 5)]):
        assert r["chosen"] != r["rejected"] and r["chosen"] in c and r["rejected"] in c
        assert r["p_true"] == pytest.approx(world.rater_prob(r["prompt"], r["chosen"], r["rejected"]))
        assert r["score_chosen"] == world.score(r["prompt"], r["chosen"])
        assert r["score_rejected"] == world.score(r["prompt"], r["rejected"])
    again, _ = world.build_pairs(prompts, cands, random.Random(0))
    assert again == rows
    with pytest.raises(ValueError, match=f"{len(prompts)} prompts for 2 candidate lists"):
        world.build_pairs(prompts, cands[:2], random.Random(0))


def test_build_pairs_follows_the_rater(world):
    # one pair seen many times: the chosen rate matches the rater's probability
    good, bad = world.gold(PROMPT), "e b a c | f c b d | b c d g"
    rows, _ = world.build_pairs([PROMPT] * 2000, [[good, bad]] * 2000, random.Random(0))
    rate = sum(r["chosen"] == good for r in rows) / len(rows)
    assert rate == pytest.approx(world.rater_prob(PROMPT, good, bad), abs=0.04)
