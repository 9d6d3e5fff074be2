"""A Fawkes-style cloak on segue's surrogate: the anchor a user would otherwise pick.

Fawkes (Shan et al., USENIX Security 2020) moves each photo's feature representation toward a decoy
identity drawn from a public set (the one farthest from the user), under a perceptual budget: DSSIM
= (1 - SSIM) / 2 at most ``rho`` (its modes: 0.004 low, 0.012 mid, 0.017 high). Here the surrogate
is segue's FaceNet port, the decoys the CelebA234 validation people, the steps the shipped cloak's
(MI, input diversity with a small warp) and the budget a projection: after each step the delta is
scaled down until the photo's DSSIM is within ``rho``. Measured in benchmarks/cloak_frontier.py
(``fawkes:RHO``); not shipped.
"""

from __future__ import annotations

import torch

import sys
from pathlib import Path

from segue.methods.base import quantise
from segue.methods.perceptual_cloak import largest_scale
from segue.quality import ssim

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/: a folder of the repository, not installed
from experiments.feature_cloak_variants import VariantFeatureCloak  # noqa: E402

BISECTION_STEPS = 6


def dssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(N,)`` (1 - SSIM) / 2, SSIM as every segue report measures it (kornia, 11x11 Gaussian)."""
    return (1 - ssim(x, y)) / 2


class FawkesStyleCloak(VariantFeatureCloak):
    """Toward the farthest decoy of ``decoy_pool`` on FaceNet, DSSIM <= ``rho`` (L-inf cap ``eps``)."""

    name = "fawkes-style"

    def __init__(self, rho: float = 0.012, eps: float = 16 / 255, step_rms: float = 0.004, **kw):
        super().__init__(eps=eps, decoy="farthest", away=0.0, momentum=1.0, diverse=True, affine_diversity=True, **kw)
        self.rho, self.step_rms = float(rho), float(step_rms)

    def config(self) -> dict:
        return {**super().config(), "rho": self.rho, "step_rms": self.step_rms}

    @torch.no_grad()
    def project(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        def within(idx: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return dssim(x[idx], (x[idx] + scale[:, None, None, None] * delta[idx]).clamp(0, 1)) <= self.rho

        return delta * largest_scale(within, len(x), BISECTION_STEPS)[:, None, None, None]

    def attack(self, x, targets, start=None, radius=None) -> torch.Tensor:
        with torch.no_grad():
            clean = [m(x) for m in self.models]
        delta = torch.zeros_like(x, requires_grad=True)
        g = torch.zeros_like(x)
        for _ in range(self.steps):
            (grad,) = torch.autograd.grad(self.objective(self.diversity((x + delta).clamp(0, 1)), clean, targets), delta)
            g = self.momentum * g + grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            with torch.no_grad():
                delta += self.step_rms * g / g.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
                delta.clamp_(-self.eps, self.eps)
                delta.copy_(self.project(x, (x + delta).clamp(0, 1) - x))
        return delta.detach()

    def round_to_budget(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return quantise(x, delta, self.eps)
