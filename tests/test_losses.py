"""Pairwise losses: closed forms, limits, gradient signs, gradcheck, IPO's minimum, the registry, imports."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import sys
from pathlib import Path

import pytest
import torch

import prefkit.losses as losses_pkg
from prefkit.losses import (
    CONFIGS,
    LISTWISE,
    LOSSES,
    all_pairs_dpo_loss,
    best_worst_dpo_loss,
    dpo_loss,
    get_loss,
    hinge_loss,
    ipo_loss,
    lipo_lambda_loss,
    norm_dpo_loss,
    plackett_luce_loss,
    pro_loss,
    robust_dpo_loss,
    simpo_loss,
    tree_po_loss,
    triple_po_loss,
)

B = 6


def _logsig(x: float) -> float:
    """log σ(x), written independently of torch."""
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def _inputs(seed: int = 0, dtype=torch.float64, grad: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        k: (-20 * torch.rand(B, generator=g, dtype=dtype)).requires_grad_(grad)
        for k in ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
    }


def _lengths(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 12, (B,), generator=g), torch.randint(1, 12, (B,), generator=g)


def _h(x: dict[str, torch.Tensor]) -> list[float]:
    """The log-ratio margin h per example, as Python floats."""
    pc, pr = x["policy_chosen_logps"].tolist(), x["policy_rejected_logps"].tolist()
    rc, rr = x["ref_chosen_logps"].tolist(), x["ref_rejected_logps"].tolist()
    return [(a - c) - (b - d) for a, b, c, d in zip(pc, pr, rc, rr)]


def test_dpo_is_ln2_with_zero_rewards_when_policy_equals_reference():
    x = _inputs(13)
    lp, lr = x["policy_chosen_logps"], x["policy_rejected_logps"]
    loss, rc, rr = dpo_loss(lp, lr, lp.clone(), lr.clone(), beta=0.1)
    torch.testing.assert_close(loss, torch.full((B,), math.log(2), dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.equal(rc, torch.zeros(B, dtype=torch.float64)) and torch.equal(rr, torch.zeros(B, dtype=torch.float64))


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_closed_form(beta):
    x = _inputs()
    loss, rc, rr = dpo_loss(**x, beta=beta)
    expected = [-_logsig(beta * h) for h in _h(x)]
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rc, beta * (x["policy_chosen_logps"] - x["ref_chosen_logps"]))
    torch.testing.assert_close(rr, beta * (x["policy_rejected_logps"] - x["ref_rejected_logps"]))


def test_cdpo_closed_form():
    x, beta, eps = _inputs(1), 0.3, 0.2
    loss, _, _ = dpo_loss(**x, beta=beta, label_smoothing=eps)
    expected = [-(1 - eps) * _logsig(beta * h) - eps * _logsig(-beta * h) for h in _h(x)]
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_cdpo_per_example_label_smoothing():
    x, beta = _inputs(2), 0.2
    eps = torch.linspace(0, 0.5, B, dtype=torch.float64)
    loss, _, _ = dpo_loss(**x, beta=beta, label_smoothing=eps)
    expected = [-(1 - e) * _logsig(beta * h) - e * _logsig(-beta * h) for h, e in zip(_h(x), eps.tolist())]
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_robust_closed_form():
    x, beta, eps = _inputs(3), 0.4, 0.1
    loss, _, _ = robust_dpo_loss(**x, beta=beta, label_smoothing=eps)
    expected = [((1 - eps) * -_logsig(beta * h) - eps * -_logsig(-beta * h)) / (1 - 2 * eps) for h in _h(x)]
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_hinge_closed_form_has_both_regimes():
    x, beta = _inputs(4), 0.5
    loss, _, _ = hinge_loss(**x, beta=beta)
    hs = _h(x)
    expected = [max(0.0, 1 - beta * h) for h in hs]
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert any(e == 0 for e in expected) and any(e > 0 for e in expected), "the inputs cover both sides of the hinge"


def test_ipo_closed_form_summed():
    x, tau = _inputs(5), 0.1
    loss, _, _ = ipo_loss(**x, beta=tau)
    expected = [(h - 1 / (2 * tau)) ** 2 for h in _h(x)]
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_ipo_closed_form_averaged():
    x, tau = _inputs(6), 0.5
    lc, lr = _lengths()
    loss, _, _ = ipo_loss(**x, chosen_lengths=lc, rejected_lengths=lr, beta=tau)
    pc, pr = x["policy_chosen_logps"].tolist(), x["policy_rejected_logps"].tolist()
    rc, rr = x["ref_chosen_logps"].tolist(), x["ref_rejected_logps"].tolist()
    expected = [
        ((a - c) / n - (b - d) / m - 1 / (2 * tau)) ** 2
        for a, b, c, d, n, m in zip(pc, pr, rc, rr, lc.tolist(), lr.tolist())
    ]
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_simpo_closed_form():
    x, beta, gamma = _inputs(7), 2.0, 0.8
    lc, lr = _lengths(2)
    loss, rc, rr = simpo_loss(x["policy_chosen_logps"], x["policy_rejected_logps"], lc, lr, beta=beta, gamma=gamma)
    pc, pr = x["policy_chosen_logps"].tolist(), x["policy_rejected_logps"].tolist()
    expected = [-_logsig(beta * a / n - beta * b / m - gamma) for a, b, n, m in zip(pc, pr, lc.tolist(), lr.tolist())]
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rc, beta * x["policy_chosen_logps"] / lc)
    torch.testing.assert_close(rr, beta * x["policy_rejected_logps"] / lr)


def test_soft_label_one_half_is_symmetric_in_chosen_and_rejected():
    x = _inputs(8)
    swapped = {
        "policy_chosen_logps": x["policy_rejected_logps"],
        "policy_rejected_logps": x["policy_chosen_logps"],
        "ref_chosen_logps": x["ref_rejected_logps"],
        "ref_rejected_logps": x["ref_chosen_logps"],
    }
    a, _, _ = dpo_loss(**x, beta=0.3, label_smoothing=0.5)
    b, _, _ = dpo_loss(**swapped, beta=0.3, label_smoothing=0.5)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # and it is not symmetric for a hard label, so the check above can fail
    c, _, _ = dpo_loss(**x, beta=0.3)
    d, _, _ = dpo_loss(**swapped, beta=0.3)
    assert not torch.allclose(c, d)


def _sign_case(name: str):
    """Inputs in the regime where the gradient sign is defined, and the loss as a function of them."""
    pc = torch.tensor([-5.0, -8.0, -3.0], dtype=torch.float64, requires_grad=True)
    pr = torch.tensor([-6.0, -7.0, -9.0], dtype=torch.float64, requires_grad=True)
    rc = torch.tensor([-5.5, -7.5, -4.0], dtype=torch.float64)
    rr = torch.tensor([-5.0, -7.2, -8.0], dtype=torch.float64)
    lengths = torch.tensor([3, 5, 2]), torch.tensor([4, 2, 6])
    if name == "dpo":
        return pc, pr, lambda: dpo_loss(pc, pr, rc, rr, beta=0.1)[0]
    if name == "ipo_below_target":  # |h| < 3 here, far below the target 1/(2τ) = 5
        return pc, pr, lambda: ipo_loss(pc, pr, rc, rr, beta=0.1)[0]
    if name == "hinge_in_margin":  # β h < 1 here, inside the margin
        return pc, pr, lambda: hinge_loss(pc, pr, rc, rr, beta=0.1)[0]
    if name == "simpo":
        return pc, pr, lambda: simpo_loss(pc, pr, *lengths, beta=2.0, gamma=1.0)[0]
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["dpo", "ipo_below_target", "hinge_in_margin", "simpo"])
def test_gradient_raises_chosen_and_lowers_rejected(name):
    pc, pr, f = _sign_case(name)
    f().sum().backward()
    assert (pc.grad < 0).all(), f"d loss / d policy_chosen_logps = {pc.grad}"
    assert (pr.grad > 0).all(), f"d loss / d policy_rejected_logps = {pr.grad}"


def test_hinge_gradient_is_zero_beyond_margin():
    pc = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)
    pr = torch.tensor([-30.0], dtype=torch.float64, requires_grad=True)
    zero = torch.zeros(1, dtype=torch.float64)
    loss, _, _ = hinge_loss(pc, pr, zero, zero, beta=0.1)  # β h = 3 > 1
    loss.sum().backward()
    assert loss.item() == 0 and pc.grad.item() == 0 and pr.grad.item() == 0


GRADCHECK = {
    "dpo": lambda pc, pr, rc, rr, lc, lr: dpo_loss(pc, pr, rc, rr, beta=0.3)[0],
    "cdpo": lambda pc, pr, rc, rr, lc, lr: dpo_loss(pc, pr, rc, rr, beta=0.3, label_smoothing=0.2)[0],
    "robust": lambda pc, pr, rc, rr, lc, lr: robust_dpo_loss(pc, pr, rc, rr, beta=0.3, label_smoothing=0.2)[0],
    "ipo": lambda pc, pr, rc, rr, lc, lr: ipo_loss(pc, pr, rc, rr, beta=0.3)[0],
    "ipo_averaged": lambda pc, pr, rc, rr, lc, lr: ipo_loss(pc, pr, rc, rr, lc, lr, beta=0.3)[0],
    "hinge": lambda pc, pr, rc, rr, lc, lr: hinge_loss(pc, pr, rc, rr, beta=0.3)[0],
    "simpo": lambda pc, pr, rc, rr, lc, lr: simpo_loss(pc, pr, lc, lr, beta=2.0, gamma=0.5)[0],
}


@pytest.mark.parametrize("name", sorted(GRADCHECK))
def test_gradcheck_float64(name):
    x = _inputs(9, grad=True)
    lc, lr = _lengths(3)
    if name == "hinge":  # keep every example away from the kink at β h = 1
        assert all(abs(1 - 0.3 * h) > 1e-3 for h in _h(x))
    f = GRADCHECK[name]
    args = tuple(
        x[k] for k in ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")
    )
    assert torch.autograd.gradcheck(lambda *a: f(*a, lc, lr), args, eps=1e-6, atol=1e-6)


def _ipo_at(h: torch.Tensor, tau: float, lengths: tuple[torch.Tensor, torch.Tensor] | None):
    """IPO loss and d loss / d policy_chosen_logps with the (summed or averaged) margin set to ``h``."""
    n = h.shape[0]
    pr = torch.full((n,), -7.0, dtype=torch.float64)
    rc = torch.full((n,), -4.0, dtype=torch.float64)
    rr = torch.full((n,), -6.0, dtype=torch.float64)
    if lengths is None:
        pc = rc + (pr - rr) + h  # (pc - rc) - (pr - rr) = h
        kw = {}
    else:
        lc, lr = lengths
        pc = rc + lc * ((pr - rr) / lr + h)  # (pc - rc)/lc - (pr - rr)/lr = h
        kw = {"chosen_lengths": lc, "rejected_lengths": lr}
    pc = pc.detach().requires_grad_(True)
    loss, _, _ = ipo_loss(pc, pr, rc, rr, beta=tau, **kw)
    (grad,) = torch.autograd.grad(loss.sum(), pc)
    return loss.detach(), grad


@pytest.mark.parametrize("convention", ["summed", "averaged"])
@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_ipo_minimum_at_one_over_two_tau(convention, tau):
    target = 1 / (2 * tau)
    n = 3
    lengths = None if convention == "summed" else (torch.tensor([3, 7, 1]), torch.tensor([5, 2, 9]))
    loss, grad = _ipo_at(torch.full((n,), target, dtype=torch.float64), tau, lengths)
    torch.testing.assert_close(loss, torch.zeros(n, dtype=torch.float64), rtol=0, atol=1e-20)
    torch.testing.assert_close(grad, torch.zeros(n, dtype=torch.float64), rtol=0, atol=1e-10)
    # 1-D scan of h: the smallest loss sits at the grid point at 1/(2τ), and the loss rises on both sides
    grid = target + torch.linspace(-3, 3, 61, dtype=torch.float64)
    grid_lengths = None if lengths is None else (torch.full((61,), 3), torch.full((61,), 5))
    scan, _ = _ipo_at(grid, tau, grid_lengths)
    assert int(scan.argmin()) == 30
    assert (scan[:30].diff() < 0).all() and (scan[30:].diff() > 0).all()


def test_ipo_conventions_differ():
    """With lengths the averaged margin is used: at its minimum, the summed-convention loss is not at its minimum."""
    tau = 0.5
    lc, lr = torch.tensor([4]), torch.tensor([2])
    pr, rc, rr = (torch.tensor([v], dtype=torch.float64) for v in (-7.0, -4.0, -6.0))
    pc = rc + lc * ((pr - rr) / lr + 1 / (2 * tau))
    averaged, _, _ = ipo_loss(pc, pr, rc, rr, lc, lr, beta=tau)
    summed, _, _ = ipo_loss(pc, pr, rc, rr, beta=tau)
    assert averaged.item() == pytest.approx(0, abs=1e-20)
    assert summed.item() > 1


@pytest.mark.parametrize("eps", [0.5, 0.7, 1.0, -0.1])
def test_robust_refuses_label_smoothing_outside_range(eps):
    x = _inputs()
    with pytest.raises(ValueError, match="0.5"):
        robust_dpo_loss(**x, beta=0.1, label_smoothing=eps)


def test_robust_with_zero_eps_equals_dpo():
    x = _inputs(10)
    a = robust_dpo_loss(**x, beta=0.2, label_smoothing=0.0)
    b = dpo_loss(**x, beta=0.2)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-14, atol=1e-14)


def test_robust_is_unbiased_under_flips():
    """E over a flip with probability ε of the robust loss equals the clean DPO loss (Chowdhury et al., Lemma 3.1)."""
    x, eps, beta = _inputs(11), 0.2, 0.5
    swapped = {
        "policy_chosen_logps": x["policy_rejected_logps"],
        "policy_rejected_logps": x["policy_chosen_logps"],
        "ref_chosen_logps": x["ref_rejected_logps"],
        "ref_rejected_logps": x["ref_chosen_logps"],
    }
    kept = robust_dpo_loss(**x, beta=beta, label_smoothing=eps)[0]
    flipped = robust_dpo_loss(**swapped, beta=beta, label_smoothing=eps)[0]
    torch.testing.assert_close((1 - eps) * kept + eps * flipped, dpo_loss(**x, beta=beta)[0])


@pytest.mark.parametrize("name", sorted(set(LOSSES) - LISTWISE))
def test_rewards_are_detached(name):
    x = _inputs(12, grad=True)
    lc, lr = _lengths()
    from prefkit.train import call_loss

    gold = {"policy_gold_logps": x["policy_chosen_logps"] - 1.0, "gold_lengths": lc}  # triple losses only
    loss, rc, rr = call_loss(get_loss(name), **x, chosen_lengths=lc, rejected_lengths=lr, **gold)
    assert loss.requires_grad
    assert not rc.requires_grad and not rr.requires_grad
    assert loss.shape == rc.shape == rr.shape == (B,)


def test_registry_knows_all_names():
    expected = {
        "dpo": dpo_loss,
        "cdpo": dpo_loss,
        "osp": dpo_loss,
        "dove": dpo_loss,
        "dpo_norm": norm_dpo_loss,
        "robust": robust_dpo_loss,
        "ipo": ipo_loss,
        "hinge": hinge_loss,
        "simpo": simpo_loss,
        "triple_po": triple_po_loss,
        "triple_po_l": triple_po_loss,
    }
    expected |= {
        "lipo_lambda": lipo_lambda_loss,
        "dpo_all_pairs": all_pairs_dpo_loss,
        "dpo_best_worst": best_worst_dpo_loss,
        "dpo_pl": plackett_luce_loss,
        "pro": pro_loss,
        "tree_po": tree_po_loss,
    }
    for name, fn in expected.items():
        assert get_loss(name) is fn
    assert set(LOSSES) == set(expected) == set(CONFIGS)
    assert LISTWISE == {"lipo_lambda", "dpo_all_pairs", "dpo_best_worst", "dpo_pl", "pro", "tree_po"}


def test_registry_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match="unknown loss .kto-ish.; known:") as e:
        get_loss("kto-ish")
    msg = str(e.value)
    assert "kto-ish" in msg
    for name in LOSSES:
        assert repr(name) in msg


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_fields_are_loss_arguments(name):
    """A method's config dataclass can be splatted into its loss: every field is a keyword the loss accepts."""
    params = inspect.signature(get_loss(name)).parameters
    for f in dataclasses.fields(CONFIGS[name]):
        assert f.name in params, f"{name}: config field {f.name!r} is not an argument of the loss"


def test_losses_package_imports_only_torch_and_stdlib():
    folder = Path(losses_pkg.__file__).parent
    files = sorted(folder.glob("*.py"))
    assert len(files) >= 2
    allowed = set(sys.stdlib_module_names) | {"torch"}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level == 1:  # a sibling module of the losses package
                    continue
                assert node.level == 0, f"{path.name}:{node.lineno} imports from outside the losses package"
                roots = [node.module.split(".")[0]]
            else:
                continue
            bad = [r for r in roots if r not in allowed]
            assert not bad, f"{path.name}:{node.lineno} imports {bad}"
