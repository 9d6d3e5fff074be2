"""Shared tiny fixtures: synthetic photo folders and tiny configs that run in seconds on CPU."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from segue.data import load_image_folder
from segue.distortion import DistortionConfig
from segue.generator import GeneratorConfig
from segue.training import TrainConfig


class TinyEmbedding(nn.Module):
    """A fixed random conv "face embedding" for cloak tests: differentiable, L2-normalised, instant."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 5, stride=4)

    def forward(self, x):
        return F.normalize(self.conv(x).flatten(1), dim=1)


def perturb_within_bar(cloak, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``cloak.perturb(x)`` (side label 0) of a perceptual cloak, asserting every photo is within eps and its
    visibility bar; returns the output and the bar's ``(N, S)`` HaarPSI and CIEDE2000 p95 columns of it."""
    out = cloak.perturb(x, torch.zeros(len(x), dtype=torch.long))
    h_min, d_max, refs = cloak._bar
    h, d = cloak.terms(refs, out)
    assert ((h >= h_min) & (d <= d_max)).all(), (h, h_min, d, d_max)
    assert (out - x).abs().max() <= cloak.eps + 0.5 / 255 + 1e-6  # (+ half a level: the output is 8-bit, x need not be)
    return out, h, d


def tiny_train_config(**overrides) -> TrainConfig:
    """A 32-px, narrow-generator, 2-step-PGD config: the real code path, seconds on CPU."""
    base = dict(
        image_size=32, epochs=2, batch_size=8,
        generator=GeneratorConfig(width=16), distortion=DistortionConfig(pgd_steps=2), seed=0,
    )
    base.update(overrides)
    return TrainConfig(**base)


def make_photo_folder(root: Path, identities: int = 3, per_identity: int = 4, size: tuple[int, int] = (40, 48),
                      suffix: str = ".png", seed: int = 0) -> Path:
    """ImageFolder tree of smooth synthetic 'faces' (one colour blob per identity)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    for c in range(identities):
        (root / f"person{c}").mkdir(parents=True, exist_ok=True)
        centre = rng.uniform(0.3, 0.7, 2) * np.array(size)
        colour = rng.uniform(40, 215, 3)
        for i in range(per_identity):
            blob = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * (size[0] / 4) ** 2))
            img = colour * blob[..., None] + rng.uniform(0, 40, (size[1], size[0], 3))
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / f"person{c}" / f"img{i}{suffix}")
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path (to prove IN is untouched)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    return make_photo_folder(tmp_path / "in")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """4 people x 8 synthetic 32 px photos, loaded (shared by the training tests)."""
    root = make_photo_folder(tmp_path_factory.mktemp("data"), identities=4, per_identity=8, size=(32, 32))
    return load_image_folder(root, 32)
