"""Diffusion preference losses: closed forms, step-0 checks, limits, gradient signs, gradcheck, shapes and errors."""

from __future__ import annotations

import ast
import inspect
import itertools
import math

import pytest
import torch

import prefkit.losses.diffusion as dl
from prefkit.losses.diffusion import (
    diffusion_dpo_loss,
    grpo_advantages,
    grpo_step_loss,
    mapo_link,
    mapo_loss,
    ranked_diffusion_dpo_loss,
    smpo_alpha,
    smpo_loss,
)

LN2 = math.log(2)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test draws its random inputs from the same seed: a tolerance that holds once holds every run."""
    torch.manual_seed(0)


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def _mses(b=5, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, generator=g, dtype=dtype) for _ in range(4)]


def test_only_torch_is_imported():
    tree = ast.parse(inspect.getsource(dl))
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert mods <= {"torch", "__future__", "dataclasses"}


# ------------------------------------------------------------------------------------------------------ Diffusion-DPO


def test_diffusion_dpo_step0_is_ln2():
    m_w, m_l, _, _ = _mses()
    losses, margin = diffusion_dpo_loss(m_w, m_l, m_w.clone(), m_l.clone(), beta=5000.0)
    assert torch.allclose(losses, torch.full((5,), LN2)) and torch.all(margin == 0)


def test_diffusion_dpo_closed_form_and_the_diffusers_scale():
    m_w, m_l, r_w, r_l = (v * 1e-3 for v in _mses(seed=1))
    beta = 5000.0
    losses, margin = diffusion_dpo_loss(m_w, m_l, r_w, r_l, beta)
    for i in range(5):
        inside = -0.5 * beta * ((m_w[i] - m_l[i]) - (r_w[i] - r_l[i])).item()
        assert losses[i].item() == pytest.approx(-_logsig(inside), rel=1e-4)
        assert margin[i].item() == pytest.approx(inside, rel=1e-4)
    # diffusers' SD1.5 script: -logσ(β' (ref_diff - model_diff)) with β' = 2500 is the same loss as β = 5000 here
    diffusers = -torch.nn.functional.logsigmoid(2500.0 * ((r_w - r_l) - (m_w - m_l)))
    assert torch.allclose(losses, diffusers, rtol=1e-5)


def test_diffusion_dpo_gradient_signs_and_gradcheck():
    m_w, m_l, r_w, r_l = (v.requires_grad_() for v in _mses(dtype=torch.float64))
    losses, _ = diffusion_dpo_loss(m_w, m_l, r_w.detach(), r_l.detach(), beta=10.0)
    losses.sum().backward()
    assert (m_w.grad > 0).all() and (m_l.grad < 0).all()  # lower the preferred error, raise the other
    assert torch.autograd.gradcheck(lambda a, b, c, d: diffusion_dpo_loss(a, b, c, d, 10.0)[0], (m_w, m_l, r_w, r_l))


def test_diffusion_dpo_bad_input():
    m = _mses()
    with pytest.raises(ValueError, match="ref_mse_l"):
        diffusion_dpo_loss(m[0], m[1], m[2], torch.rand(4))
    with pytest.raises(ValueError, match="beta"):
        diffusion_dpo_loss(*m, beta=0.0)


# -------------------------------------------------------------------------------------------------------------- MaPO


def test_mapo_link_closed_form_limits_and_monotonicity():
    u = torch.tensor([0.0, 1e-4, 9.9e-4, 1.1e-3, 0.5, 2.0, 30.0, 200.0, 1e4], dtype=torch.float64)
    g = mapo_link(u)
    assert g[0] == 1.0 and torch.isfinite(g).all()
    for ui, gi in zip(u[1:].tolist(), g[1:].tolist()):
        assert gi == pytest.approx(ui / math.expm1(ui) if ui < 700 else 0.0, rel=1e-9, abs=1e-300)
    grid = torch.linspace(0, 20, 2001, dtype=torch.float64)
    assert (mapo_link(grid).diff() < 0).all()  # g decreasing on u >= 0
    uu = u.clone().requires_grad_()
    mapo_link(uu).sum().backward()
    assert torch.isfinite(uu.grad).all() and uu.grad[0].item() == pytest.approx(-0.5)  # g'(0) = -1/2


def test_mapo_closed_form_and_no_reference():
    assert list(inspect.signature(mapo_loss).parameters) == ["mse_w", "mse_l", "beta", "snr", "T"]
    m_w = torch.tensor([0.3, 0.8, 0.0, 1.2])
    m_l = torch.tensor([0.5, 0.2, 0.0, 1.2])
    losses, margin = mapo_loss(m_w, m_l, beta=0.1, snr=0.5, T=1000)

    def g(u):
        return 1.0 if u == 0 else u / math.expm1(u)

    for i in range(4):
        mg = 1000 * (g(0.5 * m_w[i].item()) - g(0.5 * m_l[i].item()))
        assert margin[i].item() == pytest.approx(mg, rel=1e-4, abs=1e-4)
        assert losses[i].item() == pytest.approx(m_w[i].item() - 0.1 * _logsig(mg), rel=1e-5, abs=1e-6)
    assert losses[2].item() == pytest.approx(0.1 * LN2)  # both errors 0: margin 0, loss β ln 2
    # near 0 the margin is T s/2 (m_l - m_w) = 250 (m_l - m_w)
    _, small = mapo_loss(torch.tensor([1e-4]), torch.tensor([3e-4]))
    assert small.item() == pytest.approx(250 * 2e-4, rel=1e-2)


def test_mapo_gradient_signs_gradcheck_and_errors():
    m_w = torch.tensor([0.2, 0.7, 1e-5], dtype=torch.float64, requires_grad=True)
    m_l = torch.tensor([0.4, 0.1, 2e-4], dtype=torch.float64, requires_grad=True)
    mapo_loss(m_w, m_l)[0].sum().backward()
    assert (m_w.grad > 0).all() and (m_l.grad < 0).all()
    assert torch.autograd.gradcheck(lambda a, b: mapo_loss(a, b)[0], (m_w, m_l))
    with pytest.raises(ValueError, match="mse_w and mse_l"):
        mapo_loss(torch.tensor([-0.1]), torch.tensor([0.1]))
    with pytest.raises(ValueError, match="mse_l"):
        mapo_loss(torch.rand(3), torch.rand(2))


# -------------------------------------------------------------------------------------------------------------- SmPO


def test_smpo_alpha_one_is_diffusion_dpo_at_ten_beta():
    m = [v * 1e-3 for v in _mses(seed=2)]
    smpo, _ = smpo_loss(*m, alpha=1.0, beta=500.0)
    dpo, _ = diffusion_dpo_loss(*m, beta=5000.0)
    assert torch.allclose(smpo, dpo)
    smpo_t, _ = smpo_loss(*m, alpha=torch.ones(5), beta=500.0, scale=1.0)
    assert torch.allclose(smpo_t, diffusion_dpo_loss(*m, beta=500.0)[0])


def test_smpo_alpha_half_is_constant_without_gradient():
    m_w, m_l, r_w, r_l = _mses(seed=3, dtype=torch.float64)
    m_w.requires_grad_()
    m_l.requires_grad_()
    losses, margin = smpo_loss(m_w, m_l, r_w, r_l, alpha=0.5)
    assert torch.allclose(losses, torch.full((5,), LN2, dtype=torch.float64)) and torch.all(margin == 0)
    losses.sum().backward()
    assert torch.all(m_w.grad == 0) and torch.all(m_l.grad == 0)


def test_smpo_per_pair_alpha_scales_the_margin_and_gradcheck():
    m_w, m_l, r_w, r_l = (v.requires_grad_() for v in _mses(seed=4, dtype=torch.float64))
    alpha = torch.tensor([1.0, 0.9, 0.6, 0.5, 0.2], dtype=torch.float64)
    _, margin = smpo_loss(m_w, m_l, r_w, r_l, alpha, beta=3.0)
    _, dpo_margin = diffusion_dpo_loss(m_w, m_l, r_w, r_l, beta=3.0)
    assert torch.allclose(margin, (2 * alpha - 1) * 10 * dpo_margin)
    assert torch.autograd.gradcheck(lambda a, b, c, d: smpo_loss(a, b, c, d, alpha, beta=3.0)[0], (m_w, m_l, r_w, r_l))


def test_smpo_alpha_from_scores_and_errors():
    s_w, s_l = torch.tensor([0.25, 0.20, 0.15]), torch.tensor([0.15, 0.20, 0.25])
    alpha = smpo_alpha(s_w, s_l, low=0.1154, high=0.2820)
    nw, nl = (s_w - 0.1154) / (0.2820 - 0.1154), (s_l - 0.1154) / (0.2820 - 0.1154)
    assert torch.allclose(alpha, nw.exp() / (nw.exp() + nl.exp()))
    assert alpha[1] == 0.5 and alpha[0] > 0.5 > alpha[2]
    m = _mses()
    with pytest.raises(ValueError, match="alpha"):
        smpo_loss(*m, alpha=1.2)
    with pytest.raises(ValueError, match="alpha"):
        smpo_loss(*m, alpha=torch.ones(3))
    with pytest.raises(ValueError, match="high"):
        smpo_alpha(s_w, s_l, low=1.0, high=0.5)


# ------------------------------------------------------------------------------------------------------------ RankDPO


def _ranked_reference(model_mse, ref_mse, scores, beta, discount):
    """A loop over pairs with ranks from a plain sort (all rewards distinct here)."""
    out = []
    for b in range(model_mse.shape[0]):
        r = [-0.5 * beta * (model_mse[b, i] - ref_mse[b, i]).item() for i in range(model_mse.shape[1])]
        order = sorted(range(len(r)), key=lambda i: -r[i])
        tau = {i: pos + 1 for pos, i in enumerate(order)}
        total = 0.0
        for i, j in itertools.permutations(range(len(r)), 2):
            phi_i, phi_j = scores[b, i].item(), scores[b, j].item()
            if phi_i <= phi_j:
                continue
            w = abs(2**phi_i - 2**phi_j)
            if discount:
                w *= abs(1 / math.log(1 + tau[i]) - 1 / math.log(1 + tau[j]))
            total += -w * _logsig(r[i] - r[j])
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("discount", [True, False])
def test_ranked_dpo_matches_a_pairwise_loop(discount):
    g = torch.Generator().manual_seed(5)
    model_mse, ref_mse = torch.rand(3, 4, generator=g, dtype=torch.float64), torch.rand(3, 4, generator=g).double()
    scores = torch.tensor([[1.0, 0.5, 0.25, 0.0], [0.0, 1 / 3, 2 / 3, 1.0], [0.5, 0.5, 1.0, 0.0]], dtype=torch.float64)
    losses, r = ranked_diffusion_dpo_loss(model_mse, ref_mse, scores, beta=2.0, discount=discount)
    assert torch.allclose(losses, _ranked_reference(model_mse, ref_mse, scores, 2.0, discount))
    assert torch.allclose(r, -(model_mse - ref_mse))


def test_ranked_dpo_at_k2_is_weighted_diffusion_dpo():
    m_w, m_l, r_w, r_l = _mses(seed=6, dtype=torch.float64)
    phi = torch.tensor([1.0, 0.0], dtype=torch.float64)
    scores = phi.expand(5, 2)
    dpo, _ = diffusion_dpo_loss(m_w, m_l, r_w, r_l, beta=4.0)
    ranked, _ = ranked_diffusion_dpo_loss(
        torch.stack([m_w, m_l], 1), torch.stack([r_w, r_l], 1), scores, beta=4.0, discount=True
    )
    weight = (2.0**1 - 2.0**0) * (1 / math.log(2) - 1 / math.log(3))  # whichever way the model ranks the pair
    assert torch.allclose(ranked, weight * dpo)
    gain_only, _ = ranked_diffusion_dpo_loss(
        torch.stack([m_w, m_l], 1), torch.stack([r_w, r_l], 1), scores, beta=4.0, discount=False
    )
    assert torch.allclose(gain_only, dpo)


def test_ranked_dpo_step0_permutation_invariance_ties_and_errors():
    scores = torch.tensor([[0.75, 0.25, 1.0, 0.0]])
    m = torch.rand(1, 4)
    losses, r = ranked_diffusion_dpo_loss(m, m.clone(), scores)
    g = 2.0 ** scores[0]
    tau = {2: 1, 0: 2, 1: 3, 3: 4}  # at step 0 all rewards tie, so the labels order the list
    expect = sum(
        abs(g[i] - g[j]).item() * abs(1 / math.log(1 + tau[i]) - 1 / math.log(1 + tau[j])) * LN2
        for i, j in itertools.permutations(range(4), 2)
        if scores[0, i] > scores[0, j]
    )
    assert torch.all(r == 0) and losses.item() == pytest.approx(expect, rel=1e-5)
    perm = torch.tensor([3, 1, 0, 2])
    m_w, m_r = torch.rand(1, 4), torch.rand(1, 4)
    a, _ = ranked_diffusion_dpo_loss(m_w, m_r, scores, beta=3.0)
    b, _ = ranked_diffusion_dpo_loss(m_w[:, perm], m_r[:, perm], scores[:, perm], beta=3.0)
    assert torch.allclose(a, b)
    tied, _ = ranked_diffusion_dpo_loss(m_w, m_r, torch.full((1, 4), 0.5))
    assert tied.item() == 0.0  # equal labels form no pair
    with pytest.raises(ValueError, match="K >= 2"):
        ranked_diffusion_dpo_loss(torch.rand(3, 1), torch.rand(3, 1), torch.rand(3, 1))
    with pytest.raises(ValueError, match="scores"):
        ranked_diffusion_dpo_loss(torch.rand(3, 4), torch.rand(3, 4), torch.rand(3, 5))


def test_ranked_dpo_gradcheck():
    m = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)
    ref = torch.rand(2, 3, dtype=torch.float64)
    scores = torch.tensor([[1.0, 0.0, 0.5], [0.2, 0.9, 0.4]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: ranked_diffusion_dpo_loss(x, ref, scores, beta=2.0)[0], (m,))


# -------------------------------------------------------------------------------------------------------------- GRPO


def test_grpo_advantages_sum_to_zero_and_have_unit_std():
    g = torch.Generator().manual_seed(7)
    rewards = torch.randn(4, 8, generator=g, dtype=torch.float64) * torch.tensor([[0.01], [1.0], [5.0], [1e-3]])
    a = grpo_advantages(rewards)
    assert torch.allclose(a.sum(-1), torch.zeros(4, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(a.std(-1), torch.ones(4, dtype=torch.float64), atol=1e-4)  # tiny spreads blown up too
    centred = grpo_advantages(rewards, normalize_std=False)
    assert torch.allclose(centred, rewards - rewards.mean(-1, keepdim=True))
    assert torch.allclose(grpo_advantages(rewards + 3.0), a)
    assert torch.all(grpo_advantages(torch.ones(2, 4)) == 0)  # a group with no spread has no advantage
    with pytest.raises(ValueError, match="rewards"):
        grpo_advantages(torch.rand(5))


def test_grpo_step_loss_clipping_closed_form():
    eps = 0.2
    # (advantage, ratio) -> (loss, ratio's gradient flows)
    cases = [(2.0, 1.1, -2.2, True), (2.0, 1.5, -2.4, False), (2.0, 0.5, -1.0, True), (-1.0, 0.5, 0.8, False)]
    cases += [(-1.0, 1.5, 1.5, True), (-1.0, 0.9, 0.9, True)]
    adv = torch.tensor([[c[0] for c in cases]])
    logp_old = torch.zeros(1, len(cases))
    logp_new = torch.log(torch.tensor([[c[1] for c in cases]])).requires_grad_()
    losses, ratio = grpo_step_loss(logp_new, logp_old, adv, clip=eps)
    assert torch.allclose(losses, torch.tensor([[c[2] for c in cases]]), atol=1e-6)
    assert torch.allclose(ratio, torch.tensor([[c[1] for c in cases]]))
    losses.sum().backward()
    for k, c in enumerate(cases):
        expected = -c[0] * c[1] if c[3] else 0.0  # d(-A ρ)/d log p = -A ρ
        assert logp_new.grad[0, k].item() == pytest.approx(expected, abs=1e-6)


def test_grpo_step_loss_on_policy_steps_and_advantage_clip():
    logp = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([[1.0, -7.0, 0.0], [9.0, 0.5, -0.5]], dtype=torch.float64)
    losses, ratio = grpo_step_loss(logp, logp.detach(), adv, adv_clip=5.0)
    assert losses.shape == (2, 3, 5) and torch.all(ratio == 1)
    assert torch.allclose(losses, -adv.clamp(-5, 5)[..., None].expand(2, 3, 5))  # on-policy: ρ = 1, L = -A
    losses.sum().backward()
    assert torch.allclose(logp.grad, -adv.clamp(-5, 5)[..., None].expand(2, 3, 5))  # the REINFORCE gradient
    with pytest.raises(ValueError, match="advantages"):
        grpo_step_loss(logp, logp.detach(), torch.rand(3, 2))
    with pytest.raises(ValueError, match="clip"):
        grpo_step_loss(logp, logp.detach(), adv, clip=0.0)
