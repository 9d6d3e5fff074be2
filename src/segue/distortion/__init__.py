"""The distortion layer: what G's perturbation must survive while it is being trained.

Each stage is a small module with the same call ``stage(x, y, model) -> x'`` so stages
compose like kornia augmentations. There are two places a stage can act, as in the
official Segue code:

* on the generator's *input* (``PGD``): the clean photo is nudged by up to rho in the
  direction that most raises the surrogate's loss before G sees it, so G must give a
  working delta for slightly shifted versions of a photo too;
* on the *protected image* x + delta (blur, sharpness, flips): differentiable, so the
  gradient of the surrogate loss flows through them back into G.

The input PGD does not put G against an attacker's adversarial training: f still sees
x + delta, not (x + delta) + r. ``AdversarialNoise`` (off by default) is that stage, on the
protected image: robust error-minimising noise as in REM (Fu et al., ICLR 2022).

Beyond the paper (off by default, on in ``configs/robust_112.yaml``): what photos go through
on platforms and what an attacker tries first - JPEG at a random quality (kornia's
differentiable JPEG), down-then-up scaling, grayscale and a stronger blur - each applied with
its own probability, so delta learns to survive them.
"""

from segue.distortion.layer import DistortionConfig, DistortionLayer
from segue.distortion.stages import (
    PGD,
    AdversarialNoise,
    DistortionStage,
    KorniaStage,
    RandomRescale,
    Sharpness,
    linf_pgd,
    uniform_start,
)

__all__ = ["PGD", "AdversarialNoise", "DistortionConfig", "DistortionLayer", "DistortionStage", "KorniaStage",
           "RandomRescale", "Sharpness", "linf_pgd", "uniform_start"]
