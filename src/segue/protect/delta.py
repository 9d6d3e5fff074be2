"""delta itself: the generator on fixed-size batches, resized to each region and pasted back."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from segue.faces import Box
from segue.generator import Generator
from segue.imageio import to_uint8


def generator_size(generator: Generator) -> int | None:
    """The image size the generator was trained at (stored in its provenance), if known."""
    return generator.config.image_size


def resize_all(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """Photos of any sizes as one ``(N,3,size,size)`` batch (bilinear, antialiased)."""
    return torch.stack([
        x if x.shape[-2:] == (size, size)
        else F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        for x in images
    ])


def generator_deltas(generator: Generator, x: torch.Tensor, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
    """delta for ``x`` in chunks of exactly ``batch_size`` (zero-padded).

    CPU convolutions may pick different kernels for different batch sizes (we measured
    5e-8 differences between batches of 3 and 8), which flips a few rounded pixels; a fixed
    chunk size makes every image's result independent of its neighbours. A module whose
    ``fixed_batch`` is False (the per-photo cloak) gets the last chunk unpadded.
    """
    device = next(generator.parameters()).device
    pad = getattr(generator, "fixed_batch", True)
    out = []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], labels[start : start + batch_size]
        n = len(xb)
        if n < batch_size and pad:
            xb = torch.cat([xb, xb.new_zeros(batch_size - n, *xb.shape[1:])])
            yb = torch.cat([yb, yb.new_zeros(batch_size - n)])
        out.append(generator(xb.to(device), yb.to(device))[:n].cpu())
    return torch.cat(out)


def perturb(generator: Generator, images: list[torch.Tensor], labels: torch.Tensor, work_size: int | None,
            small: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Protected versions of whole images of any sizes (in-memory; no face detection)."""
    if not work_size:
        return [generator.protect(x[None].to(next(generator.parameters()).device), labels[i : i + 1])[0].cpu()
                for i, x in enumerate(images)]
    small = resize_all(images, work_size) if small is None else small
    deltas = generator_deltas(generator, small, labels, max(len(images), 1))
    return [(x + _fit(d, x.shape[-2:])).clamp(0, 1) for x, d in zip(images, deltas)]


def _fit(delta: torch.Tensor, size) -> torch.Tensor:
    """Resize a ``(3,h,w)`` delta to ``size`` (bilinear: stays within its own value range)."""
    if delta.shape[-2:] == tuple(size):
        return delta
    return F.interpolate(delta[None], size=tuple(size), mode="bilinear", align_corners=False)[0]


def frames_tensor(rgbs: list[np.ndarray]) -> torch.Tensor:
    """Same-sized ``(H,W,3)`` uint8 photos as one ``(N,3,H,W)`` float batch in [0,1], channels-last in
    memory (the photos' own layout: nothing is transposed; torch's resizing gives the same values)."""
    return torch.from_numpy(np.stack(rgbs)).permute(0, 3, 1, 2).float().div_(255)


def add_deltas(x: torch.Tensor, deltas: torch.Tensor, eps: float) -> np.ndarray:
    """Photos ``x`` (``(N,3,H,W)`` in [0,1]) plus their deltas, resized to them (bilinear) and clamped
    to eps, as ``(N,H,W,3)`` uint8: :func:`paste` of one whole-frame region, for a batch at once.
    ``x`` is overwritten (in place: no second copy of the batch)."""
    d = deltas.contiguous(memory_format=torch.channels_last)  # resized in x's layout: faster, same values
    if d.shape[-2:] != x.shape[-2:]:
        d = F.interpolate(d, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
    y = x.add_(d.clamp_(-eps, eps)).clamp_(0, 1).mul_(255).round_().to(torch.uint8)
    return y.permute(0, 2, 3, 1).contiguous().numpy()


def to_work_size(rgbs: list[np.ndarray], size: int) -> torch.Tensor:
    """Same-sized ``(H,W,3)`` uint8 photos or crops as the generator's ``(N,3,size,size)`` input in [0,1].

    Resized in 8 bits (bilinear, antialiased) as the training photos were: Pillow's ``BILINEAR``
    (:func:`segue.data.read_rgb`), whose pixels torch's uint8 kernel reproduces, 7x faster than
    resizing floats (0.08 vs 0.55 ms per 224-px photo; floats differ from it by up to 1/255).
    """
    x = torch.from_numpy(np.stack(rgbs)).permute(0, 3, 1, 2)  # channels-last, as the kernel wants it
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.float().div_(255).contiguous()


def union(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def paste(rgb: np.ndarray, pieces: list[tuple[Box, torch.Tensor]], eps: float) -> np.ndarray:
    """Add each region's delta (resized to the region) to the photo; overlaps are clamped to eps."""
    ux0, uy0, ux1, uy1 = union([b for b, _ in pieces])
    canvas = torch.zeros(3, uy1 - uy0, ux1 - ux0)
    for (x0, y0, x1, y1), d in pieces:
        canvas[:, y0 - uy0 : y1 - uy0, x0 - ux0 : x1 - ux0] += _fit(d, (y1 - y0, x1 - x0))
    region = torch.from_numpy(rgb[uy0:uy1, ux0:ux1]).permute(2, 0, 1).float() / 255
    out = rgb.copy()
    out[uy0:uy1, ux0:ux1] = to_uint8(region + canvas.clamp_(-eps, eps))
    return out


@torch.inference_mode()
def protect_images(generator: Generator, images: torch.Tensor, side_labels: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Protect an in-memory ``(N,3,H,W)`` set and quantise to 8 bits, as a saved PNG would be."""
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        xp = perturb(generator, list(x), side_labels[start : start + batch_size], generator_size(generator))
        out.append((torch.stack(xp) * 255).round() / 255)
    return torch.cat(out)
