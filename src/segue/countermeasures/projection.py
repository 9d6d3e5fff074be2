"""Orthogonal projection (Sandoval-Segura et al., "What Can We Learn from Unlearnable Datasets?", NeurIPS 2023).

Many unlearnable perturbations are (nearly) linearly separable by class: that is what makes them
a shortcut. A linear classifier fitted on the protected *pixels* finds those directions; the
attacker projects them out of every training image and trains the victim on what is left.
Costs seconds: one logistic regression on flattened images, one projection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segue.countermeasures import COUNTERMEASURES, Countermeasure


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, steps: int = 100,
               weight_decay: float = 1e-4) -> torch.Tensor:
    """``(K, D)`` weights of a multinomial logistic regression on ``x`` ``(N, D)`` (full-batch L-BFGS)."""
    w = torch.zeros(num_classes, x.shape[1], requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, y) + weight_decay * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


@COUNTERMEASURES.register("projection")
class OrthogonalProjection(Countermeasure):
    """Project the class directions of a linear classifier on the protected pixels out of every image.

    Args:
        steps: L-BFGS iterations of the logistic regression (100).
        weight_decay: its L2 penalty (1e-4).

    Shape: ``apply(images (N,3,H,W), labels (N,))`` -> ``(N,3,H,W)``. The result is *not*
    clamped or quantised: the attacker trains on it directly, and clamping would put back
    part of what was removed. The directions are removed from each image's difference to the
    mean training image, so the projection takes out no brightness that all photos share.

    Examples:
        >>> import torch
        >>> x, labels = torch.rand(8, 3, 16, 16), torch.arange(8) % 2
        >>> x[labels == 1, 0, :4, :4] += 0.5                      # a class-wise shortcut
        >>> OrthogonalProjection(steps=20).apply(x, labels).shape
        torch.Size([8, 3, 16, 16])
    """

    name = "projection"
    needs_labels = True

    def __init__(self, steps: int = 100, weight_decay: float = 1e-4):
        self.steps, self.weight_decay = int(steps), float(weight_decay)

    def apply(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        flat = images.flatten(1).float()
        with torch.enable_grad():
            w = fit_linear(flat, labels.long(), int(labels.max()) + 1, self.steps, self.weight_decay)
        q, _ = torch.linalg.qr(w.T)  # (D, K) orthonormal basis of the class directions
        centred = flat - flat.mean(0)
        return (flat - (centred @ q) @ q.T).view_as(images)
