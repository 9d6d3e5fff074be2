"""LSP: linearly separable synthetic patches (Yu et al., KDD 2022, "Availability attacks
create shortcuts").

Following the authors' code (``synthetic_perturbations/cifar_train.py``, read, not copied):

* points are drawn with scikit-learn's ``make_classification`` - one Gaussian cluster per
  class (``class_sep=10``, every feature informative), one feature per colour channel of each
  cell of a ``grid x grid`` patch grid (their CIFAR default: 8-px patches on 32 px = 4x4);
* each point is upsampled to the image by repeating each cell (nearest neighbour), so every
  image of a class gets its own draw from that class's cluster;
* the pattern is scaled to the L2 norm of an L-inf-``eps`` pattern, ``eps * sqrt(3HW)``.

Their L2 scaling allows single pixels slightly above ``eps`` (their images are then clipped
to [0,1]); here the result is also clipped to ``[-eps, eps]`` so every method in a
comparison has the same L-inf budget (``norm="l2"``, default). ``norm="linf"`` instead
scales each pattern so its largest value is exactly ``eps``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.datasets import make_classification

from segue.data import FaceSet
from segue.methods.base import NoiseMethod, quantise


class LinearSeparablePatches(NoiseMethod):
    """Linearly separable class-wise patch noise (Yu et al., KDD 2022): a shortcut without a surrogate.

    Each class is a Gaussian cluster of ``grid`` x ``grid`` x 3 points (scikit-learn's
    ``make_classification``, class separation ``class_sep``); each photo gets its own draw from its
    class's cluster, upsampled to constant patches, scaled to the L2 norm of an L-inf-``eps``
    pattern and clipped to ``eps`` (``norm="linf"``: scaled to ``eps`` in L-inf).

    Args:
        eps, seed, device: as :class:`NoiseMethod`.
        grid: patches per side (4).
        class_sep: distance between the class clusters (10.0, the authors').
        norm: ``"l2"`` (the paper's) or ``"linf"``.
        num_classes: number of clusters (default: the largest side label + 1).

    Shape:
        ``perturb(images (N,3,H,W), side_labels (N,))`` -> ``(N,3,H,W)``; a draw of its label's cluster per photo.

    Examples:
        >>> import torch
        >>> x = torch.full((4, 3, 16, 16), 128 / 255)
        >>> out = LinearSeparablePatches(num_classes=2).perturb(x, torch.tensor([0, 0, 1, 1]))
        >>> out.shape, round((out - x).abs().max().item() * 255)
        (torch.Size([4, 3, 16, 16]), 8)
    """

    name = "lsp"

    def __init__(self, eps: float = 8 / 255, seed: int = 0, device: str = "cpu", grid: int = 4,
                 class_sep: float = 10.0, norm: str = "l2", num_classes: int | None = None):
        super().__init__(eps, seed, device)
        if norm not in ("l2", "linf"):
            raise ValueError(f"norm must be 'l2' or 'linf', not {norm!r}")
        self.grid, self.class_sep, self.norm, self.num_classes = int(grid), float(class_sep), norm, num_classes
        self._pool: dict[int, np.ndarray] | None = None

    def config(self) -> dict:
        return {**super().config(), "grid": self.grid, "class_sep": self.class_sep, "norm": self.norm}

    def _make_pool(self, num_classes: int, per_class: int) -> dict[int, np.ndarray]:
        """``per_class`` cluster points for each class, as ``(n, grid, grid, 3)`` arrays."""
        features = self.grid * self.grid * 3
        x, y = make_classification(
            n_samples=max(num_classes, 2) * per_class, n_features=features, n_informative=features, n_redundant=0,
            n_repeated=0, n_classes=max(num_classes, 2), n_clusters_per_class=1, class_sep=self.class_sep,
            flip_y=0.0, random_state=self.seed,
        )
        x = x.reshape(len(x), self.grid, self.grid, 3).astype(np.float32)
        return {c: x[y == c] for c in range(num_classes)}

    def fit(self, train: FaceSet, side_labels: torch.Tensor) -> "LinearSeparablePatches":
        num_classes = self.num_classes or max(len(train.classes), int(side_labels.max()) + 1)
        counts = torch.bincount(side_labels, minlength=num_classes)
        self._pool = self._make_pool(num_classes, int(counts.max()))
        self.num_classes = num_classes
        return self

    def patterns(self, side_labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """One synthetic pattern per label, ``(N,3,H,W)``, scaled to the budget."""
        if self._pool is None or int(side_labels.max()) >= len(self._pool):
            num_classes = max(self.num_classes or 0, int(side_labels.max()) + 1)
            self._pool = self._make_pool(num_classes, int(torch.bincount(side_labels).max()))
            self.num_classes = num_classes
        used = {c: 0 for c in self._pool}
        cells = []
        for lab in side_labels.tolist():
            pool = self._pool[lab]
            cells.append(pool[used[lab] % len(pool)])  # reused only if perturb gets more images than fit saw
            used[lab] += 1
        cells_t = torch.from_numpy(np.stack(cells)).permute(0, 3, 1, 2)  # (N,3,grid,grid)
        h, w = size
        ph, pw = math.ceil(h / self.grid), math.ceil(w / self.grid)
        delta = cells_t.repeat_interleave(ph, 2).repeat_interleave(pw, 3)[:, :, :h, :w]
        flat = delta.flatten(1)
        if self.norm == "l2":
            target = self.eps * math.sqrt(flat.shape[1])
            flat = flat / flat.norm(dim=1, keepdim=True) * target
        else:
            flat = flat / flat.abs().amax(dim=1, keepdim=True) * self.eps
        return flat.view_as(delta).clamp(-self.eps, self.eps)

    def perturb(self, images: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        return quantise(images, self.patterns(side_labels, tuple(images.shape[-2:])), self.eps)
