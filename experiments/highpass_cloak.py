"""The perceptual cloak with fine-grained steps only: each step less its Gaussian blur.

At the generator's visibility ``low``'s change is shading that follows the nose, the eyes and the
cheeks (docs/gallery.md), and the eye reads shading as a different face; the generator's change is a
fine texture, which the eye forgives. Here every step is high-passed (the step minus its Gaussian
blur of ``sigma`` px) before it is taken, so the delta can only be grain, never shading; with
``tangent`` > 0 the step first also loses its HaarPSI-lowering component
(:class:`experiments.tangent_cloak.TangentCloak`), high-passed after that, so it cannot turn into
the patches the tangent steps alone make. ``python benchmarks/cloak_frontier.py --data orl20
--protections highpass:chroma=0.3,texture=true,sigma=1.5 ...`` measures it.
"""

from __future__ import annotations

import torch
from kornia.filters import gaussian_blur2d

from experiments.tangent_cloak import TangentCloak
from segue.visibility import Reference


class HighPassCloak(TangentCloak):
    """:class:`TangentCloak` (``tangent`` 0 by default: the package's step) whose steps are high-passed."""

    name = "highpass-cloak"

    def __init__(self, sigma: float = 1.5, tangent: float = 0.0, **kw):
        super().__init__(tangent=tangent, **kw)
        self.sigma = float(sigma)

    def config(self) -> dict:
        return {**super().config(), "sigma": self.sigma}

    def direction(self, g: torch.Tensor, mask: torch.Tensor | None, x: torch.Tensor, delta: torch.Tensor,
                  refs: list[Reference]) -> torch.Tensor:
        step = super().direction(g, mask, x, delta, refs)
        k = 2 * round(3 * self.sigma) + 1
        return step - gaussian_blur2d(step, (k, k), (self.sigma, self.sigma), border_type="reflect")
