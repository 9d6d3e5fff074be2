"""Per-image feature-space cloak: PGD that moves each photo's face embedding away from its own.

What ``segue protect --strength visible`` ships, and the base of the perceptual cloak (the other
strengths, :mod:`segue.methods.perceptual_cloak`). Fawkes (Shan et al., USENIX Security 2020) and
LowKey (Cherepanova et al., ICLR 2021) are of this kind; the transfer tricks are the standard ones
for black-box adversarial examples: momentum (MI-FGSM, Dong et al. 2018) and input diversity (DI,
Xie et al. 2019; here the distortion layer's resize, blur, flip and JPEG, and with
``affine_diversity`` a small rotation, shift and scale, as DI's resize-and-pad moves the face).
The options that lost (decoy identities, TI smoothing, no diversity, DFANet dropout, starting from
or adding the generator) live in experiments/feature_cloak_variants.py.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from segue.data import FaceSet
from segue.distortion import DistortionConfig, DistortionLayer
from segue.methods.base import NoiseMethod, quantise_within
from segue.quality import rms_cap, within_rms
from segue.runtime import autocast, resolve_precision

#: Input diversity: what a platform does to an upload, each at random, in every PGD step.
DIVERSITY = DistortionConfig(pgd_steps=0, blur_kernel=0, sharpness=1.0, hflip_p=0.5, vflip_p=0.0,
                             strong_blur_p=0.5, strong_blur_sigma=(0.1, 1.1), rescale_p=0.5, rescale_min=0.6,
                             jpeg_p=0.5, jpeg_quality=(50.0, 95.0))
#: :data:`DIVERSITY` after a random affine warp (``affine_diversity``): the face also placed a little
#: differently, as a recogniser that aligns faces itself (dlib's 5-point alignment) places it.
AFFINE_DIVERSITY = dataclasses.replace(DIVERSITY, affine_p=0.7)
#: The side of the surrogate's input (FaceNet's 160 px). A photo cloaked at a larger size is
#: downsampled to it with antialiasing before the extractors, as a recogniser downsamples a large face;
#: without it FaceNet's own bilinear resize reads only a sparse grid of the photo's pixels.
SURROGATE_SIDE = 160


def surrogate_view(x: torch.Tensor) -> torch.Tensor:
    """``x`` as the extractors see it: downsampled (antialiased) to :data:`SURROGATE_SIDE` when larger."""
    if max(x.shape[-2:]) <= SURROGATE_SIDE:
        return x
    return F.interpolate(x, size=(SURROGATE_SIDE, SURROGATE_SIDE), mode="bilinear", antialias=True, align_corners=False)


class FeatureCloak(NoiseMethod):
    """PGD on an ensemble of differentiable face extractors, away from each photo's clean embedding.

    ``perturb`` minimises ``cos(e(x'), e(x))`` summed over the extractors, one photo at a time: no
    other photo, person or decoy is needed. dlib is the black-box attacker of the benchmarks: never
    an extractor. The defaults are the settings measured on held-out people (docs/attacks.md,
    chosen on ORL people 0-19): FaceNet alone, momentum, input diversity with a small warp, L2
    steps under a 30 dB PSNR floor inside 16/255.

    Args:
        eps: L-inf budget (16/255).
        seed, device: as :class:`NoiseMethod` (the seed fixes the input diversity draws).
        extractors: :data:`segue.cloak.DIFFERENTIABLE` names (``("facenet-torch",)``) or frozen
            modules mapping ``(N,3,H,W)`` in [0,1] to L2-normalised ``(N,D)`` embeddings.
        steps: PGD steps (20).
        momentum: MI-FGSM decay (1; 0: plain PGD).
        affine_diversity: :data:`AFFINE_DIVERSITY` instead of :data:`DIVERSITY` (True): on held-out
            people it lowered dlib's accuracy further (docs/attacks.md).
        psnr_floor: dB; each step projects ``delta`` onto the L2 ball that keeps it (30; 0: L-inf only).
        step_norm: ``"l2"`` (steps along the RMS-normalised gradient, ``2.5 * radius / steps``; needs
            ``psnr_floor``: under a PSNR floor the binding budget is an L2 ball) or ``"sign"``
            (L-inf steps, ``2.5 * eps / steps``).
        batch: photos per PGD batch (16).
        precision: of the extractors' passes: ``"float32"``, ``"bfloat16"`` (autocast: half the time of
            FaceNet's passes on a CPU with AVX512-BF16; its input gradients' cosine to float32's > 0.9 on ORL
            photos, tests/test_facenet.py) or
            ``"auto"`` (bfloat16 where the device runs it natively, :func:`segue.runtime.native_bf16`).

    Shape:
        ``perturb(images (N,3,H,W) in [0,1], side_labels (N,))`` -> ``(N,3,H,W)``, 8-bit,
        ``|out - images| <= eps``; the side labels are not used.

    Examples:
        >>> method = FeatureCloak(steps=10, psnr_floor=32.0)
        >>> method.config()["psnr_floor"], method.config()["step_norm"]
        (32.0, 'l2')
    """

    name = "feature-cloak"

    def __init__(self, eps: float = 16 / 255, seed: int = 0, device: str | torch.device = "cpu",
                 extractors: tuple | list = ("facenet-torch",), steps: int = 20, momentum: float = 1.0,
                 affine_diversity: bool = True, psnr_floor: float = 30.0, step_norm: str = "l2", batch: int = 16,
                 precision: str = "float32"):
        super().__init__(eps, seed, device)
        if any(isinstance(n, str) and n.startswith("dlib") for n in extractors):
            raise ValueError("dlib is the black-box attacker: never a surrogate")
        if step_norm not in ("sign", "l2") or (step_norm == "l2" and psnr_floor <= 0):
            raise ValueError("step_norm is 'sign', or 'l2' with a psnr_floor")
        self.extractors = list(extractors)
        self.extractor_names = [n if isinstance(n, str) else type(n).__name__ for n in extractors]
        self.steps, self.momentum, self.psnr_floor = int(steps), float(momentum), float(psnr_floor)
        self.step_norm, self.batch, self.affine_diversity = step_norm, int(batch), bool(affine_diversity)
        self.precision = resolve_precision(precision, device)
        self.models: list = []
        self.diversity = DistortionLayer.from_config(AFFINE_DIVERSITY if self.affine_diversity else DIVERSITY)

    def config(self) -> dict:
        return {**super().config(), "extractors": self.extractor_names, "steps": self.steps, "momentum": self.momentum,
                "affine_diversity": self.affine_diversity, "psnr_floor": self.psnr_floor,
                "step_norm": self.step_norm, "precision": self.precision}

    def load(self) -> "FeatureCloak":
        """Build the extractors: all :meth:`perturb` needs (no photos)."""
        from segue.cloak import DIFFERENTIABLE

        self.models = [DIFFERENTIABLE.create(n, self.device) if isinstance(n, str) else n for n in self.extractors]
        for m in self.models:  # FaceNet's forward and backward passes: ~20 % faster on 2 CPU cores in NHWC
            if isinstance(m, torch.nn.Module):
                m.to(memory_format=torch.channels_last)
        return self

    def fit(self, train: FaceSet, side_labels: torch.Tensor) -> "FeatureCloak":
        return self.load()

    def targets(self, side_labels: torch.Tensor) -> list[torch.Tensor | None]:
        """Per extractor, each photo's decoy embedding: none here (experiments/feature_cloak_variants.py adds them)."""
        return [None] * len(self.models)

    def objective(self, x: torch.Tensor, clean: list[torch.Tensor], targets: list[torch.Tensor | None]) -> torch.Tensor:
        """Summed over the batch and the extractors: higher is a better cloak (minus the cosine to the clean embedding)."""
        total = x.new_zeros(())
        for model, e_clean in zip(self.models, clean):
            total = total - F.cosine_similarity(model(x).float(), e_clean).sum()
        return total

    def surrogate_pass(self):
        """The context the extractors run in (:func:`segue.runtime.autocast` at :attr:`precision`)."""
        return autocast(self.precision, self.device)

    def clean_embeddings(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per extractor, the clean photos' embeddings (float32), the point each cloak moves away from."""
        with torch.no_grad(), self.surrogate_pass():
            return [m(surrogate_view(x)).float() for m in self.models]

    def gradient(self, inp: torch.Tensor, wrt: torch.Tensor, clean: list[torch.Tensor],
                 targets: list[torch.Tensor | None]) -> torch.Tensor:
        """The gradient of :meth:`objective` at the step's input ``inp`` with respect to ``wrt`` (the delta)."""
        with self.surrogate_pass():
            objective = self.objective(inp, clean, targets)
        return torch.autograd.grad(objective, wrt)[0]

    def step_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the extractors see in a step: the photo after the input diversity's random draws."""
        return surrogate_view(self.diversity(x))

    def smooth(self, grad: torch.Tensor) -> torch.Tensor:
        """The gradient before it becomes a step (unchanged here; TI smooths it in the variants)."""
        return grad

    def attack(self, x: torch.Tensor, targets: list[torch.Tensor | None], start: torch.Tensor | None = None,
               radius: float | torch.Tensor | None = None) -> torch.Tensor:
        """``delta`` for one batch, from ``start`` (zeros): MI-FGSM with DI, projected on the
        L-inf budget and, with a PSNR floor, on each photo's L2 ``radius`` ``(N,)`` (default: the floor's).

        A ``(1,C,H,W)`` ``start`` makes one delta shared by the whole batch (the objective summed over
        its photos; experiments/person_cloak.py); it is not kept inside [0,1] per photo, the photos are
        clipped where they enter the extractors and when they are rounded."""
        clean = self.clean_embeddings(x)
        delta = (torch.zeros_like(x) if start is None else start.clone()).requires_grad_(True)
        g = torch.zeros_like(delta)
        # a float, not an (N,) tensor, without a radius: float32 tensors round differently, and the
        # shipped cloak's measured photos must stay bit-identical
        radius = rms_cap(self.psnr_floor) if radius is None else radius
        size = (radius.view(-1, 1, 1, 1) if torch.is_tensor(radius) else radius) if self.step_norm == "l2" else self.eps
        step = 2.5 * size / max(self.steps, 1)
        for _ in range(self.steps):
            inp = self.step_input((x + delta).clamp(0, 1))  # the clamp is a no-op unless delta is shared
            grad = self.smooth(self.gradient(inp, delta, clean, targets))
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
            raise RuntimeError("call load (or fit) first: the extractors are built there")
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
