"""The logistic-regression simulation of Delta learning: its construction and the first-order effect it is about."""

from __future__ import annotations

import pytest

from prefkit.worlds.logistic import DeltaLogistic


def test_models_have_the_stated_cosines():
    sim = DeltaLogistic(d=50, a_s=0.9, a_c=0.6, a_r=0.3, n=16)
    cos = sim.run("sft", steps=0)
    assert cos == [pytest.approx(0.9)]


@pytest.mark.parametrize("gap", [-0.4, 0.4])
def test_a_small_dpo_step_follows_the_sign_of_the_teacher_gap_in_high_dimension(gap):
    c = DeltaLogistic(d=1000, a_c=0.5 + gap / 2, a_r=0.5 - gap / 2, n=20_000, seed=0).run("dpo", steps=1, lr=0.01)
    assert (c[1] - c[0] > 0) == (gap > 0)


def test_teachers_that_always_agree_give_dpo_nothing_to_learn():
    cos = DeltaLogistic(d=20, a_c=1.0, a_r=1.0, n=256, seed=3).run("dpo", steps=3, lr=1.0)
    assert cos == pytest.approx([0.9] * 4)


def test_sft_on_a_weaker_teacher_pulls_the_student_down():
    cos = DeltaLogistic(d=20, a_c=0.5, a_r=0.2, n=2048, seed=1).run("sft", steps=40, lr=1.0)
    assert cos[-1] < cos[0] - 0.1


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="'dpo' or 'sft'"):
        DeltaLogistic(d=5).run("ppo")
