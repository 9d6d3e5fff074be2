"""The one interface every protection ("noise method") implements.

Modelled on torchattacks (every attack is one class with the same call) and timm
(``create_method(name, **kw)``)::

    method = create_method("em", mode="classwise", max_seconds=600)
    method.fit(train, side_labels)                 # may be a no-op
    protected = method.perturb(train.images, side_labels)

``perturb`` returns images in [0,1], quantised to 8 bits (what a saved PNG holds), with
``|protected - images| <= eps`` for 8-bit-valued inputs. ``fit_info`` records what fitting
did (passes, stopping reason, seconds) so a benchmark can report it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from segue.data import FaceSet
from segue.quality import rms, rms_cap


def quantise(images: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """``images + delta`` clamped to [0,1] and rounded to 8 bits, within ``eps`` of ``images``.

    Computed in 1/255 steps so the result is exactly on the 8-bit grid and, for 8-bit-valued
    ``images`` (what every loader here returns), ``|out - images| <= eps`` exactly; an off-grid
    input is first rounded to the grid (adding at most half a step).
    """
    base = (images.clamp(0, 1) * 255).round()
    target = ((images + delta.clamp(-eps, eps)).clamp(0, 1) * 255).round()
    step = math.floor(eps * 255 + 1e-6)
    return (base + (target - base).clamp(-step, step)).clamp(0, 255) / 255


def quantise_within(images: torch.Tensor, delta: torch.Tensor, eps: float, psnr_floor: float) -> torch.Tensor:
    """:func:`quantise`; where 8-bit rounding pushed an image below ``psnr_floor`` dB, its ``delta``
    shrinks (x0.97, up to 20 times) until it is not (``psnr_floor <= 0``: no floor)."""
    out = quantise(images, delta, eps)
    if psnr_floor <= 0:
        return out
    radius = rms_cap(psnr_floor)
    for _ in range(20):
        over = rms(out - images) > radius
        if not over.any():
            break
        delta = torch.where(over[:, None, None, None], 0.97 * delta, delta)
        out = quantise(images, delta, eps)
    return out


class NoiseMethod:
    """Base class: a protection that turns training images into unlearnable ones.

    One call for every method (as torchattacks has one for every attack): ``fit`` (may be a no-op),
    then ``perturb``. Subclasses set ``name`` and override ``perturb`` (and ``fit`` if they learn).

    Args:
        eps: L-inf budget in [0, 1] units (8/255).
        seed: seeds whatever the method draws.
        device: where it computes.

    Shape:
        ``perturb(images (N,3,H,W) in [0,1], side_labels (N,))`` -> ``(N,3,H,W)``, 8-bit quantised,
        ``|out - images| <= eps`` for 8-bit-valued inputs.

    Examples:
        >>> import torch
        >>> from segue.methods import create_method
        >>> x = torch.randint(0, 256, (2, 3, 16, 16)) / 255
        >>> out = create_method("random", eps=4 / 255).perturb(x, torch.tensor([0, 1]))
        >>> bool(((out - x).abs() <= 4 / 255 + 1e-6).all())
        True
    """

    name: str = "base"

    def __init__(self, eps: float = 8 / 255, seed: int = 0, device: str | torch.device = "cpu"):
        self.eps = float(eps)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.fit_info: dict[str, Any] = {}

    def fit(self, train: FaceSet, side_labels: torch.Tensor) -> "NoiseMethod":
        """Learn whatever the method needs from the data to protect (default: nothing)."""
        return self

    def perturb(self, images: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        """Protected ``(N,3,H,W)`` images in [0,1], 8-bit quantised, ``L-inf <= eps``."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The method's settings, for results files."""
        return {"name": self.name, "eps": self.eps, "seed": self.seed}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"


class NoProtection(NoiseMethod):
    """The clean baseline: returns the images unchanged (8-bit quantised).

    Shape:
        ``(N,3,H,W)`` -> ``(N,3,H,W)``.

    Examples:
        >>> import torch
        >>> x = torch.randint(0, 256, (1, 3, 8, 8)) / 255
        >>> torch.equal(NoProtection().perturb(x, torch.tensor([0])), x)
        True
    """

    name = "none"

    def perturb(self, images: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        return (images.clamp(0, 1) * 255).round() / 255
