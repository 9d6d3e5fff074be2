"""Feature-cloak options that lost, on top of ``segue.methods.feature_cloak`` (see experiments/README.md).

* ``feature_dropout: p`` - DFANet (Zhong & Deng, "Towards Transferable Adversarial Attack Against
  Deep Face Recognition", IEEE TIFS 2021): dropout on the surrogate's feature maps in every PGD
  step, so each step attacks a slightly different model. Here dropout ``p`` on the output of every
  ``nn.Conv2d`` of FaceNet's port. At ``p = 0.1`` on ORL people 0-19 (FaceNet alone, farthest
  outsider decoys, 16/255, 30 dB) the white-box attack itself stopped working in 20 steps (FaceNet's
  cosine to the decoy 0.16 instead of 0.83) and dlib-linear went from 35.0 % to 92.5 % (full) and
  27.5 % to 90.0 % (partial): experiments/results/feature_transfer_pilot_facenet_dfanet_farthest_orl0.md.
* ``base: method`` - the PGD starts from Segue's generator's protection, to keep the from-scratch
  shortcut and add the embedding cloak. On WebFace10 the steps erase the shortcut (from scratch
  53.0 % against 32.0 % for the generator alone, 54.5 % clean):
  experiments/results/feature_transfer_pilot_base_default_cloak_wf10.md. From a FaceNet-feature
  generator, 5 steps left dlib at 67.5 / 57.5 % where 5 steps from zero reach 45.0 / 22.5 %
  (ORL 0-19): experiments/results/feature_transfer_pilot_nodecoy_steps5_gen_mid6a_orl0.md.
* ``then: method`` - the generator's protection of the *cloaked* photo added after the PGD, in one
  PSNR budget: each photo's PGD gets the L2 room the generator's delta leaves under the floor. It
  keeps both patterns at 30 dB but trades one attacker for the other: on WebFace10 with ``default``,
  dlib-linear / knn 21.0 / 24.0 % everyone protected, 30.5 / 24.0 % each alone (the cloak alone:
  4.0 / 5.5 and 7.5 / 4.0 %), from scratch 40.5 % peak (cloak alone 51.0 %, generator alone 32.0 %):
  experiments/results/feature_transfer_pilot_facenet_affine_away1_nodecoy_joint_default_wf10.md.

(``affine_diversity``, measured here first, won and is the package's ``FeatureCloak(affine_diversity=True)``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from segue.methods.base import NoiseMethod, quantise
from segue.methods.feature_cloak import FeatureCloak
from segue.quality import rms, rms_cap


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
        base: a fitted :class:`NoiseMethod` whose protection the PGD starts from, inside the same
            budget around the clean photo. With ``steps=0`` the output is ``base``'s, cut to this budget.
        then: a fitted :class:`NoiseMethod` whose protection of the cloaked photo is added after the
            PGD; needs ``psnr_floor``: each photo's PGD gets the L2 room ``then``'s delta on the clean
            photo leaves under the floor, and the sum is cut to ``eps`` and the floor. With
            ``steps=0`` the output is ``then``'s.
        **kwargs: :class:`FeatureCloak`'s.
    """

    def __init__(self, feature_dropout: float = 0.0, base: NoiseMethod | None = None,
                 then: NoiseMethod | None = None, **kwargs):
        super().__init__(**kwargs)
        if then is not None and (self.psnr_floor <= 0 or base is not None):
            raise ValueError("then shares the PSNR floor's budget with the PGD: needs psnr_floor > 0 and no base")
        self.feature_dropout, self.base, self.then = float(feature_dropout), base, then

    def config(self) -> dict:
        return {**super().config(), "feature_dropout": self.feature_dropout,
                "base": None if self.base is None else self.base.config(),
                "then": None if self.then is None else self.then.config()}

    def batch_delta(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.then is not None:
            room = rms_cap(self.psnr_floor) ** 2 - rms(self.then.perturb(x, y).to(self.device) - x) ** 2
            cloaked = quantise(x, self.attack(x, self.targets(y), radius=room.clamp_min(0).sqrt()), self.eps)
            return self.then.perturb(cloaked, y).to(self.device) - x
        start = None if self.base is None else self.base.perturb(x, y).to(self.device) - x
        return self.attack(x, self.targets(y), start)

    def objective(self, x: torch.Tensor, clean: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
        with conv_dropout(self.models, self.feature_dropout):
            return super().objective(x, clean, targets)
