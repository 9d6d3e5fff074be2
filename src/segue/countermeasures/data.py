"""Data countermeasures: transform the whole protected training set once, as a saved image would be."""

from __future__ import annotations

import io

import kornia.filters
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from segue.countermeasures import COUNTERMEASURES, Countermeasure, to_8bit


@COUNTERMEASURES.register("jpeg")
class JPEG(Countermeasure):
    """Re-encode every image as a real JPEG (PIL, 4:2:0 subsampling as PIL's default) at ``quality``.

    What a platform or scraper does to every upload; the countermeasure most perturbations lose to.

    Args:
        quality: JPEG quality (75; the tables also use 30 and 10).

    Shape:
        ``apply(images (N,3,H,W) in [0,1])`` -> ``(N,3,H,W)`` in [0,1]: the attacker's training photos.

    Examples:
        >>> out = JPEG(quality=30).apply(torch.rand(2, 3, 32, 32))
        >>> out.shape, bool((out * 255 - (out * 255).round()).abs().max() < 1e-4)   # 8-bit, as a file
        (torch.Size([2, 3, 32, 32]), True)
    """

    name = "jpeg"

    def __init__(self, quality: int = 75):
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality must be in 1..100, not {quality}")
        self.quality = int(quality)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for img in images:
            arr = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            buf = io.BytesIO()
            Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=self.quality)
            buf.seek(0)
            with Image.open(buf) as im:
                dec = np.asarray(im.convert("RGB"), dtype=np.uint8)
            out.append(torch.from_numpy(dec.copy()).permute(2, 0, 1).float() / 255)
        return torch.stack(out)


@COUNTERMEASURES.register("grayscale")
class Grayscale(Countermeasure):
    """Luma ``0.299 R + 0.587 G + 0.114 B`` copied to all three channels.

    Removes every colour part of a perturbation; the victim still learns faces from luma.

    Shape:
        as :class:`JPEG`.

    Examples:
        >>> g = Grayscale().apply(torch.rand(2, 3, 32, 32))
        >>> torch.equal(g[:, 0], g[:, 1]), g.shape
        (True, torch.Size([2, 3, 32, 32]))
    """

    name = "grayscale"

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)
        return to_8bit((images * w).sum(1, keepdim=True)).expand_as(images).contiguous()


@COUNTERMEASURES.register("downscale")
class Downscale(Countermeasure):
    """Downscale by ``factor`` (antialiased bilinear), then back up to the original size (bilinear).

    Platforms resize uploads; fine pixel noise does not survive it.

    Args:
        factor: scale factor (0.5; the tables also use 0.25).

    Shape:
        as :class:`JPEG`.

    Examples:
        >>> noise = torch.rand(1, 3, 32, 32)
        >>> bool(Downscale(factor=0.25).apply(noise).std() < noise.std() / 2)   # fine detail gone
        True
    """

    name = "downscale"

    def __init__(self, factor: float = 0.5):
        if not 0 < factor < 1:
            raise ValueError(f"downscale factor must be in (0,1), not {factor}")
        self.factor = float(factor)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        small = F.interpolate(images, size=(max(1, round(h * self.factor)), max(1, round(w * self.factor))),
                              mode="bilinear", antialias=True, align_corners=False)
        small = to_8bit(small)  # the attacker stores the small image
        return to_8bit(F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False))


@COUNTERMEASURES.register("blur")
class Blur(Countermeasure):
    """Gaussian blur (kornia), ``kernel`` x ``kernel`` with ``sigma``; reflect padding.

    Args:
        kernel: odd kernel size (5).
        sigma: standard deviation in pixels (1.0).

    Shape:
        as :class:`JPEG`.

    Examples:
        >>> Blur(kernel=5, sigma=1.0).apply(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    name = "blur"

    def __init__(self, kernel: int = 5, sigma: float = 1.0):
        self.kernel, self.sigma = int(kernel), float(sigma)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return to_8bit(kornia.filters.gaussian_blur2d(images, (self.kernel, self.kernel), (self.sigma, self.sigma)))


@COUNTERMEASURES.register("bitdepth")
class BitDepth(Countermeasure):
    """Keep ``bits`` bits per channel (values ``round(x (2^b - 1)) / (2^b - 1)``).

    Feature squeezing: coarse quantisation erases perturbations smaller than one step.

    Args:
        bits: bits kept per channel (4).

    Shape:
        as :class:`JPEG`.

    Examples:
        >>> len(BitDepth(bits=1).apply(torch.rand(2, 3, 32, 32)).unique())
        2
    """

    name = "bitdepth"

    def __init__(self, bits: int = 4):
        if not 1 <= bits <= 8:
            raise ValueError(f"bits must be in 1..8, not {bits}")
        self.bits = int(bits)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        levels = 2**self.bits - 1
        return to_8bit((images.clamp(0, 1) * levels).round() / levels)
