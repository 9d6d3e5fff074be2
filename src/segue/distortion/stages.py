"""The distortion stages: each a small module with the same call ``stage(x, y, model) -> x'``.

PGD acts on G's input; the others on the protected image, differentiably (see :mod:`segue.distortion`).
"""

from __future__ import annotations

import kornia.enhance
import torch
import torch.nn.functional as F
from torch import nn

from segue.side_info import side_loss


class DistortionStage(nn.Module):
    """Base class of every stage: ``forward(x, y, model)``; ``y`` and ``model`` are only used by PGD.

    A stage with ``on_input = True`` acts on G's input (the paper's PGD), the others on the
    protected image ``x + delta`` and must stay differentiable, so G learns a delta that survives them.

    Shape:
        ``forward(x (N,3,H,W) in [0,1], y (N,) side labels or None, model or None)`` -> ``(N,3,H,W)``.

    Examples:
        >>> import torch
        >>> class Darken(DistortionStage):
        ...     def forward(self, x, y=None, model=None):
        ...         return x * 0.9
        >>> round(Darken()(torch.ones(1, 3, 4, 4)).max().item(), 2)
        0.9
    """

    on_input = False  # True: applied to G's input; False: applied to the protected image

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, model: nn.Module | None = None) -> torch.Tensor:
        raise NotImplementedError


class KorniaStage(DistortionStage):
    """Wraps any image -> image callable (a kornia augmentation or function) as a stage.

    Args:
        fn: the callable, e.g. ``kornia.augmentation.RandomJPEG(...)`` (differentiable JPEG).

    Shape:
        ``(N,3,H,W)`` -> ``(N,3,H,W)`` (whatever ``fn`` returns).

    Examples:
        >>> import torch, kornia
        >>> blur = KorniaStage(kornia.filters.GaussianBlur2d((3, 3), (0.5, 0.5)))
        >>> blur(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x, y=None, model=None):
        return self.fn(x)


class Sharpness(DistortionStage):
    """PIL-style sharpness with a fixed factor (factor 1 = identity), on the protected image.

    Args:
        factor: 2.0 in the paper's distortion layer.

    Shape:
        ``(N,3,H,W)`` -> ``(N,3,H,W)``.

    Examples:
        >>> import torch
        >>> x = torch.rand(1, 3, 16, 16)
        >>> torch.allclose(Sharpness(1.0)(x), x), Sharpness(2.0)(x).shape
        (True, torch.Size([1, 3, 16, 16]))
    """

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x, y=None, model=None):
        return kornia.enhance.sharpness(x, self.factor)


class PGD(DistortionStage):
    """L-inf PGD that *maximises* the surrogate's loss within ``rho`` (zero start, step rho/steps).

    Acts on the generator's input (the paper's distortion, as the official Segue code); the offset
    is detached (no gradient to G through it).

    Args:
        rho: L-inf radius in [0, 1] units (1/255).
        steps: signed-gradient steps (5).

    Shape:
        ``forward(x (N,3,H,W), y (N,) side labels, model)`` -> ``(N,3,H,W)``, ``|out - x| <= rho``;
        without ``model`` or ``y`` it returns ``x``.

    Examples:

        >>> f = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))      # any classifier of side labels
        >>> x, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 3])
        >>> bool((PGD(rho=2 / 255, steps=2)(x, y, f) - x).abs().max() <= 2 / 255 + 1e-6)
        True
    """

    on_input = True

    def __init__(self, rho: float = 1 / 255, steps: int = 5):
        super().__init__()
        self.rho, self.steps = rho, steps
        self.step_size = rho / max(steps, 1)

    def forward(self, x, y=None, model=None):
        if model is None or y is None or self.steps == 0 or self.rho == 0:
            return x
        eta = linf_pgd(model, x, lambda logits: side_loss(logits, y), self.rho, self.steps, self.step_size)
        return (x + eta).clamp(0, 1)


def uniform_start(x: torch.Tensor, rho: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """A uniform random PGD start in [-rho, rho] (drawn on the CPU generator ``gen``, then moved to x's
    device), shared by the attacker's adversarial training and the distortion layer's copy of it."""
    return ((torch.rand(x.shape, generator=gen) * 2 - 1) * rho).to(x.device)


def linf_pgd(model: nn.Module, x: torch.Tensor, loss_fn, rho: float, steps: int, step_size: float,
             start: torch.Tensor | None = None) -> torch.Tensor:
    """The offset within ``rho`` (L-inf) that raises ``loss_fn(model(x + eta))``: signed-gradient ascent,
    model in eval mode. Shared by the distortion layer and the attacker's adversarial training."""
    was_training = model.training
    model.eval()
    base = x.detach()
    eta = torch.zeros_like(base) if start is None else start
    for _ in range(steps):
        eta.requires_grad_(True)
        loss = loss_fn(model((base + eta).clamp(0, 1)))
        (grad,) = torch.autograd.grad(loss, eta)
        eta = (eta.detach() + step_size * grad.sign()).clamp(-rho, rho)
    model.train(was_training)
    return eta.detach()


