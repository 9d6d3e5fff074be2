"""Training-time countermeasures: act on every batch inside the victim's loop (soft targets)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from segue.countermeasures import COUNTERMEASURES, BatchTransform
from segue.distortion import linf_pgd, uniform_start


@COUNTERMEASURES.register("cutout")
class Cutout(BatchTransform):
    """Zero one ``size``-fraction square per image at a random centre (DeVries & Taylor: 16 px on 32 px = 0.5).

    Args:
        size: side of the square as a fraction of the image side (0.5).

    Shape:
        ``(model, x (B,3,H,W) in [0,1], y_soft (B,K) probabilities, gen)`` -> ``(x', y_soft')``, same shapes;
        applied to every training batch of the victim (``batch_transforms`` of :func:`segue.victim.train_victim`).
        ``model`` is not used (Cutout, Mixup and CutMix only need the batch).

    Examples:
        >>> import torch
        >>> x, y = torch.rand(4, 3, 32, 32), torch.eye(2)[[0, 1, 0, 1]]
        >>> x2, y2 = Cutout(size=0.5)(None, x, y, torch.Generator().manual_seed(0))
        >>> round((x2 == 0).float().mean().item(), 2) > 0, torch.equal(y2, y)   # a hole, targets kept
        (True, True)
    """

    name = "cutout"

    def __init__(self, size: float = 0.5):
        self.size = float(size)

    def __call__(self, model, x, y, gen):
        n, _, h, w = x.shape
        ch, cw = max(1, round(h * self.size)), max(1, round(w * self.size))
        cy = torch.randint(0, h, (n,), generator=gen)
        cx = torch.randint(0, w, (n,), generator=gen)
        rows = torch.arange(h).view(1, h, 1)
        cols = torch.arange(w).view(1, 1, w)
        y0, x0 = (cy - ch // 2).view(n, 1, 1), (cx - cw // 2).view(n, 1, 1)
        hole = (rows >= y0) & (rows < y0 + ch) & (cols >= x0) & (cols < x0 + cw)
        return x * (~hole).unsqueeze(1).to(x.device, x.dtype), y


def _beta(alpha: float, gen: torch.Generator) -> float:
    """One Beta(alpha, alpha) draw from the seeded generator (via two Gamma draws)."""
    a = torch._standard_gamma(torch.tensor([alpha, alpha]), generator=gen)
    return float(a[0] / a.sum())


@COUNTERMEASURES.register("mixup")
class Mixup(BatchTransform):
    """Mixup (Zhang et al. 2018): convex combination of the batch with a shuffled copy, lam ~ Beta(alpha, alpha).

    Args:
        alpha: Beta parameter (1.0: lam uniform).

    Shape:
        as :class:`Cutout`.

    Examples:
        >>> import torch
        >>> x, y = torch.rand(4, 3, 32, 32), torch.eye(2)[[0, 1, 0, 1]]
        >>> x2, y2 = Mixup(alpha=1.0)(None, x, y, torch.Generator().manual_seed(0))
        >>> x2.shape, torch.allclose(y2.sum(1), torch.ones(4))   # targets stay distributions
        (torch.Size([4, 3, 32, 32]), True)
    """

    name = "mixup"

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)

    def draw(self, x: torch.Tensor, gen: torch.Generator) -> tuple[float, torch.Tensor]:
        """The mixing weight and the shuffled partner of every image (in this order, from ``gen``)."""
        lam = _beta(self.alpha, gen)
        return lam, torch.randperm(len(x), generator=gen).to(x.device)

    def __call__(self, model, x, y, gen):
        lam, perm = self.draw(x, gen)
        return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


@COUNTERMEASURES.register("cutmix")
class CutMix(Mixup):
    """CutMix (Yun et al. 2019): paste a box from a shuffled copy; targets mixed by the box's area.

    Args:
        alpha: Beta parameter of the box's area fraction (1.0).

    Shape:
        as :class:`Cutout`.

    Examples:
        >>> import torch
        >>> black_white = torch.cat([torch.zeros(1, 3, 16, 16), torch.ones(1, 3, 16, 16)])
        >>> x2, _ = CutMix()(None, black_white, torch.eye(2), torch.Generator().manual_seed(1))
        >>> sorted(x2.unique().tolist())   # pixels pasted, never blended (Mixup would blend)
        [0.0, 1.0]
    """

    name = "cutmix"

    def __call__(self, model, x, y, gen):
        lam, perm = self.draw(x, gen)
        h, w = x.shape[-2:]
        rh, rw = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
        cy, cx = int(torch.randint(0, h, (1,), generator=gen)), int(torch.randint(0, w, (1,), generator=gen))
        y0, y1 = max(cy - rh // 2, 0), min(cy + rh // 2, h)
        x0, x1 = max(cx - rw // 2, 0), min(cx + rw // 2, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
        return x, lam * y + (1 - lam) * y[perm]


@COUNTERMEASURES.register("adv")
class AdversarialTraining(BatchTransform):
    """Madry-style adversarial training: replace the batch by PGD L-inf examples of budget ``rho``.

    The strongest known countermeasure to error-minimising noise (robust learning ignores
    perturbations smaller than ``rho``). ``steps`` PGD steps of ``step_size`` from a uniform random
    start, maximising the soft-target cross-entropy; the model is in eval mode during the attack
    (BatchNorm statistics are not updated by it) and back in train mode afterwards.

    Args:
        rho: L-inf budget of the attack (4/255).
        steps: PGD steps (5).
        step_size: default rho/4.

    Shape:
        ``(model, x (B,3,H,W) in [0,1], y_soft (B,K) probabilities, gen)`` -> ``(x', y_soft')``, same shapes;
        applied to every training batch of the victim (``batch_transforms`` of :func:`segue.victim.train_victim`).

    Examples:
        >>> import torch
        >>> from segue.models import create_model
        >>> model, gen = create_model("resnet18", num_classes=2), torch.Generator().manual_seed(0)
        >>> x, y = torch.rand(4, 3, 32, 32), torch.eye(2)[[0, 1, 0, 1]]
        >>> x2, _ = AdversarialTraining(rho=4 / 255, steps=2)(model, x, y, gen)
        >>> bool((x2 - x).abs().max() <= 4 / 255 + 1e-6)
        True
    """

    name = "adv"

    def __init__(self, rho: float = 4 / 255, steps: int = 5, step_size: float | None = None):
        self.rho, self.steps = float(rho), int(steps)
        self.step_size = float(step_size) if step_size is not None else self.rho / 4

    def params(self) -> dict:
        return {"rho_255": round(self.rho * 255, 3), "steps": self.steps}

    def __call__(self, model, x, y, gen):
        delta = linf_pgd(model, x, lambda logits: soft_cross_entropy(logits, y), self.rho, self.steps,
                         self.step_size, uniform_start(x, self.rho, gen))
        return (x + delta).clamp(0, 1).detach(), y


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with probability targets (mean over the batch)."""
    return -(target * F.log_softmax(logits, 1)).sum(1).mean()
