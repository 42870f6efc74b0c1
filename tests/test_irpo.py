import math

import pytest
import torch
import torch.nn.functional as F

from prefkit.losses.inrank import irpo_loss, irpo_weights


def brute_irpo(pol, ref, rel, beta):
    """IRPO loss written item by item with explicit loops (official rdpo_loss, verify notes section 9)."""
    out = []
    for b in range(pol.shape[0]):
        N = pol.shape[1]
        r = [beta * (float(pol[b, i]) - float(ref[b, i])) for i in range(N)]
        total = 0.0
        for i in range(N):
            w = (2.0 ** float(rel[b, i]) - 1.0) / math.log2(1 + (i + 1))
            lse = math.log(sum(math.exp(r[j] - r[i]) for j in range(N) if j != i))
            total += -w * math.log(1.0 / (1.0 + math.exp(lse - math.log(N - 1))))
        out.append(total / N)
    return torch.tensor(out, dtype=torch.float64)


def test_matches_item_by_item_formula():
    g = torch.Generator().manual_seed(0)
    for N in (2, 3, 5, 8):
        pol, ref = (
            torch.randn(4, N, generator=g, dtype=torch.float64),
            torch.randn(4, N, generator=g, dtype=torch.float64),
        )
        rel = torch.randint(0, 4, (4, N), generator=g).double()
        losses, rewards = irpo_loss(pol, ref, rel, beta=0.7)
        torch.testing.assert_close(losses, brute_irpo(pol, ref, rel, 0.7))
        torch.testing.assert_close(rewards, 0.7 * (pol - ref))