class RandomRescale(DistortionStage):
    """Downscale by a random factor in ``[min_factor, 1)``, then back up (bilinear, differentiable).

    Platforms resize uploads; a perturbation that lives in the finest pixels does not survive a 2x
    downscale. Applied to the whole batch with probability ``p`` (one factor per batch).

    Args:
        p: probability per batch.
        min_factor: smallest scale factor (0.25).

    Shape:
        ``(N,3,H,W)`` -> ``(N,3,H,W)``.

    Examples:
        >>> import torch
        >>> RandomRescale(p=1.0, min_factor=0.5)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(self, p: float, min_factor: float = 0.25):
        super().__init__()
        self.p, self.min_factor = p, min_factor

    def forward(self, x, y=None, model=None):
        if torch.rand(()) >= self.p:
            return x
        f = self.min_factor + (1 - self.min_factor) * torch.rand(()).item()
        h, w = x.shape[-2:]
        small = F.interpolate(x, size=(max(round(h * f), 1), max(round(w * f), 1)), mode="bilinear",
                              antialias=True, align_corners=False)
        return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


class AdversarialNoise(DistortionStage):
    """PGD on the *protected image*: adds the offset r (||r||_inf <= rho) that most raises f's loss.

    Why (issue 6): a victim that trains adversarially sees x + delta + r, and the input PGD never
    shows G that - G minimising f's loss here is REM's min-min-max, and f trained through it is
    adversarially trained as REM's surrogate is. The attack matches the adversarial-training
    countermeasure's (random start, step rho/4); r is detached, delta keeps its gradient.

    Args:
        rho: L-inf radius of r (``robust_rem``: 4/255).
        steps: PGD steps (5).

    Shape:
        ``forward(x (N,3,H,W), y (N,), model)`` -> ``(N,3,H,W)``, ``|out - x| <= rho``.

    Examples:

        >>> _ = torch.manual_seed(0)
        >>> f, people = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4)), torch.tensor([0, 3])
        >>> clean = torch.rand(2, 3, 16, 16)
        >>> attacked = AdversarialNoise(rho=4 / 255, steps=2)(clean, people, f)
        >>> bool(side_loss(f(attacked), people) > side_loss(f(clean), people))   # f's loss raised
        True
    """

    def __init__(self, rho: float, steps: int = 5):
        super().__init__()
        self.rho, self.steps = rho, steps

    def forward(self, x, y=None, model=None):
        if model is None or y is None or self.steps == 0 or self.rho == 0:
            return x
        with torch.enable_grad():  # f's input gradient also inside no_grad callers (surrogate_input)
            r = linf_pgd(model, x.detach(), lambda logits: side_loss(logits, y), self.rho, self.steps,
                         self.rho / 4, uniform_start(x, self.rho))
        return (x + r).clamp(0, 1)
