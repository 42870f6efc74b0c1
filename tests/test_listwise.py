"""Listwise losses: reductions to DPO at K = 2, closed forms, permutation invariance, ties, gradient signs, gradcheck;
log-probs of K responses sharing a prompt; listwise training through the one loop."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from prefkit.logps import encode, encode_lists, flatten_lists, list_logps, naive_sequence_logps
from prefkit.losses import (
    LISTWISE,
    all_pairs_dpo_loss,
    best_worst_dpo_loss,
    dpo_loss,
    get_loss,
    lipo_lambda_loss,
    plackett_luce_loss,
    pro_loss,
)
from prefkit.losses.listwise import lambda_weights, model_ranks
from prefkit.models import Reference
from prefkit.train import SanityCheckError, StepBatches, TrainConfig, call_loss, preference_objective, train

LIST = sorted(LISTWISE - {"tree_po"})  # losses of (B, K) sequence log-probs; tree_po has its own tests below
REF_BASED = sorted(set(LIST) - {"pro"})


def _lists(B=5, K=4, seed=0, dtype=torch.float64, ties=True):
    g = torch.Generator().manual_seed(seed)
    pol = -20 * torch.rand(B, K, generator=g, dtype=dtype)
    ref = -20 * torch.rand(B, K, generator=g, dtype=dtype)
    scores = (
        torch.randint(0, 4, (B, K), generator=g).to(dtype) / 3 if ties else torch.rand(B, K, generator=g, dtype=dtype)
    )
    lengths = torch.randint(1, 9, (B, K), generator=g).to(dtype)
    return {"policy_logps": pol, "ref_logps": ref, "scores": scores, "lengths": lengths}


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


# ---- K = 2 reduces to DPO -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [all_pairs_dpo_loss, best_worst_dpo_loss, plackett_luce_loss])
def test_k2_equals_dpo(loss):
    x = _lists(B=6, K=2, ties=False)
    hi = (x["scores"][:, 0] > x["scores"][:, 1])[:, None]
    # order each pair as (chosen, rejected) for dpo_loss
    pc, pr = torch.where(hi, x["policy_logps"], x["policy_logps"].flip(-1)).unbind(-1)
    rc, rr = torch.where(hi, x["ref_logps"], x["ref_logps"].flip(-1)).unbind(-1)
    expected = dpo_loss(pc, pr, rc, rr, beta=0.3)[0]
    torch.testing.assert_close(call_loss(loss, **x, beta=0.3)[0], expected)


def test_k2_lipo_lambda_is_dpo_times_the_stated_constant():
    x = _lists(B=6, K=2, ties=False)
    x["scores"] = torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 3, dtype=torch.float64)
    pc, pr = x["policy_logps"].clone(), x["ref_logps"].clone()
    swap = x["scores"][:, 1] > x["scores"][:, 0]
    pc[swap], pr[swap] = pc[swap].flip(-1), pr[swap].flip(-1)
    dpo = dpo_loss(pc[:, 0], pc[:, 1], pr[:, 0], pr[:, 1], beta=0.1)[0]
    const = (2**1 - 1) * (1 / math.log(2) - 1 / math.log(3))  # |G_1 - G_2| |1/D(1) - 1/D(2)| ≈ 0.5327
    torch.testing.assert_close(call_loss(lipo_lambda_loss, **x, beta=0.1)[0], const * dpo)
    torch.testing.assert_close(call_loss(lipo_lambda_loss, **x, beta=0.1, normalize=True)[0], dpo)


# ---- closed forms ----------------------------------------------------------------------------------------------------


def test_lambda_weights_closed_form():
    """K = 3, ψ = (1, 0.5, 0), model ranks the list as (2nd, 1st, 3rd): τ = (2, 1, 3)."""
    scores = torch.tensor([[1.0, 0.5, 0.0]], dtype=torch.float64)
    s = torch.tensor([[0.2, 0.5, -1.0]], dtype=torch.float64)
    assert model_ranks(s, scores).tolist() == [[2.0, 1.0, 3.0]]
    G = [2**p - 1 for p in (1.0, 0.5, 0.0)]
    inv_d = [1 / math.log(1 + t) for t in (2, 1, 3)]
    w = lambda_weights(s, scores)[0]
    for i, j in itertools.product(range(3), repeat=2):
        want = abs(G[i] - G[j]) * abs(inv_d[i] - inv_d[j]) if i < j else 0.0
        assert w[i, j].item() == pytest.approx(want, rel=1e-12), (i, j)
    loss = lipo_lambda_loss(s / 0.05, torch.zeros_like(s), scores, beta=0.05)[0].item()
    want = -sum(w[i, j].item() * _logsig(s[0, i].item() - s[0, j].item()) for i in range(3) for j in range(3))
    assert loss == pytest.approx(want, rel=1e-10)


def test_model_ranks_break_ties_by_score_then_share_the_mean_rank():
    s = torch.zeros(1, 4, dtype=torch.float64)  # step 0: policy = reference
    assert model_ranks(s, torch.tensor([[0.1, 0.9, 0.5, 0.5]])).tolist() == [[4.0, 1.0, 2.5, 2.5]]
    noise = torch.tensor([[3e-7, -2e-7, 1e-7, -4e-7]], dtype=torch.float64)  # float rounding at step 0
    assert model_ranks(s + noise, torch.tensor([[0.1, 0.9, 0.5, 0.5]])).tolist() == [[4.0, 1.0, 2.5, 2.5]]
    assert model_ranks(s + 10 * noise, torch.tensor([[0.1, 0.9, 0.5, 0.5]])).tolist() == [[4.0, 1.0, 2.5, 2.5]]
    assert model_ranks(s + 100 * noise, torch.tensor([[0.1, 0.9, 0.5, 0.5]])).tolist() == [[1.0, 3.0, 2.0, 4.0]]


def test_plackett_luce_is_the_likelihood_of_the_order():
    x = _lists(B=3, K=4, ties=False, seed=2)
    s = 0.1 * (x["policy_logps"] - x["ref_logps"])
    got = plackett_luce_loss(x["policy_logps"], x["ref_logps"], x["scores"], beta=0.1)[0]
    for b in range(3):
        order = sorted(range(4), key=lambda k: -x["scores"][b, k].item())
        want = -sum(s[b, order[k]] - torch.logsumexp(s[b, order[k:]], 0) for k in range(4))
        assert got[b].item() == pytest.approx(want.item(), rel=1e-10)


def test_pro_closed_form_at_k2():
    pol = torch.tensor([[-4.0, -9.0]], dtype=torch.float64)
    lengths = torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    scores = torch.tensor([[0.2, 0.7]], dtype=torch.float64)
    r1, r2, gap = -2.0, -3.0, 0.5  # response 2 is better
    want = -(r2 * gap - math.log(math.exp(r2 * gap) + math.exp(r1 * gap))) + 0.05 * 3.0
    assert pro_loss(pol, lengths, scores, sft_weight=0.05)[0].item() == pytest.approx(want, rel=1e-12)


def test_pro_k3_by_hand_positive_takes_the_largest_gap():
    pol = torch.tensor([[-2.0, -6.0, -3.0]], dtype=torch.float64)
    lengths = torch.tensor([[1.0, 2.0, 1.0]], dtype=torch.float64)
    scores = torch.tensor([[0.9, 0.6, 0.1]], dtype=torch.float64)  # the order is 0, 1, 2
    r = [-2.0, -3.0, -3.0]
    # k = 0 beats 1 (gap .3) and 2 (gap .8): its own temperature is the largest gap, .8
    l0 = -(0.8 * r[0] - math.log(math.exp(0.8 * r[0]) + math.exp(0.3 * r[1]) + math.exp(0.8 * r[2])))
    l1 = -(0.5 * r[1] - math.log(math.exp(0.5 * r[1]) + math.exp(0.5 * r[2])))  # k = 1 beats 2 (gap .5)
    want = l0 + l1 + 0.1 * 2.0  # + sft_weight x per-token NLL of the best response
    assert pro_loss(pol, lengths, scores, sft_weight=0.1)[0].item() == pytest.approx(want, rel=1e-12)


def test_pro_with_equal_gaps_is_plackett_luce_on_length_normalised_logps():
    # with every score gap 1 (K = 2, or scores 1 and 0 only) the temperatures drop out: the ranking term is the
    # Plackett-Luce likelihood of r = log π / |y| (the T = 1 ablation of notebook 12 uses that form on any list)
    x = _lists(B=4, K=2, seed=7, ties=False)
    x["scores"] = (x["scores"] == x["scores"].amax(-1, keepdim=True)).to(x["scores"].dtype)
    got = pro_loss(x["policy_logps"], x["lengths"], x["scores"], sft_weight=0.0)[0]
    r = x["policy_logps"] / x["lengths"]
    torch.testing.assert_close(got, plackett_luce_loss(r, torch.zeros_like(r), x["scores"], beta=1.0)[0])
    a = pro_loss(x["policy_logps"], x["lengths"], x["scores"], sft_weight=0.0)[0]
    b = pro_loss(x["policy_logps"], x["lengths"], 2 * x["scores"], sft_weight=0.0)[0]
    assert not torch.allclose(a, b)  # larger gaps, sharper temperatures: the gaps do matter


# ---- invariances, ties, gradients -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LIST)
def test_permuting_a_list_with_its_scores_changes_nothing(name):
    x = _lists(B=5, K=5, seed=3)
    loss, rewards = call_loss(get_loss(name), **x)
    g = torch.Generator().manual_seed(1)
    perm = torch.stack([torch.randperm(5, generator=g) for _ in range(5)])
    xp = {k: v.gather(1, perm) for k, v in x.items()}
    loss_p, rewards_p = call_loss(get_loss(name), **xp)
    torch.testing.assert_close(loss_p, loss)
    torch.testing.assert_close(rewards_p, rewards.gather(1, perm))


@pytest.mark.parametrize("name", ["lipo_lambda", "dpo_all_pairs", "dpo_best_worst"])
def test_tied_scores_form_no_pair(name):
    x = _lists(B=4, K=3, seed=4)
    x["scores"] = torch.tensor([[0.5, 0.5, 0.5]] * 4, dtype=torch.float64)  # all tied: no pair at all
    assert call_loss(get_loss(name), **x)[0].abs().max().item() == 0.0
    # (0.9, 0.9, 0.1): moving the two tied responses against each other leaves the loss as it is
    x["scores"] = torch.tensor([[0.9, 0.9, 0.1]] * 4, dtype=torch.float64)
    x["policy_logps"].requires_grad_(True)
    loss = call_loss(get_loss(name), **x, beta=1.0)[0].sum()
    (grad,) = torch.autograd.grad(loss, x["policy_logps"])
    s = x["policy_logps"].detach() - x["ref_logps"]
    if name == "dpo_all_pairs":  # the two pairs (1, 3) and (2, 3) only: ∂L/∂s_1 = -σ(s_3 - s_1)
        torch.testing.assert_close(grad[:, 0], -torch.sigmoid(s[:, 2] - s[:, 0]))
    assert (grad[:, 2] > 0).all()


def test_all_tied_list_gives_zero_loss_for_pl_and_pro_ranking_term():
    x = _lists(B=2, K=3)
    x["scores"] = torch.full((2, 3), 0.4, dtype=torch.float64)
    pl = call_loss(plackett_luce_loss, **x)[0]
    s = 0.1 * (x["policy_logps"] - x["ref_logps"])
    torch.testing.assert_close(pl, -(s - torch.logsumexp(s, -1, keepdim=True)).sum(-1))  # one shared risk set
    pro = pro_loss(x["policy_logps"], x["lengths"], x["scores"], sft_weight=0.0)[0]
    assert pro.abs().max().item() == 0.0


@pytest.mark.parametrize("name", LIST)
def test_gradients_push_the_best_response_up_and_the_worst_down(name):
    x = _lists(B=4, K=4, seed=5, ties=False)
    x["policy_logps"].requires_grad_(True)
    loss = call_loss(get_loss(name), **x)[0].sum()
    (grad,) = torch.autograd.grad(loss, x["policy_logps"])
    best, worst = x["scores"].argmax(-1), x["scores"].argmin(-1)
    rows = torch.arange(4)
    assert (grad[rows, best] < 0).all()  # descending the loss raises log π of the best response
    assert (grad[rows, worst] > 0).all()


@pytest.mark.parametrize("name", LIST)
def test_gradcheck(name):
    x = _lists(B=2, K=3, seed=6, ties=False)
    fn = get_loss(name)

    def f(pol, ref):
        return call_loss(fn, **{**x, "policy_logps": pol, "ref_logps": ref})[0]

    assert torch.autograd.gradcheck(f, (x["policy_logps"].requires_grad_(), x["ref_logps"].requires_grad_()))


@pytest.mark.parametrize("name", LIST)
def test_rewards_are_detached_and_shaped(name):
    x = _lists(B=3, K=4)
    x["policy_logps"].requires_grad_(True)
    loss, rewards = call_loss(get_loss(name), **x)
    assert loss.shape == (3,) and rewards.shape == (3, 4)
    assert loss.requires_grad and not rewards.requires_grad


# ---- log-probs of K responses sharing a prompt ----------------------------------------------------------------------

PROMPTS = ["reverse : a b c =", "sort reverse : d a c h g =", "sort : b ="]
RESPONSES = [
    ["c b a", "a b c", "c a", "b"],
    ["a c d g h | h g d c a", "a c d | d c a", "h", "a c d g h | h g d c a | a"],
    ["b", "b b", "a", "c | c"],
]


@pytest.mark.parametrize("lora", [False, True])
def test_shared_prompt_logps_equal_the_per_sequence_ones(tok, model, lora):
    if lora:
        from prefkit.models import LoraSpec, add_lora

        model = add_lora(model, LoraSpec(r=4, target_modules=["q_proj", "v_proj"]))
        for n, p in model.named_parameters():  # non-zero adapters, so they matter
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.1)
    batch = encode_lists(tok, PROMPTS, RESPONSES)
    assert batch["prompt_ids"].shape[0] == 3 and batch["response_ids"].shape[0] == 12
    shared, n_shared = list_logps(model, batch, shared_prompt=True)
    flat, n_flat = list_logps(model, batch, shared_prompt=False)
    plain = encode(tok, [p for p in PROMPTS for _ in range(4)], [y for ys in RESPONSES for y in ys])
    naive, n_naive = naive_sequence_logps(model, **plain)
    torch.testing.assert_close(shared, naive.view(3, 4), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(flat, naive.view(3, 4), rtol=1e-5, atol=1e-4)
    assert n_shared.tolist() == n_flat.tolist() == n_naive.view(3, 4).tolist()
    torch.testing.assert_close(flatten_lists(batch)["input_ids"], plain["input_ids"] * plain["attention_mask"])
    # gradients through the shared prompt cache equal those of the plain computation
    params = [p for p in model.parameters() if p.requires_grad]
    g_shared = torch.autograd.grad((shared * torch.arange(12.0).view(3, 4)).sum(), params)
    shared2, _ = list_logps(model, batch, shared_prompt=False)
    g_flat = torch.autograd.grad((shared2 * torch.arange(12.0).view(3, 4)).sum(), params)
    for a, b in zip(g_shared, g_flat):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_encode_lists_needs_equal_list_sizes(tok):
    with pytest.raises(ValueError, match="same number of responses"):
        encode_lists(tok, PROMPTS[:2], [RESPONSES[0], RESPONSES[1][:3]])


# ---- listwise training through the one loop -------------------------------------------------------------------------


def _list_rows():
    scores = [[0.9, 0.2, 0.5, 0.0], [1.0, 0.6, 0.0, 0.3], [0.8, 0.1, 0.4, 0.2]]
    return [{"prompt": p, "responses": r, "scores": s} for p, r, s in zip(PROMPTS, RESPONSES, scores)] * 2


@pytest.mark.parametrize("name", REF_BASED)
def test_listwise_run_starts_at_its_reference_and_learns(tok, model, name):
    ref = Reference(model)
    rows = ref.precompute_lists(_list_rows(), tok)
    assert len(rows[0]["ref_logps"]) == 4
    batches = StepBatches(rows, tok, batch_size=3, kind="listwise")
    hist = train(
        model,
        preference_objective(get_loss(name), ref, beta=0.5),
        batches,
        TrainConfig(steps=20, lr=1e-2, progress=False),
    )
    first, last = hist.steps.iloc[0], hist.steps.iloc[-3:]
    assert first["rewards/best"] == pytest.approx(0.0, abs=1e-5)
    assert first["loss"] == pytest.approx(first["loss/at_reference"], abs=1e-5)
    assert last["rewards/pair_accuracy"].mean() > first["rewards/pair_accuracy"]
    assert last["loss"].mean() < first["loss"]


def test_listwise_sanity_check_catches_a_stale_reference(tok, model):
    ref = Reference(model)
    rows = ref.precompute_lists(_list_rows(), tok)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batches = StepBatches(rows, tok, batch_size=3, kind="listwise")
    with pytest.raises(SanityCheckError, match="does not start at its reference"):
        train(
            model, preference_objective(lipo_lambda_loss, ref, beta=0.5), batches, TrainConfig(steps=2, progress=False)
        )


def test_precomputed_reference_equals_the_live_one(tok, model):
    ref = Reference(model)
    rows = ref.precompute_lists(_list_rows()[:3], tok)
    batch = StepBatches(_list_rows()[:3], tok, batch_size=3, kind="listwise")[0]
    live, _ = ref.list_logps(batch)
    pre = StepBatches(rows, tok, batch_size=3, kind="listwise")[0]["ref_logps"]
    order = [r["prompt"] for r in StepBatches(rows, tok, 3, kind="listwise").rows]
    assert order == PROMPTS
    torch.testing.assert_close(live.sort(-1).values, pre.sort(-1).values, rtol=1e-5, atol=1e-4)


def test_best_worst_dpo_shares_the_weight_among_tied_best_and_tied_worst():
    s = torch.tensor([[0.3, -0.2, 0.5, 0.1]], dtype=torch.float64)  # implicit rewards at β = 1
    zero = torch.zeros_like(s)
    # one best (0) and two tied worst (1, 3): the mean of the two pairs' DPO losses
    got = best_worst_dpo_loss(s, zero, torch.tensor([[2.0, 0.0, 1.0, 0.0]], dtype=torch.float64), beta=1.0)[0]
    assert got.item() == pytest.approx(-(_logsig(0.3 + 0.2) + _logsig(0.3 - 0.1)) / 2, rel=1e-12)
    # two tied best (0, 2) and two tied worst (1, 3): the mean of the four pairs
    got = best_worst_dpo_loss(s, zero, torch.tensor([[2.0, 0.0, 2.0, 0.0]], dtype=torch.float64), beta=1.0)[0]
    assert got.item() == pytest.approx(-(_logsig(0.5) + _logsig(0.2) + _logsig(0.7) + _logsig(0.4)) / 4, rel=1e-12)


def test_pro_closed_form_at_k3_uses_the_largest_gap_as_its_own_temperature():
    pol = torch.tensor([[-2.0, -6.0, -3.0]], dtype=torch.float64)
    lengths = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    scores = torch.tensor([[0.9, 0.1, 0.5]], dtype=torch.float64)
    r = [-2.0, -3.0, -1.0]  # r(y) = log π(y|x) / |y|
    # response 0 beats 1 (gap .8) and 2 (gap .4): 1/T_0^0 is the largest gap, .8
    l0 = -(0.8 * r[0] - math.log(math.exp(0.8 * r[0]) + math.exp(0.8 * r[1]) + math.exp(0.4 * r[2])))
    l2 = -(0.4 * r[2] - math.log(math.exp(0.4 * r[2]) + math.exp(0.4 * r[1])))  # response 2 beats 1 (gap .4)
    want = l0 + l2 + 0.1 * -r[0]  # response 1 beats nothing; + sft_weight · per-token NLL of the best response
    assert pro_loss(pol, lengths, scores, sft_weight=0.1)[0].item() == pytest.approx(want, rel=1e-12)