def test_two_items_is_weighted_dpo():
    # N = 2: log Σ_{j≠i} exp(r_j - r_i) = r_j - r_i and log(N - 1) = 0, so each term is log σ(r_i - r_j)
    pol = torch.tensor([[-1.0, -2.5], [0.3, -0.2]], dtype=torch.float64)
    ref = torch.tensor([[-1.5, -1.0], [0.0, 0.0]], dtype=torch.float64)
    rel = torch.tensor([[3.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    beta = 0.5
    r = beta * (pol - ref)
    w1, w2 = 2.0 ** rel[:, 0] - 1.0, (2.0 ** rel[:, 1] - 1.0) / math.log2(3.0)
    expected = -0.5 * (w1 * F.logsigmoid(r[:, 0] - r[:, 1]) + w2 * F.logsigmoid(r[:, 1] - r[:, 0]))
    torch.testing.assert_close(irpo_loss(pol, ref, rel, beta=beta)[0], expected)


def test_at_reference_is_ln2_times_mean_weight():
    rel = torch.tensor([[2.0, 0.0, 3.0, 1.0]])
    x = torch.randn(1, 4)
    losses, rewards = irpo_loss(x, x, rel)
    assert torch.all(rewards == 0)
    torch.testing.assert_close(losses, math.log(2) * irpo_weights(rel).mean(-1))


def test_competitors_order_does_not_matter_and_rows_are_independent():
    g = torch.Generator().manual_seed(1)
    pol, ref = torch.randn(3, 6, generator=g, dtype=torch.float64), torch.randn(3, 6, generator=g, dtype=torch.float64)
    rel = torch.tensor([[3.0, 2.0, 0, 0, 0, 0], [0, 3.0, 0, 0, 1.0, 0], [2.0, 0, 0, 0, 0, 0]], dtype=torch.float64)
    base = irpo_loss(pol, ref, rel)[0]
    # unmarked items (weight 0) only enter as competitors: permuting them among their positions changes nothing
    for perm in ([0, 1, 5, 4, 3, 2], [0, 1, 3, 2, 5, 4]):
        p = torch.tensor(perm)
        keep = (rel[0] > 0)[p] == (rel[0] > 0)
        assert bool(keep.all())
        torch.testing.assert_close(irpo_loss(pol[:1, p], ref[:1, p], rel[:1, p])[0], base[:1])
    rows = torch.tensor([2, 0, 1])
    torch.testing.assert_close(irpo_loss(pol[rows], ref[rows], rel[rows])[0], base[rows])


def test_position_weight_prefers_top():
    # the same marked item costs more at rank 1 than at rank 3 (weight 1/log2(2) vs 1/log2(4))
    pol = torch.tensor([[-3.0, -1.0, -1.0]])
    ref = torch.zeros(1, 3)
    top = irpo_loss(pol, ref, torch.tensor([[2.0, 0, 0]]))[0]
    third = irpo_loss(pol[:, [1, 2, 0]], ref, torch.tensor([[0, 0, 2.0]]))[0]
    torch.testing.assert_close(top / third, torch.tensor([2.0]))


def test_gradient_raises_marked_lowers_competitors():
    pol = torch.zeros(1, 4, requires_grad=True)
    irpo_loss(pol, torch.zeros(1, 4), torch.tensor([[0.0, 3.0, 0.0, 0.0]]))[0].sum().backward()
    assert pol.grad[0, 1] < 0  # descent raises the marked item's log-prob
    assert torch.all(pol.grad[0, [0, 2, 3]] > 0)  # and lowers the others'


def test_gradcheck():
    g = torch.Generator().manual_seed(2)
    pol = torch.randn(2, 5, generator=g, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(2, 5, generator=g, dtype=torch.float64)
    rel = torch.tensor([[3.0, 0, 1.0, 0, 2.0], [0, 0, 0, 3.0, 0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: irpo_loss(p, ref, rel, beta=0.8)[0], (pol,))


@pytest.mark.parametrize("weighting", ["dcg", "position", "linear"])
def test_weights(weighting):
    rel = torch.tensor([[3.0, 0.0, 1.0]])
    w = irpo_weights(rel, weighting)
    expected = {
        "dcg": [7.0, 0.0, 1.0 / 2.0],
        "position": [1.0, 1.0 / math.log2(3), 0.5],
        "linear": [7.0, 0.0, 1.0 / 3.0],
    }[weighting]
    torch.testing.assert_close(w, torch.tensor([expected]))


def test_bad_input():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="at least 2 items"):
        irpo_loss(torch.zeros(2, 1), torch.zeros(2, 1), torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"row 1: relevance\[2\] = nan"):
        irpo_loss(x, x, torch.tensor([[0.0, 1, 0], [0, 0, float("nan")]]))
    with pytest.raises(ValueError, match=r"row 0: relevance\[1\] = -1"):
        irpo_loss(x, x, torch.tensor([[0.0, -1, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="ref_item_logps has shape"):
        irpo_loss(x, torch.zeros(2, 4), x)
    with pytest.raises(ValueError, match="relevance has shape"):
        irpo_loss(x, x, torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        irpo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="weighting"):
        irpo_loss(x, x, x, weighting="ndcg")


# ---- the pieces around the loss (prefkit.irpo), on an untrained tiny model ------------------------------------------


@pytest.fixture(scope="module")
def world_and_model():
    from prefkit.models import TinyLlamaConfig, tiny_llama
    from prefkit.worlds.shortlist import ShortlistWorld

    w = ShortlistWorld(seed=3, n_train=20, n_eval=6)
    m = tiny_llama(
        w.tokenizer,
        TinyLlamaConfig(
            hidden_size=32, num_hidden_layers=1, intermediate_size=64, num_attention_heads=2, max_position_embeddings=32
        ),
        seed=0,
    )
    return w, m


def test_item_logps_are_the_response_tokens(world_and_model):
    from prefkit.irpo import item_logps
    from prefkit.logps import encode, naive_sequence_logps

    w, m = world_and_model
    ps = w.train_prompts[:3]
    rs = [w.demonstration(p, __import__("random").Random(0)) for p in ps]
    b = encode(w.tokenizer, ps, rs)
    items = item_logps(m, b, 8)  # (3, 8)
    seq = naive_sequence_logps(m, b["input_ids"], b["attention_mask"], b["response_mask"])
    seq = seq[0] if isinstance(seq, tuple) else seq
    no_eos = encode(w.tokenizer, ps, rs, add_eos=False)
    seq_no_eos = naive_sequence_logps(m, no_eos["input_ids"], no_eos["attention_mask"], no_eos["response_mask"])
    seq_no_eos = seq_no_eos[0] if isinstance(seq_no_eos, tuple) else seq_no_eos
    torch.testing.assert_close(items.sum(-1), seq_no_eos, atol=1e-4, rtol=1e-4)
    assert torch.all(items.sum(-1) > seq - 1e-4)  # the EOS log-prob comes on top
    with pytest.raises(ValueError, match="row 0: fewer than 10"):
        item_logps(m, b, 10)


def test_sampled_rankings_are_permutations(world_and_model):
    from prefkit.irpo import sample_rankings
    from prefkit.worlds.shortlist import parse_prompt

    w, m = world_and_model
    ps = w.train_prompts[:5]
    a = sample_rankings(m, w.tokenizer, ps, n=3, seed=7)
    assert a == sample_rankings(m, w.tokenizer, ps, n=3, seed=7)
    for p, rs in zip(ps, a):
        assert len(rs) == 3
        for r in rs:
            assert sorted(r.split()) == sorted(parse_prompt(p)[1])
    g = sample_rankings(m, w.tokenizer, ps, n=2, temperature=0)
    assert all(x == y for x, y in g)


def test_rows_from_feedback(world_and_model):
    from prefkit.irpo import dpo_rows, feedback_lists, irpo_rows, relevant_first, sft_rows
    from prefkit.worlds.shortlist import dcg

    w, _ = world_and_model
    assert relevant_first({"c": 2, "a": 3}, "b c d a") == "a c b d"
    p = w.train_prompts[0]
    fb = w.feedback(p)
    _, cands = __import__("prefkit.worlds.shortlist", fromlist=["x"]).parse_prompt(p)
    r = " ".join(cands)
    row = irpo_rows(w, [p], [[r]])[0]
    assert row["relevance"] == [float(fb.get(c, 0)) for c in cands]
    assert sft_rows(w, [p], [[r]])[0]["response"] == relevant_first(fb, r)
    first = relevant_first(fb, r)
    assert dpo_rows(w, [p], [[first]]) == []  # already relevant-first: no pair
    lst = feedback_lists(w, [p], [[r, first]])[0]
    assert lst["scores"] == [dcg([fb.get(c, 0) for c in x.split()], 3) for x in (r, first)]
    assert lst["scores"][1] >= lst["scores"][0]


def test_objective_starts_at_reference_and_trains(world_and_model):
    from prefkit.irpo import irpo_rows, random_rankings, train_irpo
    from prefkit.train import TrainConfig

    w, m = world_and_model
    rows = irpo_rows(w, w.train_prompts[:8], random_rankings(w, w.train_prompts[:8], 2, seed=0))
    pol, hist = train_irpo(m, w.tokenizer, rows, TrainConfig(steps=3, lr=1e-2, progress=False), batch_size=8)
    st = hist.steps
    assert abs(st["loss"].iloc[0] - st["loss/at_reference"].iloc[0]) < 1e-6  # the step-0 check passed
    assert st["rewards/marked"].iloc[-1] > st["rewards/unmarked"].iloc[-1]
