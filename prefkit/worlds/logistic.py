"""Delta learning in logistic regression: a student learns from the *difference* between two weaker teachers.

A reconstruction, for simulation, of the argument of Geng et al. 2025 (arXiv:2507.06187, Sec. 6). Inputs
x ~ N(0, I_d); the truth is a unit vector θ*, and a model θ is as good as its cosine to θ* (its 0-1 error on
sign(⟨θ*, x⟩) is angle / π). Teachers θ_c ("chosen") and θ_r ("rejected") and the student θ_s have cosines a_c, a_r,
a_s to θ*, with independent random error directions. On each input the teachers answer y = sign(⟨θ, x⟩); a preference
pair is (x, y_c chosen, y_r rejected), with no judge.

The student is the policy π_θ(y | x) = σ(y ⟨θ, x⟩). DPO from π_ref = π_{θ_s}: where the teachers agree the pair
carries no gradient, and where they disagree -log σ(β [log π_θ(y_c|x)/π_s(y_c|x) - log π_θ(y_r|x)/π_s(y_r|x)]) is
logistic regression towards the chosen teacher's label, so the first step moves θ_s along u_c - u_r (unit directions).
In high dimension that raises the student's cosine iff a_c > a_r, even when both teachers are worse than the student;
SFT on the chosen answers instead pulls the student towards θ_c, which hurts once a_s > a_c.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class DeltaLogistic:
    """One simulated student/teachers setup; ``run`` trains the student and returns its cosine to θ* per step."""

    d: int = 1000  # input dimension
    a_s: float = 0.9  # cosine of the student to θ*
    a_c: float = 0.6  # cosine of the chosen teacher
    a_r: float = 0.4  # cosine of the rejected teacher
    n: int = 4096  # inputs (each gives one preference pair)
    seed: int = 0

    def _model(self, a: float, g: torch.Generator, truth: torch.Tensor) -> torch.Tensor:
        v = torch.randn(self.d, generator=g, dtype=torch.float64)
        v = v - (v @ truth) * truth  # a random error direction, orthogonal to the truth
        return a * truth + (1 - a * a) ** 0.5 * v / v.norm()

    def run(self, method: str = "dpo", steps: int = 50, lr: float = 1.0, beta: float = 1.0) -> list[float]:
        """Gradient descent from θ_s on DPO (``"dpo"``) or on SFT of the chosen answers (``"sft"``); returns
        cos(θ, θ*) before each step and after the last."""
        if method not in ("dpo", "sft"):
            raise ValueError(f"method must be 'dpo' or 'sft', got {method!r}")
        g = torch.Generator().manual_seed(self.seed)
        truth = torch.zeros(self.d, dtype=torch.float64)
        truth[0] = 1.0
        theta_s, theta_c, theta_r = (self._model(a, g, truth) for a in (self.a_s, self.a_c, self.a_r))
        x = torch.randn(self.n, self.d, generator=g, dtype=torch.float64)  # (n, d)
        y_c, y_r = torch.sign(x @ theta_c), torch.sign(x @ theta_r)  # (n,) the teachers' answers
        theta = theta_s.clone().requires_grad_(True)
        cos = []
        for _ in range(steps + 1):
            cos.append(float((theta.detach() @ truth) / theta.detach().norm()))
            if len(cos) > steps:
                break
            if method == "dpo":  # log π(y_c|x) - log π(y_r|x) = 0 where y_c = y_r, else y_c ⟨θ, x⟩ (up to π_ref)
                margin = 0.5 * (y_c - y_r) * (x @ (theta - theta_s))  # (n,) log-ratio margin vs the reference
                loss = -F.logsigmoid(beta * margin).mean()
            else:
                loss = -F.logsigmoid(y_c * (x @ theta)).mean()
            (grad,) = torch.autograd.grad(loss, theta)
            with torch.no_grad():
                theta -= lr * grad
        return cos
