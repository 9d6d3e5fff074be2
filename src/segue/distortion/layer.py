"""The distortion layer (one container of stages) and its config, the paper's settings by default."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import kornia.augmentation as K
import kornia.filters
import torch
from torch import nn

from segue.distortion.stages import PGD, AdversarialNoise, DistortionStage, KorniaStage, RandomRescale, Sharpness


@dataclass
class DistortionConfig:
    """The paper's distortion settings; set a value to 0 to drop that stage.

    Args:
        pgd_steps, pgd_rho: the input PGD (5 steps, 1/255).
        blur_kernel, blur_sigma: Gaussian blur (3, 0.2).
        sharpness: sharpness factor (2.0).
        hflip_p, vflip_p: flip probabilities (0.1 each).
        jpeg_p, jpeg_quality: differentiable JPEG (kornia) and its quality range (ours; off).
        rescale_p, rescale_min: :class:`RandomRescale` (ours; off).
        grey_p: random grayscale (ours; off).
        strong_blur_p, strong_blur_sigma: a stronger random blur (ours; off).
        affine_p: a small random rotation, shift and scale (:data:`AFFINE`; ours; off): the face
            placed as another recogniser's own alignment would place it.
        adv_rho, adv_steps: :class:`AdversarialNoise` on the protected image (REM-style; off).

    Examples:
        >>> layer = DistortionLayer.from_config(DistortionConfig(jpeg_p=0.5))
        >>> [type(s).__name__ for s in layer.stages]
        ['PGD', 'KorniaStage', 'Sharpness', 'KorniaStage', 'KorniaStage', 'KorniaStage']
    """

    pgd_steps: int = 5
    pgd_rho: float = 1 / 255
    blur_kernel: int = 3
    blur_sigma: float = 0.2
    sharpness: float = 2.0
    hflip_p: float = 0.1
    vflip_p: float = 0.1
    # robustness stages (0 = off, the paper's setting); probabilities are per image/batch
    jpeg_p: float = 0.0
    jpeg_quality: tuple[float, float] = (10.0, 90.0)
    rescale_p: float = 0.0
    rescale_min: float = 0.25
    grey_p: float = 0.0
    strong_blur_p: float = 0.0
    strong_blur_sigma: tuple[float, float] = (0.5, 1.5)
    affine_p: float = 0.0
    adv_rho: float = 0.0  # >0: AdversarialNoise on x + delta (REM-style), applied before the other output stages
    adv_steps: int = 5

    def to_dict(self) -> dict:
        return asdict(self)


#: The warp of ``affine_p``: up to 8 degrees, 5 % shift, 8 % scale, borders repeated (fixed before it was measured).
AFFINE = dict(degrees=8.0, translate=(0.05, 0.05), scale=(0.92, 1.08), padding_mode="border")


class DistortionLayer(nn.Module):
    """The paper's distortion: PGD on G's input; blur, sharpness, flips on x + delta.

    One container of :class:`DistortionStage` modules (as kornia's ``AugmentationSequential``
    composes augmentations): ``generator_input`` runs the input stages, ``forward`` the others.

    Args:
        stages: in order; build the paper's (or a robust config's) with :meth:`from_config`.

    Shape:
        ``generator_input(x, y, model)`` and ``forward(x, y=None, model=None)``: ``(N,3,H,W)`` -> ``(N,3,H,W)``.

    Examples:

        >>> import torch
        >>> from segue.models import create_model
        >>> f = create_model("resnet18", num_classes=4)
        >>> x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 3])
        >>> layer = DistortionLayer.from_config(DistortionConfig(pgd_steps=2))
        >>> x_in = layer.generator_input(x, y, f)        # what G sees: PGD within 1/255
        >>> bool((x_in - x).abs().max() <= 1 / 255 + 1e-6), layer(x).shape
        (True, torch.Size([2, 3, 32, 32]))
    """

    def __init__(self, stages: list[DistortionStage]):
        super().__init__()
        self.stages = nn.ModuleList(stages)

    @classmethod
    def from_config(cls, cfg: DistortionConfig) -> "DistortionLayer":
        stages: list[DistortionStage] = []
        if cfg.pgd_steps > 0 and cfg.pgd_rho > 0:
            stages.append(PGD(cfg.pgd_rho, cfg.pgd_steps))
        if cfg.adv_rho > 0 and cfg.adv_steps > 0:
            stages.append(AdversarialNoise(cfg.adv_rho, cfg.adv_steps))
        if cfg.affine_p > 0:  # geometry first: what follows (blur, rescale, JPEG) happens to the placed face
            stages.append(KorniaStage(K.RandomAffine(**AFFINE, p=cfg.affine_p)))
        if cfg.blur_kernel > 1 and cfg.blur_sigma > 0:
            k = cfg.blur_kernel
            stages.append(KorniaStage(kornia.filters.GaussianBlur2d((k, k), (cfg.blur_sigma, cfg.blur_sigma))))
        if cfg.sharpness and cfg.sharpness != 1:
            stages.append(Sharpness(cfg.sharpness))
        if cfg.hflip_p > 0:
            stages.append(KorniaStage(K.RandomHorizontalFlip(p=cfg.hflip_p)))
        if cfg.vflip_p > 0:
            stages.append(KorniaStage(K.RandomVerticalFlip(p=cfg.vflip_p)))
        if cfg.strong_blur_p > 0:
            stages.append(KorniaStage(K.RandomGaussianBlur((5, 5), tuple(cfg.strong_blur_sigma), p=cfg.strong_blur_p)))
        if cfg.rescale_p > 0:
            stages.append(RandomRescale(cfg.rescale_p, cfg.rescale_min))
        if cfg.grey_p > 0:
            stages.append(KorniaStage(K.RandomGrayscale(p=cfg.grey_p)))  # stays 3-channel
        if cfg.jpeg_p > 0:  # last: JPEG is what a platform does after everything else
            stages.append(KorniaStage(K.RandomJPEG(jpeg_quality=tuple(cfg.jpeg_quality), p=cfg.jpeg_p)))
        return cls(stages)

    def generator_input(self, x: torch.Tensor, y: torch.Tensor, model: nn.Module) -> torch.Tensor:
        """What G sees during training: the photo after the input stages (PGD)."""
        for stage in self.stages:
            if stage.on_input:
                x = stage(x, y, model)
        return x

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, model: nn.Module | None = None) -> torch.Tensor:
        """The protected image after the output stages (differentiable)."""
        for stage in self.stages:
            if not stage.on_input:
                x = stage(x, y, model)
        return x
