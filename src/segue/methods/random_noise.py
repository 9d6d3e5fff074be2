"""Uniform random noise of the same budget: the sanity floor every protection must beat."""

from __future__ import annotations

import torch

from segue.methods.base import NoiseMethod, quantise


class RandomNoise(NoiseMethod):
    """Sample-wise i.i.d. uniform noise in ``[-eps, eps]`` per pixel and channel.

    The control every unlearnable-example paper reports: same budget, no shortcut, so a victim
    learns the faces through it (clean accuracy).

    Args:
        eps, seed, device: as :class:`NoiseMethod`.

    Shape:
        ``perturb(images (N,3,H,W), side_labels (N,))`` -> ``(N,3,H,W)``.

    Examples:
        >>> import torch
        >>> x = torch.full((1, 3, 8, 8), 128 / 255)
        >>> out = RandomNoise(eps=8 / 255, seed=0).perturb(x, torch.tensor([0]))
        >>> out.shape, round((out - x).abs().max().item() * 255)
        (torch.Size([1, 3, 8, 8]), 8)
    """

    name = "random"

    def perturb(self, images: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        delta = (torch.rand(images.shape, generator=gen) * 2 - 1) * self.eps
        return quantise(images, delta, self.eps)
