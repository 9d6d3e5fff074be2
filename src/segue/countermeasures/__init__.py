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
ones in order on the set, train ones in order on each batch. From the unlearnable-examples
literature: ``projection`` (orthogonal projection, data kind, uses the labels) and ``ueraser``
(UEraser's heavy augmentation, train kind). One module per family: :mod:`.data`,
:mod:`.training`, :mod:`.projection`, :mod:`.ueraser`. Early stopping needs no
countermeasure: every result reports the peak clean-test accuracy over epochs.

For example, JPEG then orthogonal projection on a toy set::

    >>> import torch
    >>> from segue.countermeasures import apply_data, build_countermeasures
    >>> images, labels = torch.rand(6, 3, 16, 16), torch.arange(6) % 3
    >>> cms = build_countermeasures([{"name": "jpeg", "quality": 30}, "projection"])
    >>> [c.describe() for c in cms]
    ['jpeg(quality=30)', 'projection(steps=100, weight_decay=0.0001)']
    >>> apply_data(cms, images, labels).shape
    torch.Size([6, 3, 16, 16])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from segue.registry import Registry


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


class Countermeasure:
    """Base class of what an attacker does to the protected photos before or while training.

    ``kind`` is ``"data"`` (``apply(images)`` once, before training; with ``needs_labels``,
    ``apply(images, labels)``) or ``"train"`` (``__call__(model, x, y_soft, gen)`` on every batch:
    :class:`BatchTransform`). Registered by name in :data:`COUNTERMEASURES`.

    Shape:
        data: ``(N,3,H,W)`` -> ``(N,3,H,W)``; train: ``(model, x (B,3,H,W), y_soft (B,K), gen) -> (x', y_soft')``.

    Examples:
        >>> import torch
        >>> from segue.countermeasures import create_countermeasure
        >>> jpeg = create_countermeasure("jpeg", quality=30)
        >>> jpeg.kind, jpeg.describe(), jpeg.apply(torch.rand(1, 3, 16, 16)).shape
        ('data', 'jpeg(quality=30)', torch.Size([1, 3, 16, 16]))
    """

    name = "base"
    kind = "data"
    #: a data countermeasure that needs the training labels (``apply(images, labels)``)
    needs_labels = False

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


class BatchTransform(Countermeasure):
    """A training-time countermeasure: transforms every batch the victim trains on (``kind = "train"``).

    Shape:
        ``(model, x (B,3,H,W) in [0,1], y_soft (B,K), gen) -> (x', y_soft')``.

    Examples:
        >>> import torch
        >>> from segue.countermeasures import create_countermeasure
        >>> isinstance(create_countermeasure("mixup"), BatchTransform)
        True
    """
    kind = "train"


def list_countermeasures(pattern: str | None = None) -> list[str]:
    return COUNTERMEASURES.list(pattern)


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


def apply_data(countermeasures: list[Countermeasure], images: torch.Tensor,
               labels: torch.Tensor | None = None) -> torch.Tensor:
    """Run every data-level countermeasure, in order, on the whole training set (``labels`` for those that need them)."""
    for cm in countermeasures:
        if cm.kind == "data":
            if cm.needs_labels and labels is None:
                raise ValueError(f"countermeasure {cm.name} needs the training labels")
            images = cm.apply(images, labels) if cm.needs_labels else cm.apply(images)
    return images


def batch_transforms(countermeasures: list[Countermeasure]) -> list[Countermeasure]:
    return [cm for cm in countermeasures if cm.kind == "train"]


from segue.countermeasures import data, projection, training, ueraser  # noqa: E402,F401  (register the built-ins)
from segue.countermeasures.data import JPEG, BitDepth, Blur, Downscale, Grayscale  # noqa: E402
from segue.countermeasures.training import AdversarialTraining, CutMix, Cutout, Mixup, soft_cross_entropy  # noqa: E402

__all__ = ["COUNTERMEASURES", "AdversarialTraining", "BatchTransform", "BitDepth", "Blur", "Countermeasure", "CutMix",
           "Cutout", "Downscale", "Grayscale", "JPEG", "Mixup", "apply_data", "batch_transforms",
           "build_countermeasures", "create_countermeasure", "list_countermeasures", "soft_cross_entropy", "to_8bit"]
