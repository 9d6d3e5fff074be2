"""Feature-cloak options that lost, on top of ``segue.methods.feature_cloak`` (see experiments/README.md).

The package's :class:`FeatureCloak` keeps what ``segue protect`` ships (away from the photo's own
embedding, momentum, input diversity with a warp, L2 steps under a PSNR floor). The pilots'
commands (experiments/feature_transfer_pilot.py, feature_generator_pilot.py, person_cloak.py,
fawkes_style.py) reproduce through :class:`VariantFeatureCloak`, whose defaults are the cloak's
original ones (targeted, sign steps, no momentum, no floor):

* ``decoy`` / ``decoy_pool`` - targeted toward another person's clean centroid (``"next"`` or
  Fawkes' ``"farthest"``), from the set or from outside people; ``away`` weighs the untargeted
  term beside it. Away-only with no decoy brought dlib lowest on held-out people and is what ships
  (docs/attacks.md).
* ``ti_sigma`` - translation-invariant gradients (TI, Dong et al. 2019: the gradient smoothed by a
  Gaussian); ``diverse=False`` - no input diversity.
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

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

import kornia.filters

from segue.data import FaceSet
from segue.methods.base import NoiseMethod, quantise
from segue.methods.feature_cloak import FeatureCloak
from segue.quality import rms, rms_cap


def centroids(embeddings: torch.Tensor, labels: torch.Tensor, num: int) -> torch.Tensor:
    """``(num, D)``: each label's mean embedding, L2-normalised."""
    return F.normalize(torch.stack([embeddings[labels == c].mean(0) for c in range(num)]), dim=1)


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
    """:class:`FeatureCloak` plus the options that lost, with the cloak's original defaults.

    ``fit`` embeds the clean training photos and gives each label a decoy: the clean centroid of
    another person, from the set itself or from ``decoy_pool`` (people the attacker does not know,
    as Fawkes draws its targets from a public set); ``perturb`` maximises
    ``cos(e(x'), decoy) - away * cos(e(x'), e(x))`` summed over the extractors.

    Args:
        decoy: ``"next"`` (label ``l`` -> pool person ``l + 1``, or ``l`` for an outside pool),
            ``"farthest"`` (the pool person whose centroid is least like ``l``'s own, mean over the
            extractors) or ``"none"`` (only the ``away`` term: the package's cloak).
        decoy_pool: a :class:`FaceSet` whose people are the decoys (default: the fit set's people).
        away: weight of "away from the photo's own clean embedding" (0).
        ti_sigma: std (pixels) of TI's gradient smoothing (0: off).
        diverse: input diversity in every step (True).
        feature_dropout: DFANet's dropout rate on every convolution's output in each step (0).
            The clean embeddings and the decoys are computed without it (only :meth:`objective`,
            the step's forward pass, has it).
        base: a fitted :class:`NoiseMethod` whose protection the PGD starts from, inside the same
            budget around the clean photo. With ``steps=0`` the output is ``base``'s, cut to this budget.
        then: a fitted :class:`NoiseMethod` whose protection of the cloaked photo is added after the
            PGD; needs ``psnr_floor``: each photo's PGD gets the L2 room ``then``'s delta on the clean
            photo leaves under the floor, and the sum is cut to ``eps`` and the floor. With
            ``steps=0`` the output is ``then``'s.
        momentum, affine_diversity, psnr_floor, step_norm, **kwargs: :class:`FeatureCloak`'s, with the
            original defaults (0, False, 0, "sign").
    """

    name = "feature-cloak-variant"

    def __init__(self, decoy: str = "next", decoy_pool: FaceSet | None = None, away: float = 0.0,
                 ti_sigma: float = 0.0, diverse: bool = True, feature_dropout: float = 0.0,
                 base: NoiseMethod | None = None, then: NoiseMethod | None = None, momentum: float = 0.0,
                 affine_diversity: bool = False, psnr_floor: float = 0.0, step_norm: str = "sign", **kwargs):
        super().__init__(momentum=momentum, affine_diversity=affine_diversity, psnr_floor=psnr_floor,
                         step_norm=step_norm, **kwargs)
        if decoy not in ("next", "farthest", "none"):
            raise ValueError("decoy is 'next', 'farthest' or 'none'")
        if decoy == "none" and (away <= 0 or decoy_pool is not None):
            raise ValueError("decoy 'none' leaves only the away term: needs away > 0 and no decoy_pool")
        if then is not None and (self.psnr_floor <= 0 or base is not None):
            raise ValueError("then shares the PSNR floor's budget with the PGD: needs psnr_floor > 0 and no base")
        self.decoy, self.decoy_pool, self.away = decoy, decoy_pool, float(away)
        self.ti_sigma, self.diverse = float(ti_sigma), bool(diverse)
        self.feature_dropout, self.base, self.then = float(feature_dropout), base, then
        self.decoys: list[torch.Tensor] = []

    def config(self) -> dict:
        return {**super().config(), "ti_sigma": self.ti_sigma, "diverse": self.diverse, "away": self.away,
                "decoy": self.decoy, "decoy_pool": None if self.decoy_pool is None else len(self.decoy_pool.classes),
                "feature_dropout": self.feature_dropout,
                "base": None if self.base is None else self.base.config(),
                "then": None if self.then is None else self.then.config()}

    def load(self) -> "VariantFeatureCloak":
        super().load()
        self.decoys = []
        return self

    def fit(self, train: FaceSet, side_labels: torch.Tensor) -> "VariantFeatureCloak":
        from segue.face_embedding import embed

        self.load()
        if self.decoy == "none":
            return self
        labels = torch.as_tensor(side_labels)
        num = int(labels.max()) + 1
        pool, pool_labels = (train, labels) if self.decoy_pool is None else (self.decoy_pool, self.decoy_pool.labels)
        size = int(pool_labels.max()) + 1
        if self.decoy_pool is None and num < 2:
            raise ValueError("feature-cloak draws each person's decoy from another person in the set: needs two or more")
        own, cands = [], []
        for model in self.models:
            own.append(centroids(embed(model, train.images, device=self.device), labels, num))
            cands.append(own[-1] if self.decoy_pool is None else
                         centroids(embed(model, pool.images, device=self.device), pool_labels, size))
        if self.decoy == "farthest":
            sim = sum(o @ c.T for o, c in zip(own, cands)) / len(own)  # (num, size)
            pick = sim.argmin(dim=1)
        else:
            pick = (torch.arange(num) + (1 if self.decoy_pool is None else 0)) % size
        self.decoys = [c[pick] for c in cands]
        return self

    def perturb(self, images: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        if not self.models:
            raise RuntimeError("call fit first (load with decoy 'none'): the decoys come from the clean training photos")
        return super().perturb(images, side_labels)

    def targets(self, side_labels: torch.Tensor) -> list[torch.Tensor | None]:
        return [d.to(side_labels.device)[side_labels] for d in self.decoys] or [None] * len(self.models)

    def objective(self, x: torch.Tensor, clean: list[torch.Tensor], targets: list[torch.Tensor | None]) -> torch.Tensor:
        with conv_dropout(self.models, self.feature_dropout):
            total = x.new_zeros(())
            for model, e_clean, t in zip(self.models, clean, targets):
                e = model(x)
                toward = x.new_zeros(()) if t is None else F.cosine_similarity(e, t).sum()
                total = total + toward - self.away * F.cosine_similarity(e, e_clean).sum()
            return total

    def step_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.diversity(x) if self.diverse else x

    def smooth(self, grad: torch.Tensor) -> torch.Tensor:
        if self.ti_sigma <= 0:
            return grad
        k = 2 * math.ceil(2 * self.ti_sigma) + 1
        return kornia.filters.gaussian_blur2d(grad, (k, k), (self.ti_sigma, self.ti_sigma))

    def batch_delta(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.then is not None:
            room = rms_cap(self.psnr_floor) ** 2 - rms(self.then.perturb(x, y).to(self.device) - x) ** 2
            cloaked = quantise(x, self.attack(x, self.targets(y), radius=room.clamp_min(0).sqrt()), self.eps)
            return self.then.perturb(cloaked, y).to(self.device) - x
        start = None if self.base is None else self.base.perturb(x, y).to(self.device) - x
        return self.attack(x, self.targets(y), start)
