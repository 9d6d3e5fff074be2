"""experiments/shading_cloak.py: a third bar term, mid-scale shading of the lightness."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # experiments/ is a folder of the repository, not part of the installed package

import torch  # noqa: E402
from conftest import TinyEmbedding, perturb_within_bar  # noqa: E402

from experiments.shading_cloak import ShadingCloak, shading  # noqa: E402
from segue.methods.base import quantise  # noqa: E402
from segue.methods.perceptual_cloak import shipped_protect  # noqa: E402
from segue.visibility import shading_p95  # noqa: E402


def test_each_photo_keeps_its_shading_within_the_generators_plus_margin():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 48, 48)
    cloak = ShadingCloak(extractors=[TinyEmbedding()], steps=3, shading_margin=0.2).load()
    out, h, _ = perturb_within_bar(cloak, x)
    h_min, _, refs = cloak._bar
    assert h.shape == h_min.shape == (2, 2)
    assert torch.allclose(-h[:, 1], shading_p95(x, out), atol=1e-5)  # the bar's column is the reported measure
    # the third term's bar is the generator's shading plus the margin, not HaarPSI's
    labels = torch.zeros(2, dtype=torch.long)
    generator = quantise(x, shipped_protect(cloak.reference_model, x, labels) - x, 1.0)
    assert torch.allclose(-h_min[:, 1], shading(refs[0], generator) + 0.2, atol=1e-5)
