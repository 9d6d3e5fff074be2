"""experiments/tangent_cloak.py: steps with their HaarPSI-lowering component removed, within the same bar."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # experiments/ is a folder of the repository, not part of the installed package

import torch  # noqa: E402
from conftest import TinyEmbedding as Tiny  # noqa: E402

from experiments.tangent_cloak import TangentCloak  # noqa: E402


def test_the_step_no_longer_lowers_haarpsi_to_first_order_and_tangent_0_is_the_package_step():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 48, 48, generator=g)
    delta = 0.02 * torch.randn(3, 3, 48, 48, generator=g)
    momentum = torch.randn(3, 3, 48, 48, generator=g)
    for scales in (1, 2):
        cloak = TangentCloak(extractors=[Tiny()], viewing_scales=scales).load()
        refs = cloak.references(x)
        y = (x + delta).clamp(0, 1).requires_grad_(True)
        haarpsi = cloak.terms(refs, y)[0]
        grads = [torch.autograd.grad(haarpsi[:, k].sum(), y, retain_graph=True)[0] for k in range(haarpsi.shape[1])]
        plain = cloak.shape_step(momentum, None)
        step = cloak.direction(momentum, None, x, delta, refs)
        assert ((plain * grads[0]).sum((1, 2, 3)) < 0).any()  # the plain step lowers HaarPSI somewhere
        assert ((step * grads[-1]).sum((1, 2, 3)) >= -1e-6 * grads[-1].norm()).all()  # the last half-space holds exactly
        cloak.tangent = 0.0
        assert torch.equal(cloak.direction(momentum, None, x, delta, refs), plain)


def test_it_stays_within_the_bar_it_shares_with_the_package_cloak():
    from segue.visibility import visibility_terms

    x = (torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(1)) * 255).round() / 255  # 8-bit, as photos are
    labels = torch.zeros(2, dtype=torch.long)
    cloak = TangentCloak(extractors=[Tiny()], steps=4).load()
    out = cloak.perturb(x, labels)
    h_min, d_max = cloak.targets_for(x, labels)
    h, _, d = visibility_terms(x, out)
    assert (h >= h_min[:, 0] - 1e-4).all() and (d <= d_max[:, 0] + 1e-4).all()
    assert (out - x).abs().max() <= 16 / 255 + 1e-6 and (out != x).any()
