"""Joint preferences (DOVE / JPO): data, joint log-probs log π(x, y), the reduction to DPO when the prompts are equal,
and length-normalised DPO (Delta learning)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from prefkit.data import PreferenceDataError, pairwise_to_joint, validate_joint
from prefkit.logps import encode_joint, encode_pairs, sequence_logps
from prefkit.losses import dpo_loss, norm_dpo_loss
from prefkit.models import Reference
from prefkit.train import LN2, StepBatches, TrainConfig, preference_objective, train

JOINT = [
    {"prompt_chosen": "reverse : a b c =", "chosen": "c b a", "prompt_rejected": "sort : d a c =", "rejected": "d c"},
    {
        "prompt_chosen": "sort : h g =",
        "chosen": "g h",
        "prompt_rejected": "reverse sort : b a =",
        "rejected": "b a | a",
    },
]


def _logps(model, batch):
    return sequence_logps(model, batch["input_ids"], batch["attention_mask"], batch["response_mask"])[0]


def test_joint_log_probs_add_the_prompt_tokens(tok, model):
    joint, cond = encode_joint(tok, JOINT), encode_joint(tok, JOINT, mask_prompt=True)
    assert torch.equal(joint["input_ids"], cond["input_ids"])
    assert torch.equal(joint["prompt_mask"] + cond["response_mask"], joint["attention_mask"])
    prompt_only = dict(joint, response_mask=joint["prompt_mask"])
    torch.testing.assert_close(_logps(model, joint), _logps(model, cond) + _logps(model, prompt_only))
    assert (joint["response_mask"][:, 0] == 1).all()  # BOS is in the mask but, being first, never scored


def test_equal_prompts_make_dove_exactly_dpo(tok, model, pair_rows):
    ref = Reference(model)
    with torch.no_grad():  # a policy that differs from its reference, so the prompt terms are not zero
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    joint = encode_joint(tok, pairwise_to_joint(pair_rows))
    plain = encode_pairs(tok, pair_rows)
    B = len(pair_rows)
    pj, rj = _logps(model, joint), ref.logps(joint)[0]
    pp, rp = _logps(model, plain), ref.logps(plain)[0]
    assert (pj - pp).abs().min() > 1e-3  # the prompt tokens do change each log-prob ...
    dove = dpo_loss(pj[:B], pj[B:], rj[:B], rj[B:], beta=0.5)[0]
    dpo = dpo_loss(pp[:B], pp[B:], rp[:B], rp[B:], beta=0.5)[0]
    torch.testing.assert_close(dove, dpo, rtol=1e-5, atol=1e-6)  # ... but cancel in the margin


@pytest.mark.parametrize(
    "bad, field",
    [
        ({**JOINT[0], "prompt_rejected": ""}, "prompt_rejected"),
        ({k: v for k, v in JOINT[0].items() if k != "chosen"}, "chosen"),
        ({**JOINT[0], "prompt_rejected": JOINT[0]["prompt_chosen"], "rejected": JOINT[0]["chosen"]}, "rejected"),
    ],
)
def test_bad_joint_rows_name_row_and_field(bad, field):
    with pytest.raises(PreferenceDataError, match=re.escape(f"row 1, field {field!r}: ")) as e:
        validate_joint([JOINT[1], bad])
    assert e.value.row == 1 and e.value.field == field


def test_joint_training_starts_at_ln2_and_learns(tok, model, pair_rows):
    rows = (JOINT + pairwise_to_joint(pair_rows)) * 2  # conditional and joint pairs mixed, as DOVE trains
    ref = Reference(model)
    rows = ref.precompute(rows, tok)
    batches = StepBatches(rows, tok, batch_size=5, seed=0)
    assert "prompt_mask" in batches[0]
    hist = train(model, preference_objective(dpo_loss, ref, beta=0.5), batches,
                 TrainConfig(steps=15, lr=1e-2, progress=False))  # fmt: skip
    assert hist.steps["loss"].iloc[0] == pytest.approx(LN2, abs=1e-5)
    assert hist.steps["loss"].iloc[-3:].mean() < 0.6


def test_norm_dpo_closed_form():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-6.0, -9.0, -7.0, -8.0))
    lc, lr = torch.tensor([2]), torch.tensor([4])
    h = (-6.0 + 7.0) / 2 - (-9.0 + 8.0) / 4  # per-token log-ratio margin
    assert norm_dpo_loss(pc, pr, rc, rr, lc, lr, beta=5.0)[0].item() == pytest.approx(math.log1p(math.exp(-5 * h)))
    z = torch.zeros(1)
    assert norm_dpo_loss(z, z, z, z, lc, lr)[0].item() == pytest.approx(LN2)


@pytest.mark.parametrize("matched", [False, True])
def test_joint_pairs_compare_answers_to_different_prompts(matched):
    from prefkit.toy import joint_pairs
    from prefkit.worlds import StringWorld

    world = StringWorld(n_train=200, n_eval=4)
    prompts = world.train_prompts
    responses = [world.gold(p) if i % 2 else world.solve(p)[0] for i, p in enumerate(prompts)]
    rows = joint_pairs(world, prompts, responses, seed=1, matched=matched)
    assert len(rows) == len(prompts)
    validate_joint(rows)
    for r in rows:
        assert r["prompt_chosen"] != r["prompt_rejected"]
        want = world.rater_prob(r["prompt_chosen"], r["chosen"], r["rejected"], prompt2=r["prompt_rejected"])
        assert r["p_true"] == pytest.approx(want)
        if matched:
            assert world.difficulty(r["prompt_chosen"]) == world.difficulty(r["prompt_rejected"])
    # the rater is usually right: where the two sides' oracle scores differ, the chosen side mostly scores higher
    gaps = [
        world.score(r["prompt_chosen"], r["chosen"]) - world.score(r["prompt_rejected"], r["rejected"]) for r in rows
    ]
    decided = [g for g in gaps if g != 0]
    assert len(decided) > 20 and sum(g > 0 for g in decided) / len(decided) > 0.6


def test_prompt_logps_and_margin_parts(tok, model):
    from prefkit.evaluate import joint_margin_parts, prompt_logps

    b = encode_joint(tok, JOINT)
    lp, n = prompt_logps(model, tok, [r["prompt_chosen"] for r in JOINT])
    want = sequence_logps(model, b["input_ids"], b["attention_mask"], b["prompt_mask"])[0][: len(JOINT)]
    torch.testing.assert_close(torch.as_tensor(lp), want, rtol=1e-5, atol=1e-5)
    assert n.tolist() == (b["prompt_mask"][: len(JOINT)].sum(-1) - 1).tolist()  # BOS is not scored
    ref = Reference(model)
    at_start = joint_margin_parts(model, ref, tok, JOINT, beta=0.1)
    assert at_start["margin_prompt"] == at_start["margin_response"] == 0.0
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    parts = joint_margin_parts(model, ref, tok, JOINT, beta=0.1)
    pj, rj = _logps(model, b), ref.logps(b)[0]
    h = 0.1 * ((pj - rj)[:2] - (pj - rj)[2:])
    assert parts["margin_prompt"] + parts["margin_response"] == pytest.approx(h.mean().item(), abs=1e-5)
    assert 0.0 < parts["prompt_share"] < 1.0
