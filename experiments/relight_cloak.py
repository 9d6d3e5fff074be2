"""The perceptual cloak as lighting: a smooth gain field over each photo instead of a per-pixel pattern.

At ``low``'s bar what protects is shading the eye sees at 2x (docs/visibility.md; held to the generator's
shading, ``low`` protected nobody: experiments/shading_cloak.py). Change coarser than that band reads as
lighting, which the eye discounts and face recognisers are trained to ignore, yet chosen adversarially it
can mislead them (adversarial relighting: Gao et al., "Adversarial Relighting Against Face Recognition",
IEEE TIFS 2022). Here every step is projected onto multiplicative fields, ``delta = x * up(theta)``: theta a
grid of one gain every ``cell`` px, upsampled bilinearly; the same gain in R, G and B, plus ``chroma`` of a
per-channel part (a tint of the light). The bar and its scale-down are the package's (scaling theta scales
delta). ``python benchmarks/cloak_frontier.py --data orl20 --protections relight:cell=16,chroma=0,...``
measures it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segue.methods.perceptual_cloak import PerceptualCloak
from segue.visibility import Reference


def upsample(theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N,C,h,w)`` gains -> ``(N,C,H,W)``, bilinear: a field with nothing finer than its grid."""
    return F.interpolate(theta, size=size, mode="bilinear", align_corners=False)


def gain_gradient(x: torch.Tensor, g: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(N,3,h,w)`` the gradient with respect to the gains of a step ``g`` on ``delta = x * up(theta)``
    (the adjoint of the upsampling applied to ``x * g``, taken by autograd so it is exact)."""
    with torch.enable_grad():
        theta = x.new_zeros(x.shape[0], x.shape[1], *grid, requires_grad=True)
        return torch.autograd.grad((upsample(theta, x.shape[-2:]) * x * g).sum(), theta)[0]


class RelightCloak(PerceptualCloak):
    """:class:`PerceptualCloak` whose steps are smooth gain fields (one gain every ``cell`` px; ``chroma``
    weighs the part that differs between R, G and B, 0: grey light).

    Shape:
        as :class:`PerceptualCloak`.

    Examples:
        >>> x = torch.rand(2, 3, 32, 32) + 0.1
        >>> step = RelightCloak(cell=8).direction(torch.randn(2, 3, 32, 32), None, x, None, [])
        >>> gain = step / x  # grey light (chroma 0): the same gain in R, G and B
        >>> bool(torch.allclose(gain[:, 0], gain[:, 2], atol=1e-5))
        True
    """

    name = "relight-cloak"

    def __init__(self, cell: int = 16, chroma: float = 0.0, texture: bool = False, **kw):
        super().__init__(chroma=chroma, texture=texture, **kw)
        self.cell = int(cell)

    def config(self) -> dict:
        return {**super().config(), "cell": self.cell}

    def direction(self, g: torch.Tensor, mask: torch.Tensor | None, x: torch.Tensor, delta: torch.Tensor,
                  refs: list[Reference]) -> torch.Tensor:
        grid = (max(1, round(x.shape[-2] / self.cell)), max(1, round(x.shape[-1] / self.cell)))
        theta = gain_gradient(x, g, grid)
        grey = theta.mean(1, keepdim=True)
        return x * upsample(grey + self.chroma * (theta - grey), x.shape[-2:])
