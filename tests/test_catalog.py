"""The item-catalog world: catalog, oracle, preferences derived from histories, Mender's benchmark axes, validation."""

from __future__ import annotations

import numpy as np
import pytest

from prefkit.data import PreferenceDataError
from prefkit.worlds.catalog import (
    ATTRIBUTES,
    SPLITS,
    STEERING_ATTRIBUTES,
    VALUES,
    CatalogWorld,
    all_preference_texts,
    invert_preference,
    preference,
    shared_attributes,
)


@pytest.fixture(scope="module")
def world() -> CatalogWorld:
    return CatalogWorld(seed=0)


def _pairs(prefs: list[dict]) -> set[tuple[str, str]]:
    return {(p["attribute"], p["value"]) for p in prefs}


def _has(item: dict, pairs: set[tuple[str, str]]) -> bool:
    """Whether the item has any of the (attribute, value) pairs."""
    return any((a, item[a]) in pairs for a in ATTRIBUTES)


# ---- catalog and determinism ------------------------------------------------------------------------------------


def test_same_seed_same_world_other_seed_other_world(world):
    again, other = CatalogWorld(seed=0), CatalogWorld(seed=1)
    assert again.items == world.items and again.histories == world.histories and again.targets == world.targets
    assert again.preferences == world.preferences and again.splits == world.splits
    np.testing.assert_array_equal(again.utilities(3), world.utilities(3))
    for axis in ("recommendation_rows", "fine_steering_rows", "coarse_steering_rows", "sentiment_rows",
                 "consolidation_rows", "random_preference_rows"):  # fmt: skip
        assert getattr(again, axis)("test") == getattr(world, axis)("test")
    assert other.item_texts != world.item_texts and other.histories != world.histories


def test_catalog_items_and_titles(world):
    assert [it["id"] for it in world.items] == list(range(400))
    assert len(set(world.item_texts)) == 400  # no two items are the same product
    it = world.items[7]
    for a in ATTRIBUTES:
        assert it[a] in VALUES[a] and it[a] in world.item_text(7)
    assert world.attribute_matrix().sum(1).tolist() == [len(ATTRIBUTES)] * 400


def test_every_value_matches_enough_items(world):
    for a in ATTRIBUTES:
        for v in VALUES[a]:
            assert len(world.matching_items(a, v)) >= 10, (a, v)
    with pytest.raises(ValueError, match="min_items_per_value"):
        CatalogWorld(n_items=60, n_users=10, max_len=8)


def test_values_used_in_preferences_match_at_least_ten_items(world):
    rows = [r for s in SPLITS for r in world.consolidation_rows(s) + world.fine_steering_rows(s)
            + world.coarse_steering_rows(s)]  # fmt: skip
    used = {(p["attribute"], p["value"]) for r in rows for p in r["preferences"]}
    assert len(used) > 20
    assert all(len(world.matching_items(a, v)) >= 10 for a, v in used)


# ---- oracle and preferences ---------------------------------------------------------------------------------------


def test_oracle_ranks_liked_above_disliked(world):
    for u in range(0, world.n_users, 7):
        liked, disliked = _pairs(world.likes[u]), _pairs(world.dislikes[u])
        good = [i for i, it in enumerate(world.items) if _has(it, liked) and not _has(it, disliked)]
        bad = [i for i, it in enumerate(world.items) if _has(it, disliked) and not _has(it, liked)]
        assert min(world.utility(u, i) for i in good) > max(world.utility(u, i) for i in bad)
        top = world.true_top(u, 5)
        assert top[0] == int(np.argmax(world.utilities(u))) and all(_has(world.items[i], liked) for i in top)
        assert not set(world.true_top(u, 20, exclude=world.histories[u])) & set(world.histories[u])


def test_preferences_follow_latent_likes_and_dislikes(world):
    for u in range(world.n_users):
        prefs, history = world.preferences[u], world.histories[u]
        assert 5 <= len(history) <= 12 and world.targets[u] not in history
        positive = [p for p in prefs if p["sentiment"] == 1]
        negative = [p for p in prefs if p["sentiment"] == -1]
        assert positive, "every user states at least one like"
        assert _pairs(positive) <= _pairs(world.likes[u])
        assert _pairs(negative) == _pairs(world.dislikes[u])
        for p in positive:
            assert sum(world.items[i][p["attribute"]] == p["value"] for i in history) >= 2
        assert not _pairs(world.likes[u]) & _pairs(world.dislikes[u])


def test_histories_lean_towards_likes(world):
    """Softmax(u / T) draws: most history items carry a liked value, almost none a disliked one."""
    liked = disliked = total = 0
    for u in range(world.n_users):
        for i in world.histories[u]:
            it, total = world.items[i], total + 1
            liked += _has(it, _pairs(world.likes[u]))
            disliked += _has(it, _pairs(world.dislikes[u]))
    assert liked / total > 0.9 and disliked / total < 0.05


# ---- splits and benchmark rows ------------------------------------------------------------------------------------


