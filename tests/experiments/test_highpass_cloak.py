"""experiments/highpass_cloak.py: steps without their smooth part, so the delta is grain, not shading."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # experiments/ is a folder of the repository, not part of the installed package

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from conftest import TinyEmbedding  # noqa: E402

from experiments.highpass_cloak import HighPassCloak  # noqa: E402


def test_a_step_keeps_its_fine_detail_and_loses_its_shading():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 48, 48, generator=g)
    yy = torch.linspace(-1, 1, 48)
    shading = (yy[:, None] + yy[None, :]).expand(2, 3, 48, 48)  # a smooth ramp across the face
    grain = 0.2 * torch.randn(2, 3, 48, 48, generator=g)
    cloak = HighPassCloak(extractors=[TinyEmbedding()], sigma=1.5).load()
    refs = cloak.references(x)
    step = cloak.direction(shading + grain, None, x, torch.zeros_like(x), refs)
    coarse = F.avg_pool2d(step, 8)  # what is left at the scale of shading
    assert coarse.abs().mean() < 0.05 * F.avg_pool2d(shading, 8).abs().mean()
    assert F.cosine_similarity(step.flatten(1), cloak.shape_step(grain, None).flatten(1)).min() > 0.5
