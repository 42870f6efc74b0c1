"""Preference trees (Tree PO) and triples (Triple PO): the data type, step spans, the Tree-PO loss with Adaptive Step
Reward, per-step log-probs, and training through the one loop."""

from __future__ import annotations

import math
import re

import pytest
import torch

from prefkit.data import PreferenceDataError, PreferenceTree, StepNode, step_token_spans
from prefkit.logps import encode_lists, list_logps, list_step_logps
from prefkit.losses import lipo_lambda_loss, tree_po_loss, triple_po_loss
from prefkit.losses.listwise import adaptive_step_weights
from prefkit.models import Reference
from prefkit.train import StepBatches, TrainConfig, preference_objective, step_ids, train
from prefkit.worlds import StringWorld


def _tree() -> PreferenceTree:
    return PreferenceTree(
        "reverse sort : c a b =",
        [
            StepNode("b a c", 1.0, [StepNode("a b c", 1.0), StepNode("a c b", 0.5)]),
            StepNode("b c a", 0.4, [StepNode("a b c", 1.0), StepNode("c", 0.2)]),
        ],
    )


# ---- the data type ---------------------------------------------------------------------------------------------------


def test_tree_flattens_to_a_ranked_list_of_leaves():
    row = _tree().to_listwise()
    assert row["responses"] == ["b a c | a b c", "b a c | a c b", "b c a | a b c", "b c a | c"]
    assert row["scores"] == pytest.approx([1.0, 0.75, 0.7, 0.3])  # default score: the mean step reward
    assert row["step_rewards"][0] == [1.0, 1.0] and row["steps"][-1] == ["b c a", "c"]
    by_score = PreferenceTree("p", _tree().children).to_listwise(score=lambda steps, r: r[-1])  # last step only
    assert by_score["scores"] == [1.0, 1.0, 0.5, 0.2]


@pytest.mark.parametrize(
    "tree, field",
    [
        (PreferenceTree("p", [StepNode("a", 1.0), StepNode(" ", 0.0)]), "leaf 1 step 0 text"),
        (PreferenceTree("p", [StepNode("a", 1.0), StepNode("b", float("nan"))]), "leaf 1 step 0 reward"),
        (PreferenceTree("p", [StepNode("a", 1.0, [StepNode("b", 0.5)])]), "children"),
    ],
)
def test_bad_trees_name_the_row_and_field(tree, field):
    with pytest.raises(PreferenceDataError, match=re.escape(f"row 7, field {field!r}: ")) as e:
        tree.to_listwise(row=7)
    assert e.value.row == 7 and e.value.field == field


def test_step_token_spans_tile_the_response(tok):
    steps = ["b a c", "a b c", "c"]
    spans = step_token_spans(tok, steps)
    assert spans == [(0, 4), (4, 8), (8, 9)]  # "b a c |" "a b c |" "c": the separator closes its step
    ids = step_ids(torch.ones(1, 10, dtype=torch.long), [spans])  # + the closing EOS
    assert ids.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1, 2, 2]]


# ---- the loss ----------------------------------------------------------------------------------------------------------


def _steps(B=3, K=4, S=3, H=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "policy_step_logps": -5 * torch.rand(B, K, S, generator=g, dtype=torch.float64),
        "ref_step_logps": -5 * torch.rand(B, K, S, generator=g, dtype=torch.float64),
        "scores": torch.rand(B, K, generator=g, dtype=torch.float64),
        "step_hidden": torch.randn(B, K, S, H, generator=g, dtype=torch.float64),
        "step_mask": torch.ones(B, K, S, dtype=torch.float64),
    }


def test_without_asr_tree_po_is_lipo_lambda_on_the_sequence_log_ratios():
    x = _steps()
    got = tree_po_loss(**x, beta=0.3, asr=False)
    want = lipo_lambda_loss(x["policy_step_logps"].sum(-1), x["ref_step_logps"].sum(-1), x["scores"], beta=0.3)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])


def test_adaptive_step_weights_closed_form():
    h = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]], [[-1.0, 0.0]], [[1.0, 1.0]]]], dtype=torch.float64)  # (1, 4, 1, 2)
    scores = torch.tensor([[0.9, 0.1, 0.2, 0.3]], dtype=torch.float64)
    w = adaptive_step_weights(h, torch.ones(1, 4, 1, dtype=torch.float64), scores)
    torch.testing.assert_close(w[0, :, 0], torch.tensor([2.0, 1.0, 0.0, 1 + 1 / math.sqrt(2)], dtype=torch.float64))
    mask = torch.tensor([[[1.0], [0.0], [1.0], [1.0]]], dtype=torch.float64)
    assert adaptive_step_weights(h, mask, scores)[0, 1, 0].item() == 0.0  # a step the response lacks weighs nothing


