"""Feature-cloak options that lost, on top of ``segue.methods.feature_cloak`` (see experiments/README.md).

* ``feature_dropout: p`` - DFANet (Zhong & Deng, "Towards Transferable Adversarial Attack Against
  Deep Face Recognition", IEEE TIFS 2021): dropout on the surrogate's feature maps in every PGD
  step, so each step attacks a slightly different model. Here dropout ``p`` on the output of every
  ``nn.Conv2d`` of FaceNet's port. At ``p = 0.1`` on ORL people 0-19 (FaceNet alone, farthest
  outsider decoys, 16/255, 30 dB) the white-box attack itself stopped working in 20 steps (FaceNet's
  cosine to the decoy 0.16 instead of 0.83) and dlib-linear went from 35.0 % to 92.5 % (full) and
  27.5 % to 90.0 % (partial): benchmarks/results/feature_transfer_pilot_facenet_dfanet_farthest_orl0.md.
* ``affine_diversity: true`` - a random affine warp (rotation, shift, scale: :data:`AFFINE`) before
  the package's input diversity in every step, as DI's random resize-and-pad (Xie et al. 2019) shifts
  the face: a recogniser that aligns the face itself (dlib's 5-point alignment) sees it placed a
  little differently than the surrogate did.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import kornia.augmentation as K
import torch
import torch.nn.functional as F

from segue.methods.feature_cloak import FeatureCloak


@contextmanager
def conv_dropout(models: list, p: float) -> Iterator[None]:
    """Within the block, every ``nn.Conv2d`` output of ``models`` goes through dropout ``p``.

    Only :class:`torch.nn.Module` extractors are touched; ``p <= 0`` changes nothing.
    """
    hooks = []
    if p > 0:
        for model in models:
            if isinstance(model, torch.nn.Module):
                hooks += [m.register_forward_hook(lambda _m, _i, out: F.dropout(out, p, training=True))
                          for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        yield
    finally:
        for h in hooks:
            h.remove()


#: The warp of ``affine_diversity``, fixed before it was measured: up to 8 degrees, 5 % shift, 8 % scale.
AFFINE = dict(degrees=8.0, translate=(0.05, 0.05), scale=(0.92, 1.08), padding_mode="border", p=0.7)


class VariantFeatureCloak(FeatureCloak):
    """:class:`FeatureCloak` plus the options that lost; with both off it is the package's cloak.

    Args:
        feature_dropout: DFANet's dropout rate on every convolution's output in each step (0).
            The clean embeddings and the decoys are computed without it (only :meth:`objective`,
            the step's forward pass, has it).
        affine_diversity: a random :data:`AFFINE` warp before the input diversity (False; needs
            ``diverse``).
        **kwargs: :class:`FeatureCloak`'s.
    """

    def __init__(self, feature_dropout: float = 0.0, affine_diversity: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.feature_dropout, self.affine_diversity = float(feature_dropout), bool(affine_diversity)
        if self.affine_diversity:
            self.diversity = torch.nn.Sequential(K.RandomAffine(**AFFINE), self.diversity)

    def config(self) -> dict:
        return {**super().config(), "feature_dropout": self.feature_dropout, "affine_diversity": self.affine_diversity}

    def objective(self, x: torch.Tensor, clean: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
        with conv_dropout(self.models, self.feature_dropout):
            return super().objective(x, clean, targets)
