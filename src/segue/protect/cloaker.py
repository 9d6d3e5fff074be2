"""``segue protect --cloak``: the per-photo feature cloak in the generator's place.

The shipped generators do not stop pretrained face recognisers (an attacker who embeds the photos
with dlib or FaceNet and fits a classifier). The per-photo cloak below is the one thing measured in
this project that does, on people nothing here was trained on (docs/attacks.md). It is PGD, not a
generator: 20 FaceNet forward and backward passes per photo, ~0.9-1 s per 112-px face on 2 CPU cores
against the generator's milliseconds, and it does not stop a network trained from scratch on the
photos. :class:`Cloaker` gives it the generator's call, so every file goes through the one
:class:`segue.protect.Protector` path (regions, paste-back, the L-inf check, the report).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segue.methods.feature_cloak import FeatureCloak
from segue.visibility import VISIBLE, VisibilityBudget

#: The settings measured on held-out people (docs/attacks.md): the FaceNet port alone, momentum,
#: input diversity with a small affine warp, L2 steps under a 30 dB PSNR floor inside 16/255, and
#: only the "away from this photo's own embedding" term - no decoy, so each photo is protected on
#: its own, with no pool of other people's photos to ship. Chosen on ORL people 0-19.
CLOAK_SETTINGS = dict(eps=16 / 255, extractors=("facenet-torch",), steps=20, momentum=1.0,
                      affine_diversity=True, psnr_floor=30.0, step_norm="l2")


def create_cloak(device: str | torch.device = "cpu", seed: int = 0, **overrides) -> FeatureCloak:
    """The loaded :class:`FeatureCloak` of ``segue protect --cloak`` (:data:`CLOAK_SETTINGS`, ``overrides`` on top)."""
    return FeatureCloak(**{**CLOAK_SETTINGS, **overrides}, seed=seed, device=device).load()


#: ``image_size=0`` (``create_cloaker(..., native_size=True)``; ``segue protect`` does not offer it, the
#: change is visible: docs/attacks.md): the largest side a face is cloaked at. A larger face is cloaked
#: at this side and its delta resized onto it: the projection's cost grows with the pixels, FaceNet's
#: input stays 160 px.
NATIVE_MAX_SIDE = 256


def delta_at_side(perturb, x: torch.Tensor, side_labels: torch.Tensor, side: int) -> torch.Tensor:
    """The delta ``perturb(images, labels) -> protected`` makes for ``x`` ``(N,3,H,W)`` when run with the
    longer side at ``side`` px: the photos resized (antialiased, 8-bit), protected there, and the delta
    resized back onto them (bilinear)."""
    h, w = x.shape[-2:]
    f = side / max(h, w)
    small = F.interpolate(x, size=(round(h * f), round(w * f)), mode="bilinear", antialias=True,
                          align_corners=False).clamp(0, 1).mul(255).round().div(255)
    delta = perturb(small, side_labels).to(x.device) - small
    return F.interpolate(delta, size=(h, w), mode="bilinear", align_corners=False)


@dataclass
class CloakerConfig:
    """What the protect pipeline reads from a generator's config: the size it works at."""

    image_size: int = 112


class Cloaker(nn.Module):
    """A :class:`FeatureCloak` with a generator's interface: ``cloaker(x, labels) -> delta``.

    Args:
        method: a loaded :class:`FeatureCloak` (default: :data:`CLOAK_SETTINGS`, seed 0, on ``device``).
        image_size: the size each face is cloaked at (112: where it was measured; 0: the face's own
            size up to ``max_side``, so the pattern does not grow with the face).
        device: where FaceNet runs.
        max_side: with ``image_size=0``, the largest side cloaked at (:data:`NATIVE_MAX_SIDE`).

    Shape:
        ``forward(x (N,3,H,W) in [0,1], side_labels (N,))`` -> ``delta`` ``(N,3,H,W)``, ``x + delta``
        8-bit, ``|delta| <= eps`` and PSNR >= the floor; the side labels are not used (no decoy).

    Examples:
        >>> cloaker = Cloaker()
        >>> x = torch.rand(2, 3, 112, 112)
        >>> delta = cloaker(x, torch.zeros(2, dtype=torch.long))
        >>> bool(delta.abs().max() <= cloaker.eps + 1e-6), round(cloaker.eps * 255)
        (True, 16)
    """

    #: :func:`segue.protect.delta.generator_deltas` pads each chunk to the batch size so a
    #: generator's rows are bit-identical whatever their neighbours; PGD on padding is wasted work.
    fixed_batch = False
    #: Per-photo PGD: each file's visibility depends on its own optimisation, so every file is measured.
    visibility_every = 1

    def __init__(self, method: FeatureCloak | None = None, image_size: int = 112, device: str | torch.device = "cpu",
                 visibility_budget: VisibilityBudget = VISIBLE, max_side: int = NATIVE_MAX_SIDE):
        super().__init__()
        #: what every written file is held to: ``VISIBLE`` for the first-shipped cloak (HaarPSI ~0.81 against
        #: the generator's ~0.97 on the same photos, docs/gallery.md); a strength's own (segue.protect.presets)
        self.visibility_budget = visibility_budget
        self.method = method if method is not None else create_cloak(device)
        if not self.method.models:
            raise ValueError("load or fit the FeatureCloak first")
        self.extractors = nn.ModuleList(self.method.models)  # parameters(): the device the pipeline sends photos to
        self.eps, self.config, self.max_side = self.method.eps, CloakerConfig(image_size), int(max_side)

    def forward(self, x: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        # The pipeline runs under inference mode; PGD needs gradients, and a clone of an inference
        # tensor made outside it is an ordinary one.
        with torch.inference_mode(False), torch.enable_grad():
            x = x.clone()
            if max(x.shape[-2:]) <= self.max_side:
                return self.method.perturb(x, side_labels).to(x.device) - x
            return delta_at_side(self.method.perturb, x, side_labels, self.max_side)

    def protect(self, x: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        """Cloaked image (8-bit values), as :meth:`segue.generator.Generator.protect`."""
        return (x + self(x, side_labels)).clamp(0, 1)

    def describe(self) -> dict:
        """The settings, for ``report.json``."""
        size = {"image_size": self.config.image_size} if self.config.image_size else {"image_size": "native",
                                                                                     "max_side": self.max_side}
        return {"method": "cloak", **self.method.config(), **size, "visibility_budget": self.visibility_budget.to_dict()}
