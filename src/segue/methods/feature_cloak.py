"""Per-image feature-space cloak: PGD that moves each photo's face embedding toward a decoy person.

The slow, strong reference for the generator's feature term (:mod:`segue.cloak`): what a
one-pass generator with that objective could reach at best. Fawkes (Shan et al., USENIX Security
2020) and LowKey (Cherepanova et al., ICLR 2021) are of this kind; the transfer tricks are the
standard ones for black-box adversarial examples: momentum (MI-FGSM, Dong et al. 2018), input
diversity (DI, Xie et al. 2019; here the distortion layer's resize, blur, flip and JPEG, and with
``affine_diversity`` a small rotation, shift and scale, as DI's resize-and-pad moves the face) and
translation-invariant gradients (TI, Dong et al. 2019: the gradient smoothed by a Gaussian).
"""

from __future__ import annotations

import dataclasses
import math

import kornia.filters
import torch
import torch.nn.functional as F

from segue.data import FaceSet
from segue.distortion import DistortionConfig, DistortionLayer
from segue.methods.base import NoiseMethod, quantise_within
from segue.quality import rms_cap, within_rms

#: Input diversity: what a platform does to an upload, each at random, in every PGD step.
DIVERSITY = DistortionConfig(pgd_steps=0, blur_kernel=0, sharpness=1.0, hflip_p=0.5, vflip_p=0.0,
                             strong_blur_p=0.5, strong_blur_sigma=(0.1, 1.1), rescale_p=0.5, rescale_min=0.6,
                             jpeg_p=0.5, jpeg_quality=(50.0, 95.0))
#: :data:`DIVERSITY` after a random affine warp (``affine_diversity``): the face also placed a little
#: differently, as a recogniser that aligns faces itself (dlib's 5-point alignment) places it.
AFFINE_DIVERSITY = dataclasses.replace(DIVERSITY, affine_p=0.7)


def centroids(embeddings: torch.Tensor, labels: torch.Tensor, num: int) -> torch.Tensor:
    """``(num, D)``: each label's mean embedding, L2-normalised."""
    return F.normalize(torch.stack([embeddings[labels == c].mean(0) for c in range(num)]), dim=1)