def test_tied_best_leaves_share_the_adaptive_weights_whatever_their_order():
    h = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]], [[-1.0, 0.0]], [[1.0, 1.0]]]], dtype=torch.float64)
    scores = torch.tensor([[0.9, 0.9, 0.2, 0.3]], dtype=torch.float64)  # responses 0 and 1 tie for the best
    w = adaptive_step_weights(h, torch.ones(1, 4, 1, dtype=torch.float64), scores)[0, :, 0]
    c = 1 / math.sqrt(2)
    want = 1 + torch.tensor([(1 + 0) / 2, (0 + 1) / 2, (-1 + 0) / 2, (c + c) / 2], dtype=torch.float64)
    torch.testing.assert_close(w, want)  # the mean similarity to the tied best responses
    x = _steps(B=2, K=4, seed=3)
    x["scores"][:, 1] = x["scores"][:, 3] = x["scores"].amax(-1) + 1  # a tie at the top
    loss, s = tree_po_loss(**x)
    for perm in ([3, 0, 2, 1], [1, 2, 3, 0]):  # either tied leaf listed first
        xp = {k: v[:, torch.tensor(perm)] for k, v in x.items()}
        loss_p, s_p = tree_po_loss(**xp)
        torch.testing.assert_close(loss_p, loss)
        torch.testing.assert_close(s_p, s[:, torch.tensor(perm)])


