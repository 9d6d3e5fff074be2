"""Countermeasures an attacker may apply to protected photos before / while training.

Two kinds behind one registry (model: kornia's augmentations, each a small object):

* **data** countermeasures transform the whole (protected) training set once, before the
  victim is trained: real JPEG re-encoding through PIL (``jpeg``, ``quality``), ``grayscale``
  (ITU-R 601 luma copied to 3 channels), ``downscale`` (by ``factor``, then back up; bilinear,
  antialiased), ``blur`` (Gaussian, ``kernel`` 5, ``sigma`` 1) and ``bitdepth`` (``bits``). Each
  result is quantised to 8 bits, as a saved image would be.
* **train** countermeasures act on every batch inside the victim's training loop
  (:func:`segue.victim.train_victim`, ``batch_transforms``): ``cutout``, ``mixup``, ``cutmix``
  and ``adv`` (PGD L-inf adversarial training with budget ``rho``). A batch transform maps
  ``(model, x, y_soft, gen) -> (x, y_soft)`` with soft (probability) targets, so mixing ones
  compose with the others.

``create_countermeasure("jpeg", quality=10)``, or :func:`build_countermeasures` from config
specs (``"grayscale"`` or ``{"name": "jpeg", "quality": 10}``); they compose as a list, data
ones in order on the set, train ones in order on each batch. Early stopping needs no
countermeasure: every result reports the peak clean-test accuracy over epochs.
"""

from __future__ import annotations

import io
from typing import Any

import kornia.filters
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from segue.distortion import linf_pgd, uniform_start
from segue.registry import Registry


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


class Countermeasure:
    """Base class. ``kind`` is ``"data"`` (``apply``) or ``"train"`` (``__call__`` on a batch)."""

    name = "base"
    kind = "data"

    def params(self) -> dict[str, Any]:
        """The settings shown by ``describe`` (and stored with every result): the instance's attributes."""
        return dict(vars(self))

    def describe(self) -> str:
        p = self.params()
        return self.name + (f"({', '.join(f'{k}={v}' for k, v in p.items())})" if p else "")

    def apply(self, images: torch.Tensor) -> torch.Tensor:  # data kind
        raise NotImplementedError

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator):  # train kind
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.describe()


COUNTERMEASURES: Registry[Countermeasure] = Registry("countermeasure")


# ---------------------------------------------------------------- data-level

@COUNTERMEASURES.register("jpeg")
class JPEG(Countermeasure):
    """Re-encode every image as a real JPEG (PIL, 4:2:0 subsampling as PIL's default) at ``quality``."""

    name = "jpeg"

    def __init__(self, quality: int = 75):
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, not {quality}")
        self.quality = int(quality)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for img in images:
            arr = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            buf = io.BytesIO()
            Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=self.quality)
            buf.seek(0)
            with Image.open(buf) as im:
                dec = np.asarray(im.convert("RGB"), dtype=np.uint8)
            out.append(torch.from_numpy(dec.copy()).permute(2, 0, 1).float() / 255)
        return torch.stack(out)


@COUNTERMEASURES.register("grayscale")
class Grayscale(Countermeasure):
    """Luma ``0.299 R + 0.587 G + 0.114 B`` copied to all three channels."""

    name = "grayscale"

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)
        return to_8bit((images * w).sum(1, keepdim=True)).expand_as(images).contiguous()


@COUNTERMEASURES.register("downscale")
class Downscale(Countermeasure):
    """Downscale by ``factor`` (antialiased bilinear), then back up to the original size (bilinear)."""

    name = "downscale"

    def __init__(self, factor: float = 0.5):
        if not 0 < factor < 1:
            raise ValueError(f"downscale factor must be in (0,1), not {factor}")
        self.factor = float(factor)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        small = F.interpolate(images, size=(max(1, round(h * self.factor)), max(1, round(w * self.factor))),
                              mode="bilinear", antialias=True, align_corners=False)
        small = to_8bit(small)  # the attacker stores the small image
        return to_8bit(F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False))


@COUNTERMEASURES.register("blur")
class Blur(Countermeasure):
    """Gaussian blur (kornia), ``kernel`` x ``kernel`` with ``sigma``; reflect padding."""

    name = "blur"

    def __init__(self, kernel: int = 5, sigma: float = 1.0):
        self.kernel, self.sigma = int(kernel), float(sigma)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return to_8bit(kornia.filters.gaussian_blur2d(images, (self.kernel, self.kernel), (self.sigma, self.sigma)))


@COUNTERMEASURES.register("bitdepth")
class BitDepth(Countermeasure):
    """Keep ``bits`` bits per channel (values ``round(x (2^b - 1)) / (2^b - 1)``)."""

    name = "bitdepth"

    def __init__(self, bits: int = 4):
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be in 1..8, not {bits}")
        self.bits = int(bits)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        levels = 2**self.bits - 1
        return to_8bit((images.clamp(0, 1) * levels).round() / levels)


# ---------------------------------------------------------------- training-time

class BatchTransform(Countermeasure):
    kind = "train"


@COUNTERMEASURES.register("cutout")
class Cutout(BatchTransform):
    """Zero one ``size``-fraction square per image at a random centre (DeVries & Taylor: 16 px on 32 px = 0.5)."""

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
    """Mixup (Zhang et al. 2018): convex combination of the batch with a shuffled copy, lam ~ Beta(alpha, alpha)."""

    name = "mixup"

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)

    def __call__(self, model, x, y, gen):
        lam = _beta(self.alpha, gen)
        perm = torch.randperm(len(x), generator=gen).to(x.device)
        return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


@COUNTERMEASURES.register("cutmix")
class CutMix(BatchTransform):
    """CutMix (Yun et al. 2019): paste a box from a shuffled copy; targets mixed by the box's area."""

    name = "cutmix"

    def __init__(self, alpha: float = 1.0):
        self.alpha = float(alpha)

    def __call__(self, model, x, y, gen):
        lam = _beta(self.alpha, gen)
        perm = torch.randperm(len(x), generator=gen).to(x.device)
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

    ``steps`` PGD steps of ``step_size`` (default ``rho / 4``) from a uniform random start,
    maximising the soft-target cross-entropy; the model is in eval mode during the attack
    (BatchNorm statistics are not updated by it) and back in train mode afterwards.
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


# ---------------------------------------------------------------- building

def list_countermeasures() -> list[str]:
    return COUNTERMEASURES.names()


def create_countermeasure(name: str, **kwargs) -> Countermeasure:
    """Build one registered countermeasure (unknown name: KeyError listing the known ones)."""
    return COUNTERMEASURES.create(name, **kwargs)


def build_countermeasures(specs: list | None) -> list[Countermeasure]:
    """Countermeasures from config specs: ``"grayscale"`` or ``{"name": "jpeg", "quality": 10}``.

    Budgets named ``rho`` may be given in /255 units as ``rho_255``.
    """
    out = []
    for spec in specs or []:
        if isinstance(spec, str):
            out.append(create_countermeasure(spec))
            continue
        spec = dict(spec)
        name = spec.pop("name")
        if "rho_255" in spec:
            spec["rho"] = spec.pop("rho_255") / 255
        out.append(create_countermeasure(name, **spec))
    return out


def apply_data(countermeasures: list[Countermeasure], images: torch.Tensor) -> torch.Tensor:
    """Run every data-level countermeasure, in order, on the whole training set."""
    for cm in countermeasures:
        if cm.kind == "data":
            images = cm.apply(images)
    return images


def batch_transforms(countermeasures: list[Countermeasure]) -> list[Countermeasure]:
    return [cm for cm in countermeasures if cm.kind == "train"]
