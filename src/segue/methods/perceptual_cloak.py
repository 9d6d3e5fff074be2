"""The per-photo cloak held to a visibility budget instead of a PSNR floor.

The shipped cloak (:class:`segue.methods.feature_cloak.FeatureCloak`, ``segue protect --cloak``) spends a
30 dB PSNR budget in L2 steps, and the steps pour it into smooth, saturated colour patterns on the
skin: HaarPSI ~0.81 against the default generator's ~0.97 on the same photos (docs/gallery.md). Here
every step is followed by a projection onto a visibility budget measured with the same HaarPSI and
CIEDE2000 as every written file (:mod:`segue.visibility`): each photo's delta is scaled down (never
up) until it is no more visible than the default generator's delta on that same photo, less a
margin. Two shapings spend the budget where the eye tolerates it (leads of the visibility issue):
``chroma`` < 1 damps the colour part of each step (colour blotches show on skin long before
luminance texture), and ``texture`` weights each step by the local contrast of the photo (changes
hide in hair, edges and textured background, not on flat skin).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segue.methods.base import quantise
from segue.methods.feature_cloak import FeatureCloak
from segue.visibility import MIN_SIDE, Reference

BISECTION_STEPS = 5  # the scale found to 1/32 of the step's delta


def largest_scale(within, n: int, steps: int = BISECTION_STEPS, guess: torch.Tensor | None = None) -> torch.Tensor:
    """``(n,)`` the largest factor on the grid ``k / 2**steps`` in [0, 1] by which each photo's delta may be
    scaled and stay within its bar; ``within(idx, scale)`` says which photos ``idx`` are within at ``scale``.

    Each photo is measured at 1, and bisected from there when it is beyond. With ``guess`` ``(n,)``
    (the factors the previous step found), a photo whose guess is below 1 is measured at its guess
    instead and the search walks out from it (offsets 1, 2, 4, ...) until the answer is bracketed, then
    bisects: about 2-3 measures a step instead of 6 once a photo sits at its bar, as the factor moves by
    a grid point or so from step to step. Both find the same grid point wherever ``within`` is
    monotone in the scale (tests/test_perceptual_cloak.py)."""
    grid = 2**steps
    start = torch.full((n,), grid, dtype=torch.long) if guess is None else (guess * grid).floor().long().clamp(1, grid)
    lo = torch.zeros(n, dtype=torch.long)  # within (0 by convention, never measured)
    hi = torch.full((n,), grid + 1, dtype=torch.long)  # beyond (grid + 1: nothing measured beyond yet)
    probe, offset = start.clone(), torch.ones(n, dtype=torch.long)
    walking, direction = start < grid, torch.zeros(n, dtype=torch.long)  # walking out from the guess: +1 up, -1 down
    while True:
        idx = (hi - lo > 1).nonzero().flatten()
        if not len(idx):
            return lo.float() / grid
        at = probe[idx]
        good = within(idx, at.float() / grid)
        lo[idx], hi[idx] = torch.where(good, at, lo[idx]), torch.where(good, hi[idx], at)
        first = walking[idx] & (direction[idx] == 0)  # the guess itself was measured
        d = torch.where(first, torch.where(good, 1, -1), direction[idx])
        off = torch.where(first, offset[idx], 2 * offset[idx])
        nxt = (start[idx] + d * off).clamp(0, grid)
        # the walk goes on while each measure agrees with its direction and the next point is open
        on = walking[idx] & torch.where(d > 0, good, ~good) & (nxt > lo[idx]) & (nxt < hi[idx])
        probe[idx] = torch.where(on, nxt, ((lo[idx] + hi[idx]) // 2).clamp_max(grid))
        offset[idx], walking[idx], direction[idx] = off, on, d


def local_contrast(x: torch.Tensor, size: int = 5, floor: float = 0.25) -> torch.Tensor:
    """``(N,1,H,W)`` in [floor, 1]: the local standard deviation of luminance, over its 90th percentile."""
    y = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    pad = size // 2
    mean = F.avg_pool2d(y, size, 1, pad, count_include_pad=False)
    std = (F.avg_pool2d(y * y, size, 1, pad, count_include_pad=False) - mean**2).clamp_min(0).sqrt()
    top = torch.quantile(std.flatten(1), 0.9, dim=1).clamp_min(1e-4)[:, None, None, None]
    return (std / top).clamp(floor, 1.0)


def shipped_protect(generator, x: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
    """``x`` protected by ``generator`` as ``segue protect`` ships it (:func:`segue.protect.delta.perturb`):
    at the generator's own size, its delta resized onto ``x`` - on a larger face, the pattern a user gets."""
    from segue.protect.delta import generator_size, perturb

    return torch.stack(perturb(generator, list(x), side_labels, generator_size(generator)))