def test_a_shared_prefix_step_cancels_in_every_pair():
    """Leaves that share their first step with the best leaf have the same hidden states and log-ratio there: shifting
    that step's log-ratio moves every reward equally and changes no pair."""
    x = _steps(B=2, K=4)
    x["step_hidden"][:, :, 0] = x["step_hidden"][:, :1, 0]  # all leaves share step 0
    x["policy_step_logps"][:, :, 0] = x["policy_step_logps"][:, :1, 0]
    x["ref_step_logps"][:, :, 0] = x["ref_step_logps"][:, :1, 0]
    base = tree_po_loss(**x)[0]
    shifted = dict(x, policy_step_logps=x["policy_step_logps"] + torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(tree_po_loss(**shifted)[0], base)


def test_tree_po_is_invariant_to_leaf_order_and_pushes_the_best_leaf_up():
    x = _steps(B=2, K=4, seed=1)
    loss, s = tree_po_loss(**x)
    perm = torch.tensor([2, 0, 3, 1])
    xp = {k: v[:, perm] for k, v in x.items()}
    loss_p, s_p = tree_po_loss(**xp)
    torch.testing.assert_close(loss_p, loss)
    torch.testing.assert_close(s_p, s[:, perm])
    x["policy_step_logps"].requires_grad_(True)
    (grad,) = torch.autograd.grad(tree_po_loss(**x)[0].sum(), x["policy_step_logps"])
    rows = torch.arange(2)
    assert (grad[rows, x["scores"].argmax(-1)] <= 0).all() and (grad[rows, x["scores"].argmax(-1)] < 0).any()
    assert (grad[rows, x["scores"].argmin(-1)] >= 0).all()


def test_tree_po_needs_hidden_states_for_asr():
    x = _steps()
    with pytest.raises(ValueError, match="asr=True needs step_hidden"):
        tree_po_loss(x["policy_step_logps"], x["ref_step_logps"], x["scores"])


def test_triple_po_closed_forms():
    c, r, g = torch.tensor([-6.0]), torch.tensor([-9.0]), torch.tensor([-4.0])
    lc, lr, lg = torch.tensor([3]), torch.tensor([2]), torch.tensor([4])
    got = triple_po_loss(c, r, g, lc, lr, lg, beta=0.5, alpha=0.7)[0].item()
    assert got == pytest.approx(math.log1p(math.exp(-0.5 * 3.0)) + 0.7 * 1.0)
    got_l = triple_po_loss(c, r, g, lc, lr, lg, beta=2.0, alpha=0.0, gamma=0.5, length_normalize=True)[0].item()
    assert got_l == pytest.approx(math.log1p(math.exp(-(2.0 * (-2.0 + 4.5) - 0.5))))


# ---- per-step log-probs and training -----------------------------------------------------------------------------------


def _tree_rows(tok, n=2):
    row = _tree().to_listwise()
    row["step_spans"] = [step_token_spans(tok, st) for st in row["steps"]]
    return [row] * n


def test_step_logps_sum_to_the_sequence_logps(tok, model):
    rows = _tree_rows(tok)
    batch = encode_lists(tok, [r["prompt"] for r in rows], [r["responses"] for r in rows])
    batch["step_ids"] = step_ids(batch["response_mask"], [sp for r in rows for sp in r["step_spans"]])
    for shared in (True, False):
        step_lp, hidden, mask = list_step_logps(model, batch, shared_prompt=shared)
        assert step_lp.shape == (2, 4, 2) and hidden.shape[:3] == (2, 4, 2) and mask.sum().item() == 16
        torch.testing.assert_close(step_lp.sum(-1), list_logps(model, batch)[0], rtol=1e-5, atol=1e-4)
    # leaves 0 and 1 share their first step ("b a c"): same hidden states and log-probs there
    torch.testing.assert_close(hidden[0, 0, 0], hidden[0, 1, 0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(step_lp[0, 0, 0], step_lp[0, 1, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("asr", [True, False])
def test_tree_po_trains_through_the_loop(tok, model, asr):
    ref = Reference(model)
    rows = ref.precompute_lists(_tree_rows(tok, 3), tok)
    assert len(rows[0]["ref_step_logps"][0]) == 2
    batches = StepBatches(rows, tok, batch_size=3, kind="listwise")
    hist = train(
        model,
        preference_objective(tree_po_loss, ref, beta=0.5, asr=asr),
        batches,
        TrainConfig(steps=15, lr=1e-2, progress=False),
    )
    first = hist.steps.iloc[0]
    assert first["rewards/best"] == pytest.approx(0.0, abs=1e-5)
    assert first["loss"] == pytest.approx(first["loss/at_reference"], abs=1e-5)
    assert hist.steps["loss"].iloc[-3:].mean() < first["loss"]


def test_triples_go_through_one_forward_and_train(tok, model, pair_rows):
    rows = [{**r, "gold": r["chosen"]} for r in pair_rows] * 2
    batch = StepBatches(rows, tok, batch_size=3)[0]
    assert batch["n_branches"] == 3 and batch["input_ids"].shape[0] == 9
    loss_fn = preference_objective(triple_po_loss, None, beta=0.1, alpha=1.0)
    assert not hasattr(loss_fn, "initial_loss")  # reference-free: nothing to check at step 0
    hist = train(model, loss_fn, StepBatches(rows, tok, 3), TrainConfig(steps=10, lr=1e-2, progress=False))
    assert hist.steps["loss"].iloc[-3:].mean() < hist.steps["loss"].iloc[0]


def test_sampled_trees_carry_the_oracle_step_rewards():
    from prefkit.models import TinyLlamaConfig, tiny_llama
    from prefkit.toy import sample_trees, tree_rows

    world = StringWorld(n_train=20, n_eval=4, min_ops=2, max_ops=2)
    m = tiny_llama(world.tokenizer, TinyLlamaConfig(hidden_size=64), seed=0)
    trees, short = sample_trees(world, m, world.train_prompts[:4], branching=(2, 2), seed=0, max_step_tokens=4)
    assert len(trees) == 4 and 0 <= short <= 4
    for t in trees:
        for path in t.paths():
            resp = " | ".join(n.text for n in path)
            want = world.step_scores(t.prompt, resp)
            assert [n.reward for n in path] == want[: len(path)]
    full = [t for t in trees if len(t.paths()) == 4]
    for row in tree_rows(world, full, world.tokenizer):
        assert row["scores"] == [world.score(row["prompt"], y) for y in row["responses"]]


def test_triples_rank_candidates_and_flips_are_nested():
    from prefkit.models import TinyLlamaConfig, tiny_llama
    from prefkit.toy import flip_labels, sample_triples

    world = StringWorld(n_train=40, n_eval=4)
    m = tiny_llama(world.tokenizer, TinyLlamaConfig(hidden_size=64), seed=0)
    rows, dropped = sample_triples(world, m, world.train_prompts, seed=0, max_new_tokens=8)
    assert len(rows) + dropped == 40
    for r in rows:
        assert r["score_gold"] >= r["score_chosen"] > r["score_rejected"]
        assert r["score_gold"] == world.score(r["prompt"], r["gold"])
    noisy = {f: flip_labels(rows, f, seed=3) for f in (0.0, 0.2, 0.6)}
    assert not any(r["flipped"] for r in noisy[0.0])
    low, high = (
        {i for i, r in enumerate(noisy[0.2]) if r["flipped"]},
        {i for i, r in enumerate(noisy[0.6]) if r["flipped"]},
    )
    assert low <= high and len(high) > len(low)
    for i in high:
        a, b = rows[i], noisy[0.6][i]
        assert (b["chosen"], b["rejected"], b["gold"]) == (a["rejected"], a["chosen"], a["gold"])
        assert b["score_chosen"] < b["score_rejected"]


def test_step_accuracy_counts_exact_steps():
    from prefkit.toy import step_accuracy

    world = StringWorld(n_train=10, n_eval=4)
    p = "reverse shift : c a b ="  # gold: "b a c | c b d"
    got = step_accuracy(world, [p, p], ["b a c | c b d", "b a c | c b e"])
    assert got == {"step_1": 1.0, "step_2": 0.5, "exact_match": 0.5}
