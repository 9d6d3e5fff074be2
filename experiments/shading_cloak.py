"""The perceptual cloak with a third term in its bar: mid-scale shading of the lightness.

Looked at side by side at 2x, ``low`` darkens eye sockets, deepens the brow and outlines the nose on
some faces, change that reads as a different face, although it is within the generator's HaarPSI and
CIEDE2000 p95. Measured on 16 CelebA234 validation faces, its lightness change has ~4x the generator's
between 1 and 4 px (:func:`segue.visibility.shading_p95`, median 1.30 against 0.34): HaarPSI's
constant hides new low-contrast structure on flat skin, and the generator's large change is a fine grid
and a smooth tint that this band leaves out. Here each photo's delta must also keep that band's p95 within
the generator's on the same photo plus ``shading_margin`` (L* units; about 1 is a just-noticeable
difference between two patches). ``python benchmarks/cloak_frontier.py --data orl20 --protections
shading:chroma=0.3,texture=true,precision=bfloat16,steps=24,shading_margin=0.5 ...`` measures it.
"""

from __future__ import annotations

import torch

from segue.methods.perceptual_cloak import PerceptualCloak
from segue.visibility import Reference, lightness, shading_of


def shading(ref: Reference, y: torch.Tensor) -> torch.Tensor:
    """``(N,)`` :func:`segue.visibility.shading_p95` of the reference's photos and ``y`` (the reference
    keeps its photos' Lab after the same 3x3 blur)."""
    return shading_of(ref.lab[:, :1], lightness(y))


class ShadingCloak(PerceptualCloak):
    """:class:`PerceptualCloak` whose bar also holds :func:`shading` within the generator's
    plus ``shading_margin`` (a column of HaarPSI's, negated, so the bar's comparisons hold it)."""

    name = "shading-cloak"

    def __init__(self, shading_margin: float = 0.5, **kw):
        super().__init__(**kw)
        self.shading_margin = float(shading_margin)

    def config(self) -> dict:
        return {**super().config(), "shading_margin": self.shading_margin}

    def terms(self, refs: list[Reference], y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, d = PerceptualCloak.terms(refs, y)
        return torch.cat([h, -shading(refs[0], y)[:, None]], 1), torch.cat([d, d.new_zeros(len(d), 1)], 1)

    @torch.no_grad()
    def targets_for(self, x, side_labels, refs=None):
        h, d = super().targets_for(x, side_labels, refs)
        h[:, -1] += self.haarpsi_margin - self.shading_margin  # the shading column's own margin
        d[:, -1] = 0.0
        return h, d