def test_splits_are_disjoint_and_cover_users(world):
    sets = [set(world.splits[s]) for s in SPLITS]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set().union(*sets) == set(range(world.n_users))
    assert [len(s) for s in sets] == [350, 75, 75]
    assert {r["user"] for r in world.recommendation_rows("valid")} == sets[1]
    assert world.split_of(world.splits["test"][0]) == "test"


def test_recommendation_and_consolidation_rows(world):
    rows = world.recommendation_rows("train")
    assert all(len(r["preferences"]) == 1 and r["target"] == world.targets[r["user"]] for r in rows)
    assert {p["sentiment"] for r in rows for p in r["preferences"]} == {1, -1}
    positive_only = world.recommendation_rows("train", negative=False)
    assert positive_only and all(r["preferences"][0]["sentiment"] == 1 for r in positive_only)
    assert len(positive_only) < len(rows)
    for r in world.consolidation_rows("test"):
        assert r["preferences"] == world.preferences[r["user"]] and r["history"] == world.histories[r["user"]]
    rows[0]["history"].append(0)  # rows are copies: editing one leaves the world alone
    assert rows[0]["history"] != world.histories[rows[0]["user"]]


def test_fine_steering_moves_to_a_near_item(world):
    rows = world.fine_steering_rows("test")
    assert len(rows) > 0.7 * len(world.splits["test"])  # a few users have no row (see the docstrings)
    for r in rows:
        new, old = world.items[r["target"]], world.items[r["original_target"]]
        assert r["target"] != r["original_target"] and r["target"] not in r["history"]
        assert shared_attributes(new, old) == len(ATTRIBUTES) - 1  # shares all attributes but one
        (p,) = r["preferences"]
        assert p["sentiment"] == 1 and new[p["attribute"]] == p["value"] != old[p["attribute"]]


def test_coarse_steering_moves_far_with_swapped_histories(world):
    rows = world.coarse_steering_rows("test")
    assert len(rows) > 0.7 * len(world.splits["test"])  # a few users have no row (see the docstrings)
    for r in rows:
        new, old = world.items[r["target"]], world.items[r["original_target"]]
        assert new["category"] != old["category"] or new["style"] != old["style"]
        assert r["history_user"] != r["user"] and r["history"] == world.histories[r["history_user"]]
        (p,) = r["preferences"]
        a = p["attribute"]
        assert a in STEERING_ATTRIBUTES and new[a] == p["value"] != old[a]
        assert all(world.items[i][a] != p["value"] for i in r["history"] + world.histories[r["user"]])
        region = [i for i in world.matching_items(a, p["value"]) if i not in r["history"]]
        assert r["n_matching"] == len(region) >= 10
        assert r["target"] == max(region, key=lambda i: world.utility(r["user"], i))
    assert len({r["history_user"] for r in rows}) == len(rows)  # a permutation of the histories


def test_sentiment_rows_separate_target_and_negative_item(world):
    rows = world.sentiment_rows("test")
    assert len(rows) == sum(len(world.dislikes[u]) for u in world.splits["test"])
    for r in rows:
        (p,) = r["preferences"]
        a, v = p["attribute"], p["value"]
        assert p["sentiment"] == -1 and (a, v) in _pairs(world.dislikes[r["user"]])
        assert world.items[r["negative_item"]][a] == v and world.items[r["target"]][a] != v
        assert r["negative_item"] not in r["history"] and r["target"] not in r["history"]
        others = [i for i in world.matching_items(a, v) if i not in r["history"]]
        assert world.utility(r["user"], r["negative_item"]) == max(world.utility(r["user"], i) for i in others)


def test_random_preference_rows_come_from_another_user(world):
    matched, random = world.recommendation_rows("test"), world.random_preference_rows("test")
    assert len(matched) == len(random)
    for m, r in zip(matched, random):
        assert (m["user"], m["history"], m["target"]) == (r["user"], r["history"], r["target"])
        assert r["preference_user"] != r["user"] and r["preference_user"] in world.splits["test"]
        assert r["preferences"][0] in world.preferences[r["preference_user"]]
    assert len({r["preference_user"] for r in random}) > 20
    positive = world.random_preference_rows("test", negative=False)
    assert all(r["preferences"][0]["sentiment"] == 1 for r in positive)


# ---- validation ---------------------------------------------------------------------------------------------------


def test_generated_rows_validate(world):
    for axis in ("recommendation_rows", "fine_steering_rows", "coarse_steering_rows", "sentiment_rows",
                 "consolidation_rows", "random_preference_rows"):  # fmt: skip
        rows = getattr(world, axis)("valid")
        assert world.validate_rows(rows) == rows


