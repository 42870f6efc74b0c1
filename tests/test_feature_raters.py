"""Rater groups keyed to a response trait: exact level preferences, a cycle or its transitive control, sampled labels
that follow P, and the exact ceiling of any Bradley-Terry reward on a 3-cycle."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from prefkit.worlds.feature_raters import FeatureRaters
from prefkit.worlds.raters import RaterGroups

SHORT, MEDIUM, LONG = "a", "a b c", "a b c | d e f"  # 1, 3 and 7 tokens
RESPONSES = [SHORT, "b", "a b", MEDIUM, "a b c d", "a b | c d", LONG, "a b c | d e f | g"]


def test_levels_follow_the_trait_terciles():
    world = FeatureRaters.make(RESPONSES, transitive=False)
    assert world.cuts[0] < world.cuts[1]
    assert world.levels([SHORT, MEDIUM, LONG]).tolist() == [0, 1, 2]
    assert np.bincount(world.levels(RESPONSES), minlength=3).tolist() == [3, 2, 3]
    at_cuts = FeatureRaters("length", (2.0, 4.0), world.groups)  # a response on a cut belongs to the level above
    assert at_cuts.levels(["a", "a b", "a b c", "a b c d", "a b c d e"]).tolist() == [0, 1, 1, 2, 2]


@pytest.mark.parametrize("transitive", [False, True])
def test_exact_probabilities_are_the_groups_level_preferences(transitive):
    world = FeatureRaters.make(RESPONSES, transitive=transitive)
    assert world.transitive == transitive
    a, b = [SHORT, MEDIUM, LONG, SHORT], [MEDIUM, LONG, SHORT, "b"]
    p = world.prob(a, b)
    if transitive:  # low > mid 0.45 + 0.35, mid > high 0.45 + 0.20, high never beats low
        np.testing.assert_allclose(p, [0.80, 0.65, 0.0, 0.5])
    else:  # Condorcet: low > mid 0.45 + 0.20, mid > high 0.45 + 0.35, high > low 0.35 + 0.20
        np.testing.assert_allclose(p, [0.65, 0.80, 0.55, 0.5])
    np.testing.assert_allclose(world.prob(b, a), 1 - p)  # P(a > b) + P(b > a) = 1


def test_sampled_labels_follow_the_exact_probabilities():
    world = FeatureRaters.make(RESPONSES, transitive=False)
    rng = np.random.default_rng(0)
    a, b = [LONG] * 20000, [SHORT] * 20000
    assert abs(world.compare(a, b, rng).mean() - 0.55) < 0.015


def test_no_reward_follows_a_three_cycle_on_more_than_two_of_its_three_pairs():
    """Any reward r orders the three responses; a cyclic majority then disagrees with it on at least one pair, and
    some order agrees on two: Bradley-Terry's exact ceiling on a 3-cycle is 2/3 of the pairs."""
    P = RaterGroups.cyclic().preference_matrix()
    pairs = list(itertools.combinations(range(3), 2))
    best = 0.0
    for r in itertools.product(range(3), repeat=3):  # every weak order of three rewards, ties included
        agree = np.mean([(r[i] > r[j]) == (P[i, j] > 0.5) and r[i] != r[j] for i, j in pairs])
        best = max(best, agree)
    assert best == pytest.approx(2 / 3)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="unknown trait 'colour'"):
        FeatureRaters.make(RESPONSES, transitive=True, trait="colour")
    with pytest.raises(ValueError, match="single value"):
        FeatureRaters.make(["a", "b", "c"], transitive=True)
    world = FeatureRaters.make(RESPONSES, transitive=True)
    with pytest.raises(ValueError, match="2 first responses for 1 second"):
        world.prob([SHORT, LONG], [MEDIUM])
    with pytest.raises(ValueError, match="cuts must be increasing"):
        FeatureRaters("length", (3.0, 1.0), world.groups)
