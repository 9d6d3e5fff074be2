"""Side information: the identity each photo is protected *as*, turned into a binary code.

The generator never sees a label directly; it sees a ``bits``-long binary code of the side
label, broadcast over its feature map. Supervised protection uses the true identity label;
the unsupervised scenario (a separate provider) plugs in pseudo-labels through the same
:class:`SideInfo` interface, so training and protection code do not change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F

CODE_BITS = 16


def label_to_code(labels: torch.Tensor, bits: int = CODE_BITS) -> torch.Tensor:
    """Binary code of each label as a ``(N, bits)`` float tensor in {-1, +1}.

    Bit ``i`` is ``(label >> i) & 1``; mapping {0,1} to {-1,+1} keeps label 0 from being an
    all-zero input the network could ignore.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    if (labels < 0).any() or (labels >= 2**bits).any():
        raise ValueError(f"side labels must lie in [0, 2**{bits}); got {labels.min()}..{labels.max()}")
    shifts = torch.arange(bits, device=labels.device)
    bits01 = (labels.unsqueeze(-1) >> shifts) & 1
    return bits01.float() * 2 - 1


def code_targets(labels: torch.Tensor, bits: int = CODE_BITS) -> torch.Tensor:
    """The code bits of each label in {0, 1}: the targets of a surrogate that *reads* codes."""
    return (label_to_code(labels, bits) + 1) / 2


def side_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A surrogate's loss against side information.

    Integer targets are side labels (cross-entropy over classes, the paper's objective);
    float targets are code bits (binary cross-entropy per bit; the ``side_target: code_bits``
    experiment, experiments/training_variants.py).
    """
    if target.is_floating_point():
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target)


class SideInfo(ABC):
    """Assigns each image a side label (an integer that becomes the generator's code).

    The paper's two scenarios are the two subclasses: :class:`TrueLabels` (the defender knows who
    is who) and :class:`segue.pseudo_labels.PseudoLabels` (k-means clusters of face embeddings).

    Shape:
        ``assign(images (N,3,H,W), labels (N,) or None)`` -> side labels ``(N,)`` int64.

    Examples:
        >>> import torch
        >>> TrueLabels(["alice", "bob"]).assign(torch.rand(3, 3, 8, 8), torch.tensor([1, 0, 1])).tolist()
        [1, 0, 1]
    """

    name: str = "base"

    @property
    @abstractmethod
    def num_classes(self) -> int:
        """How many distinct side labels exist (the surrogate's output size)."""

    @abstractmethod
    def assign(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Side label for each image of a batch (``labels`` are the true ones, if known)."""


class TrueLabels(SideInfo):
    """Supervised scenario: the defender knows who is who, so the side label is the identity.

    Args:
        class_names: one per person, in label order (the class folders).

    Shape:
        ``assign(images (N,3,H,W), labels (N,))`` -> ``labels`` as int64; ``labels=None`` is an error.

    Examples:
        >>> import torch
        >>> side = TrueLabels(["alice", "bob"])
        >>> side.num_classes, side.assign(torch.rand(2, 3, 8, 8), [1, 1]).tolist()
        (2, [1, 1])
    """

    name = "labels"

    def __init__(self, class_names: Sequence[str]):
        self.class_names = list(class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def assign(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            raise ValueError("supervised side information needs the true labels (use --label N for a flat folder)")
        return torch.as_tensor(labels, dtype=torch.long)