@pytest.mark.parametrize(
    ("edit", "field", "message"),
    [
        (lambda r: r["history"].__setitem__(2, 999), "history", "position 2: unknown item id 999"),
        (lambda r: r["history"].__setitem__(0, "7"), "history", "item id must be an int"),
        (lambda r: r.__setitem__("history", []), "history", "non-empty"),
        (lambda r: r.__setitem__("target", -1), "target", "unknown item id -1"),
        (lambda r: r.__setitem__("negative_item", 400), "negative_item", "unknown item id 400"),
        (lambda r: r.__setitem__("user", 10_000), "user", "unknown user id"),
        (lambda r: r.pop("target"), "target", "missing"),
        (lambda r: r.__setitem__("preferences", []), "preferences", "non-empty"),
        (lambda r: r["preferences"][0].__setitem__("attribute", "size"), "preferences[0].attribute", "size"),
        (lambda r: r["preferences"][0].__setitem__("value", "purple"), "preferences[0].value", "purple"),
        (lambda r: r["preferences"][0].__setitem__("sentiment", 0), "preferences[0].sentiment", r"\+1 or -1"),
        (lambda r: r["preferences"][0].pop("text"), "preferences[0].text", "missing"),
    ],
)
def test_validation_names_row_and_field(world, edit, field, message):
    rows = world.sentiment_rows("test")[:3]
    edit(rows[1])
    with pytest.raises(PreferenceDataError, match=message) as e:
        world.validate_rows(rows)
    assert (e.value.row, e.value.field) == (1, field) and "row 1" in str(e.value)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="temperature"):
        CatalogWorld(temperature=0.0)
    with pytest.raises(ValueError, match="variants"):
        CatalogWorld(variants=4)
    with pytest.raises(ValueError, match="split_fractions"):
        CatalogWorld(split_fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="split must be"):
        CatalogWorld(n_users=10).recommendation_rows("dev")


# ---- the paper's target-matched preferences ---------------------------------------------------------------------


def test_inversion_states_a_negative_preference_positively():
    neg = preference("material", "plastic", -1, 1)
    inv = invert_preference(neg)
    assert inv == preference("material", "plastic", 1, 1)  # the same value and phrasing slot, now liked
    assert inv["sentiment"] == 1 and inv["text"] != neg["text"]
    pos = preference("colour", "red", 1)
    assert invert_preference(pos) == pos
    texts = all_preference_texts()
    assert inv["text"] in texts and neg["text"] in texts and len(texts) == len(set(texts)) == 40 * 2 * 2


def test_matching_candidates_follow_the_official_rule(world):
    u = world.splits["test"][0]
    prefs = world.preferences[u]
    for item in range(world.n_items):
        cands = world.matching_candidates(u, item)
        pos = [p for p in prefs if p["sentiment"] > 0 and world.items[item][p["attribute"]] == p["value"]]
        if pos:
            assert cands == pos  # likes the last item shows
        else:  # none: the negatives, inverted
            assert cands == [invert_preference(p) for p in prefs if p["sentiment"] < 0]
            assert all(c["sentiment"] == 1 for c in cands)


def test_matched_rows_pick_the_candidate_most_similar_to_the_target(world):
    def similarity(texts, target):  # the number of the target's values each text names: a transparent stand-in
        return np.array([sum(world.items[target][a] in t.split() for a in ATTRIBUTES) for t in texts], float)

    rows = world.matched_preference_rows("test", similarity)
    assert [r["user"] for r in rows] == world.splits["test"]  # one row per test user, the held-out target
    for r in rows:
        u = r["user"]
        assert r["history"] == world.histories[u] and r["target"] == world.targets[u]
        cands = world.matching_candidates(u, r["history"][-1])
        sims = similarity([c["text"] for c in cands], r["target"])
        assert r["preferences"] == [cands[int(np.argmax(sims))]] and r["n_candidates"] == len(cands)
    assert any(r["inverted"] for r in rows) and not all(r["inverted"] for r in rows)
    agree = np.mean([world.item_has(r["target"], r["preferences"][0]) for r in rows])
    control = world.matched_preference_rows("test", similarity, match=False)
    assert [r["user"] for r in control] == [r["user"] for r in rows]
    agree_c = np.mean([world.item_has(r["target"], r["preferences"][0]) for r in control])
    assert agree > agree_c  # looking at the target picks preferences the target has
    train = world.matched_preference_rows("train", similarity, prefixes=True)
    u = world.splits["train"][0]
    mine = [r for r in train if r["user"] == u]
    seq = [*world.histories[u], world.targets[u]]
    assert [(r["history"], r["target"]) for r in mine] == [(seq[:t], seq[t]) for t in range(2, len(seq))]
    world.validate_rows(rows + control)


def test_item_has_a_preferences_value(world):
    item = world.items[0]
    assert world.item_has(0, preference("colour", item["colour"], -1))
    other = next(v for v in VALUES["colour"] if v != item["colour"])
    assert not world.item_has(0, preference("colour", other, 1))


def test_matched_rows_refuse_a_bad_similarity(world):
    with pytest.raises(ValueError, match="finite scores"):
        world.matched_preference_rows("test", lambda texts, target: np.zeros(len(texts) + 1))
