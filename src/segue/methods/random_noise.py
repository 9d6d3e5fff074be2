"""Uniform random noise of the same budget: the sanity floor every protection must beat."""

from __future__ import annotations

import torch

from segue.methods.base import NoiseMethod, quantise


class RandomNoise(NoiseMethod):
    """Sample-wise i.i.d. uniform noise in ``[-eps, eps]`` per pixel and channel."""

    name = "random"

    def perturb(self, images: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        delta = (torch.rand(images.shape, generator=gen) * 2 - 1) * self.eps
        return quantise(images, delta, self.eps)
