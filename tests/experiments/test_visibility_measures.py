"""experiments/visibility_measures.py: the measures are sane before they are compared with the eye."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # experiments/ is a folder of the repository, not part of the installed package

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("piq")
from experiments.visibility_measures import measures  # noqa: E402


def test_identical_photos_score_perfect_and_the_coarse_colour_difference_sees_a_patch_fine_noise_hides():
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    face = (0.5 + 0.3 * torch.exp(-(xx**2 + yy**2) * 3) + 0.03 * torch.randn(1, 64, 64, generator=g)).clamp(0, 1)
    x = face.expand(3, 64, 64)[None].clone()
    same = measures(x, x)
    assert same["FSIM"].item() == pytest.approx(1.0, abs=1e-4) and same["CIEDE2000 p95"].item() == pytest.approx(0.0, abs=1e-4)
    noise = (x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    patch = x.clone()
    patch[..., 20:36, 24:40] += 0.08  # a bright square on 1/16 of the photo: the same RMS change as the noise
    on_noise, on_patch = measures(x, noise), measures(x, patch)
    assert on_patch["CIEDE2000 p95, blur 3 px"] > 2 * on_noise["CIEDE2000 p95, blur 3 px"]
    assert on_noise["FSIM"] < 0.99