class PerceptualCloak(FeatureCloak):
    """FaceNet-surrogate PGD away from each photo's own embedding, within the generator's visibility.

    Args:
        eps: L-inf cap (16/255); visibility binds first.
        haarpsi_margin, delta_e_margin: how much more visible than the default generator's delta on
            the same photo each delta may be (0, 0: no more visible).
        chroma: weight of the colour part of each step (1: as the gradient says, 0: grey steps).
        texture: weight each step by the photo's local contrast (:func:`local_contrast`).
        steps, momentum, affine_diversity, seed, device, extractors, batch, precision: as :class:`FeatureCloak`
            (defaults: 20 steps, MI 1.0, input diversity with a small warp, FaceNet, float32; the shipped
            strengths take :data:`segue.protect.presets.STEPS` steps at :data:`~segue.protect.presets.PRECISION`).
        reference: the generator whose visibility is the bar (a loaded one, or a shipped name).
        viewing_scales: at how many scales the bar holds: 1, the photo as written; 2, also at half its
            size (2x2 averages: the photo seen smaller or from further away, where a fine pattern such
            as the generator's averages away and shading that follows the face does not).

    Shape:
        ``perturb(images (N,3,H,W) in [0,1], side_labels (N,))`` -> ``(N,3,H,W)``, 8-bit.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> class Tiny(nn.Module):
        ...     def __init__(self):
        ...         super().__init__(); self.conv = nn.Conv2d(3, 8, 5, stride=4)
        ...     def forward(self, x):
        ...         return F.normalize(self.conv(x).flatten(1), dim=1)
        >>> torch.manual_seed(0) and None
        >>> cloak = PerceptualCloak(extractors=[Tiny()], steps=3).load()
        >>> x = torch.rand(2, 3, 32, 32)
        >>> out = cloak.perturb(x, torch.zeros(2, dtype=torch.long))
        >>> bool((out - x).abs().max() <= 16 / 255 + 1 / 255)
        True
    """

    name = "perceptual-cloak"

    def __init__(self, eps: float = 16 / 255, seed: int = 0, device: str | torch.device = "cpu",
                 extractors: tuple | list = ("facenet-torch",), steps: int = 20, momentum: float = 1.0,
                 affine_diversity: bool = True, haarpsi_margin: float = 0.0, delta_e_margin: float = 0.0,
                 chroma: float = 1.0, texture: bool = False, batch: int = 16, reference="default",
                 step_rms: float = 0.004, viewing_scales: int = 1, precision: str = "float32"):
        super().__init__(eps=eps, seed=seed, device=device, extractors=extractors, steps=steps, momentum=momentum,
                         affine_diversity=affine_diversity, psnr_floor=0.0, step_norm="sign", batch=batch,
                         precision=precision)
        self.haarpsi_margin, self.delta_e_margin = float(haarpsi_margin), float(delta_e_margin)
        self.chroma, self.texture, self.step_rms = float(chroma), bool(texture), float(step_rms)
        self.reference, self.viewing_scales = reference, int(viewing_scales)
        self._reference_model = None

    def config(self) -> dict:
        return {**super().config(), "haarpsi_margin": self.haarpsi_margin, "delta_e_margin": self.delta_e_margin,
                "chroma": self.chroma, "texture": self.texture, "step_rms": self.step_rms,
                "reference": self.reference if isinstance(self.reference, str) else "generator",
                "viewing_scales": self.viewing_scales}

    @property
    def reference_model(self):
        if self._reference_model is None:
            if isinstance(self.reference, str):
                from segue.checkpoint import load_generator

                self._reference_model = load_generator(self.reference, self.device)[0]
            else:
                self._reference_model = self.reference.eval()
        return self._reference_model

    @torch.no_grad()
    def references(self, x: torch.Tensor) -> list[Reference]:
        """The originals' :class:`segue.visibility.Reference` at each of the :attr:`viewing_scales`
        (computed once a batch: the projection measures them against every candidate)."""
        return [Reference.of(x if k == 0 else F.avg_pool2d(x, 2**k)) for k in range(self.viewing_scales)
                if k == 0 or min(x.shape[-2:]) // 2**k >= MIN_SIDE]

    @staticmethod
    def terms(refs: list[Reference], y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N,S)`` HaarPSI and CIEDE2000 p95 of the originals and ``y`` at each scale of ``refs``."""
        hs, ds = [], []
        for k, ref in enumerate(refs):
            h, _, d = ref.terms(y if k == 0 else F.avg_pool2d(y, 2**k))
            hs.append(h)
            ds.append(d)
        return torch.stack(hs, 1), torch.stack(ds, 1)

    @torch.no_grad()
    def targets_for(self, x: torch.Tensor, side_labels: torch.Tensor,
                    refs: list[Reference] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Each photo's bar: the reference generator's HaarPSI and CIEDE2000 p95 on it, less the margins."""
        ref = shipped_protect(self.reference_model, x, side_labels.to(x.device))
        h, d = self.terms(refs or self.references(x), quantise(x, ref - x, 1.0))
        return h - self.haarpsi_margin, d + self.delta_e_margin

    @torch.no_grad()
    def scales(self, x: torch.Tensor, delta: torch.Tensor, h_min: torch.Tensor, d_max: torch.Tensor,
               refs: list[Reference] | None = None, guess: torch.Tensor | None = None) -> torch.Tensor:
        """``(N,)`` the largest factor in [0, 1] by which ``delta`` keeps each photo within its bar
        (:func:`largest_scale`; ``guess``: the previous step's factors, where the search starts)."""
        refs = refs or self.references(x)

        def within(idx: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            h, d = self.terms([r.select(idx) for r in refs], (x[idx] + scale[:, None, None, None] * delta[idx]).clamp(0, 1))
            return ((h >= h_min[idx]) & (d <= d_max[idx])).all(1)

        return largest_scale(within, len(x), guess=guess)

    def shape_step(self, g: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """The step's colour damped by ``chroma`` and, with a texture mask, weighted by local contrast."""
        grey = g.mean(1, keepdim=True)
        g = grey + self.chroma * (g - grey)
        return g * mask if mask is not None else g

    def direction(self, g: torch.Tensor, mask: torch.Tensor | None, x: torch.Tensor, delta: torch.Tensor,
                  refs: list[Reference]) -> torch.Tensor:
        """A step's direction before its RMS normalisation: :meth:`shape_step` of the momentum ``g``
        (the hook an experiment overrides to steer it with the photo ``x``, ``delta`` and the bar's ``refs``)."""
        return self.shape_step(g, mask)

    def attack(self, x: torch.Tensor, targets, start=None, radius=None) -> torch.Tensor:
        labels = getattr(self, "_labels", torch.zeros(len(x), dtype=torch.long))
        refs = self.references(x)
        h_min, d_max = self.targets_for(x, labels, refs)
        mask = local_contrast(x) if self.texture else None
        clean = self.clean_embeddings(x)
        delta = torch.zeros_like(x, requires_grad=True)
        g = torch.zeros_like(x)
        scale = None
        for _ in range(self.steps):
            inp = self.step_input((x + delta).clamp(0, 1))
            grad = self.gradient(inp, delta, clean, targets)
            g = self.momentum * g + grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            with torch.no_grad():
                step = self.direction(g, mask, x, delta, refs)
                delta += self.step_rms * step / step.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
                delta.clamp_(-self.eps, self.eps)
                delta.copy_((x + delta).clamp(0, 1) - x)
                scale = self.scales(x, delta, h_min, d_max, refs, guess=scale)
                delta.mul_(scale[:, None, None, None].to(delta))
        self._bar = (h_min, d_max, refs)
        return delta.detach()

    def batch_delta(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._labels = y
        return self.attack(x, self.targets(y))

    def round_to_budget(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """8-bit, within eps; where rounding pushed a photo past its bar, its delta shrinks (x0.9, up to 10 times)."""
        h_min, d_max, refs = self._bar
        out = quantise(x, delta, self.eps)
        for _ in range(10):
            h, d = self.terms(refs, out)
            over = ((h < h_min) | (d > d_max)).any(1)
            if not over.any():
                break
            delta = torch.where(over[:, None, None, None], 0.9 * delta, delta)
            out = quantise(x, delta, self.eps)
        return out
