"""Feature-cloak options that lost, on top of ``segue.methods.feature_cloak`` (see experiments/README.md).

* ``feature_dropout: p`` - DFANet (Zhong & Deng, "Towards Transferable Adversarial Attack Against
  Deep Face Recognition", IEEE TIFS 2021): dropout on the surrogate's feature maps in every PGD
  step, so each step attacks a slightly different model. Here dropout ``p`` on the output of every
  ``nn.Conv2d`` of FaceNet's port. At ``p = 0.1`` on ORL people 0-19 (FaceNet alone, farthest
  outsider decoys, 16/255, 30 dB) the white-box attack itself stopped working in 20 steps (FaceNet's
  cosine to the decoy 0.16 instead of 0.83) and dlib-linear went from 35.0 % to 92.5 % (full) and
  27.5 % to 90.0 % (partial): benchmarks/results/feature_transfer_pilot_facenet_dfanet_farthest_orl0.md.

(``affine_diversity``, measured here first, won and is the package's ``FeatureCloak(affine_diversity=True)``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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


class VariantFeatureCloak(FeatureCloak):
    """:class:`FeatureCloak` plus the options that lost; with them off it is the package's cloak.

    Args:
        feature_dropout: DFANet's dropout rate on every convolution's output in each step (0).
            The clean embeddings and the decoys are computed without it (only :meth:`objective`,
            the step's forward pass, has it).
        **kwargs: :class:`FeatureCloak`'s.
    """

    def __init__(self, feature_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.feature_dropout = float(feature_dropout)

    def config(self) -> dict:
        return {**super().config(), "feature_dropout": self.feature_dropout}

    def objective(self, x: torch.Tensor, clean: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
        with conv_dropout(self.models, self.feature_dropout):
            return super().objective(x, clean, targets)
