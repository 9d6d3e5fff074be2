"""experiments/relight_cloak.py: the cloak's steps as smooth gain fields (adversarial relighting)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # experiments/ is a folder of the repository, not part of the installed package

import torch  # noqa: E402
from conftest import TinyEmbedding, perturb_within_bar  # noqa: E402

from experiments.relight_cloak import RelightCloak, upsample  # noqa: E402


def grid_residual(gain: torch.Tensor, grid: int) -> float:
    """How far ``gain`` ``(H,W)`` is from every bilinear upsampling of a ``grid x grid`` field (least squares)."""
    basis = torch.eye(grid * grid).reshape(-1, 1, grid, grid)
    a = upsample(basis, gain.shape).reshape(grid * grid, -1).T  # (H*W, grid*grid)
    coef = torch.linalg.lstsq(a, gain.reshape(-1, 1)).solution
    return float((a @ coef - gain.reshape(-1, 1)).abs().max() / gain.abs().max())


def test_a_step_is_a_smooth_gain_field_that_does_not_oppose_the_gradient():
    torch.manual_seed(0)
    x, g = torch.rand(2, 3, 32, 32) + 0.05, torch.randn(2, 3, 32, 32)
    grey = RelightCloak(cell=8, chroma=0.0).direction(g, None, x, None, [])
    gain = grey / x
    assert torch.allclose(gain[:, 0], gain[:, 1], atol=1e-5) and torch.allclose(gain[:, 0], gain[:, 2], atol=1e-5)
    assert grid_residual(gain[0, 0], 4) < 1e-4  # nothing finer than one gain every 8 px
    assert grid_residual(g[0, 0] / x[0, 0], 4) > 0.5  # (the raw step is not such a field)
    tinted = RelightCloak(cell=8, chroma=1.0).direction(g, None, x, None, [])
    assert not torch.allclose((tinted / x)[:, 0], (tinted / x)[:, 1], atol=1e-3)  # chroma: light of a colour
    for step in (grey, tinted):  # an ascent direction of the objective whose gradient is g
        assert ((step * g).sum((1, 2, 3)) > 0).all()


def test_the_cloak_stays_within_eps_and_its_bar():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 48, 48)
    cloak = RelightCloak(extractors=[TinyEmbedding()], steps=3, cell=12).load()
    out, _, _ = perturb_within_bar(cloak, x)
    assert (out != x).any()