class FeatureCloak(NoiseMethod):
    """Targeted PGD on an ensemble of differentiable face extractors, one decoy per side label.

    ``fit`` embeds the clean training photos and gives each label a decoy: the clean centroid of
    another person, from the set itself or from ``decoy_pool`` (people the attacker does not know,
    as Fawkes draws its targets from a public set); ``perturb`` maximises ``cos(e(x'), decoy) - away * cos(e(x'), e(x))`` summed over
    the extractors. dlib is the black-box attacker of the benchmarks: never an extractor.

    Args:
        eps: L-inf budget (16/255).
        seed, device: as :class:`NoiseMethod` (the seed fixes the input diversity draws).
        extractors: :data:`segue.cloak.DIFFERENTIABLE` names (``("facenet-torch",)``) or frozen
            modules mapping ``(N,3,H,W)`` in [0,1] to L2-normalised ``(N,D)`` embeddings.
        steps: PGD steps (20); the step size is ``2.5 * eps / steps``.
        momentum: MI-FGSM decay (0: plain sign-PGD).
        ti_sigma: std (pixels) of TI's gradient smoothing (0: off).
        diverse: input diversity (:data:`DIVERSITY`) in every step.
        affine_diversity: :data:`AFFINE_DIVERSITY` instead (False; only with ``diverse``): on held-out people it lowered
            dlib's accuracy further (docs/attacks.md).
        away: weight of "away from the photo's own clean embedding" (0). With FaceNet alone,
            ``away=1`` and ``affine_diversity`` it brought dlib lowest on held-out people
            (docs/attacks.md; with ``decoy="none"`` it is ``segue protect --cloak``); the default
            stays 0 so earlier pilots' commands reproduce.
        psnr_floor: dB; each step projects ``delta`` onto the L2 ball that keeps it (0: L-inf only).
        step_norm: ``"sign"`` (L-inf steps, ``2.5 * eps / steps``) or ``"l2"`` (steps along the
            RMS-normalised gradient, ``2.5 * radius / steps``; needs ``psnr_floor``): under a PSNR
            floor the binding budget is an L2 ball, and sign steps spend it on pixels that matter little.
        batch: photos per PGD batch (16).
        decoy: ``"next"`` (label ``l`` -> pool person ``l + 1``, or ``l`` for an outside pool),
            ``"farthest"`` (the pool person whose centroid is least like ``l``'s own, mean over the
            extractors: Fawkes' choice, the longest way for the embedding to travel) or ``"none"``
            (no decoy and no pool: only the ``away`` term, so each photo is protected on its own,
            needing neither the person's other photos nor anyone else's).
        decoy_pool: a :class:`FaceSet` whose people are the decoys (default: the fit set's people,
            which needs two or more).

    Combining the cloak with Segue's generator (starting the PGD from its protection, or adding it
    in one PSNR budget) was measured and lost: experiments/feature_cloak_variants.py.

    Shape:
        ``perturb(images (N,3,H,W) in [0,1], side_labels (N,))`` -> ``(N,3,H,W)``, 8-bit,
        ``|out - images| <= eps``.

    Examples:
        >>> method = FeatureCloak(eps=16 / 255, extractors=["facenet-torch"], momentum=1.0, ti_sigma=1.5)
        >>> method.config()["ti_sigma"]
        1.5
    """

    name = "feature-cloak"

    def __init__(self, eps: float = 16 / 255, seed: int = 0, device: str | torch.device = "cpu",
                 extractors: tuple | list = ("facenet-torch",), steps: int = 20, momentum: float = 0.0,
                 ti_sigma: float = 0.0, diverse: bool = True, affine_diversity: bool = False, away: float = 0.0,
                 psnr_floor: float = 0.0, step_norm: str = "sign", batch: int = 16, decoy: str = "next",
                 decoy_pool: FaceSet | None = None):
        super().__init__(eps, seed, device)
        if any(isinstance(n, str) and n.startswith("dlib") for n in extractors):
            raise ValueError("dlib is the black-box attacker: never a surrogate")
        if step_norm not in ("sign", "l2") or (step_norm == "l2" and psnr_floor <= 0):
            raise ValueError("step_norm is 'sign', or 'l2' with a psnr_floor")
        if decoy not in ("next", "farthest", "none"):
            raise ValueError("decoy is 'next', 'farthest' or 'none'")
        if decoy == "none" and (away <= 0 or decoy_pool is not None):
            raise ValueError("decoy 'none' leaves only the away term: needs away > 0 and no decoy_pool")
        self.step_norm, self.decoy, self.decoy_pool = step_norm, decoy, decoy_pool
        self.extractors = list(extractors)
        self.extractor_names = [n if isinstance(n, str) else type(n).__name__ for n in extractors]
        self.steps, self.momentum, self.ti_sigma = int(steps), float(momentum), float(ti_sigma)
        self.diverse, self.away, self.psnr_floor, self.batch = bool(diverse), float(away), float(psnr_floor), int(batch)
        self.models: list = []
        self.decoys: list[torch.Tensor] = []
        self.affine_diversity = bool(affine_diversity)
        self.diversity = DistortionLayer.from_config(AFFINE_DIVERSITY if self.affine_diversity else DIVERSITY)

    def config(self) -> dict:
        return {**super().config(), "extractors": self.extractor_names, "steps": self.steps, "momentum": self.momentum,
                "ti_sigma": self.ti_sigma, "diverse": self.diverse,
                "affine_diversity": self.affine_diversity, "away": self.away, "psnr_floor": self.psnr_floor,
                "step_norm": self.step_norm, "decoy": self.decoy,
                "decoy_pool": None if self.decoy_pool is None else len(self.decoy_pool.classes)}

    def load(self) -> "FeatureCloak":
        """Build the extractors: all ``decoy="none"`` needs before :meth:`perturb` (no photos)."""
        from segue.cloak import DIFFERENTIABLE

        self.models = [DIFFERENTIABLE.create(n, self.device) if isinstance(n, str) else n for n in self.extractors]
        self.decoys = []
        return self

    def fit(self, train: FaceSet, side_labels: torch.Tensor) -> "FeatureCloak":
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

    def targets(self, side_labels: torch.Tensor) -> list[torch.Tensor | None]:
        """Per extractor, each photo's decoy embedding (``None`` per extractor with ``decoy="none"``)."""
        return [d.to(side_labels.device)[side_labels] for d in self.decoys] or [None] * len(self.models)

    def objective(self, x: torch.Tensor, clean: list[torch.Tensor], targets: list[torch.Tensor | None]) -> torch.Tensor:
        """Summed over the batch and the extractors: higher is a better cloak (a ``None`` target: away only)."""
        total = x.new_zeros(())
        for model, e_clean, t in zip(self.models, clean, targets):
            e = model(x)
            toward = x.new_zeros(()) if t is None else F.cosine_similarity(e, t).sum()
            total = total + toward - self.away * F.cosine_similarity(e, e_clean).sum()
        return total

    def smooth(self, grad: torch.Tensor) -> torch.Tensor:
        if self.ti_sigma <= 0:
            return grad
        k = 2 * math.ceil(2 * self.ti_sigma) + 1
        return kornia.filters.gaussian_blur2d(grad, (k, k), (self.ti_sigma, self.ti_sigma))

    def attack(self, x: torch.Tensor, targets: list[torch.Tensor | None], start: torch.Tensor | None = None,
               radius: float | torch.Tensor | None = None) -> torch.Tensor:
        """``delta`` for one batch, from ``start`` (zeros): MI-FGSM with DI and TI, projected on the
        L-inf budget and, with a PSNR floor, on each photo's L2 ``radius`` ``(N,)`` (default: the floor's).

        A ``(1,C,H,W)`` ``start`` makes one delta shared by the whole batch (the objective summed over
        its photos; experiments/person_cloak.py); it is not kept inside [0,1] per photo, the photos are
        clipped where they enter the extractors and when they are rounded."""
        with torch.no_grad():
            clean = [m(x) for m in self.models]
        delta = (torch.zeros_like(x) if start is None else start.clone()).requires_grad_(True)
        g = torch.zeros_like(delta)
        # a float, not an (N,) tensor, without a radius: float32 tensors round differently, and the
        # shipped cloak's measured photos must stay bit-identical
        radius = rms_cap(self.psnr_floor) if radius is None else radius
        size = (radius.view(-1, 1, 1, 1) if torch.is_tensor(radius) else radius) if self.step_norm == "l2" else self.eps
        step = 2.5 * size / max(self.steps, 1)
        for _ in range(self.steps):
            inp = (x + delta).clamp(0, 1)  # a no-op unless delta is shared
            inp = self.diversity(inp) if self.diverse else inp
            (grad,) = torch.autograd.grad(self.objective(inp, clean, targets), delta)
            grad = self.smooth(grad)
            g = self.momentum * g + grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            with torch.no_grad():
                if self.step_norm == "l2":
                    delta += step * g / g.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
                else:
                    delta += step * g.sign()
                delta.clamp_(-self.eps, self.eps)
                if self.psnr_floor > 0:
                    delta.copy_(within_rms(delta, radius))
                if delta.shape == x.shape:
                    delta.copy_((x + delta).clamp(0, 1) - x)
        return delta.detach()

    def perturb(self, images: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        if not self.models:
            raise RuntimeError("call fit first (load with decoy 'none'): the decoys come from the clean training photos")
        labels = torch.as_tensor(side_labels)
        out = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for i in range(0, len(images), self.batch):
                x = images[i : i + self.batch].to(self.device)
                y = labels[i : i + self.batch].to(self.device)
                out.append(self.round_to_budget(x, self.batch_delta(x, y)).cpu())
        return torch.cat(out)

    def batch_delta(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One batch's delta before 8-bit rounding (the hook experiments/feature_cloak_variants.py overrides)."""
        return self.attack(x, self.targets(y))

    def round_to_budget(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """8-bit ``x + delta`` within the budget and the PSNR floor (:func:`segue.methods.base.quantise_within`)."""
        return quantise_within(x, delta, self.eps, self.psnr_floor)
