"""experiments/sgm_cloak.py: FaceNet's backward pass reshaped (SGM, LinBP), its forward pass unchanged."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # experiments/ is a folder of the repository, not part of the installed package

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from conftest import TinyEmbedding, perturb_within_bar  # noqa: E402
from torch import nn  # noqa: E402

from experiments.sgm_cloak import LinearBackwardReLU, SGMCloak, reshape_backward  # noqa: E402


class Block35(nn.Module):
    """A residual block named as facenet-pytorch's: ``relu(conv2d(branch(x)) * scale + x)``."""

    def __init__(self):
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.ReLU())
        self.conv2d = nn.Conv2d(3, 3, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv2d(self.branch(x)) * 0.5 + x)


def tiny_residual(blocks: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*(Block35() for _ in range(blocks)), nn.Flatten())


def test_sgm_keeps_the_output_and_scales_only_the_branch_gradient():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    plain, sgm, skip_only = (reshape_backward(tiny_residual(1), gamma=g) for g in (1.0, 0.2, 0.0))
    assert torch.allclose(plain(x), sgm(x))
    g_plain, g_sgm, g_skip = (torch.autograd.grad(m(x).sum(), x)[0] for m in (plain, sgm, skip_only))
    # one block: the skip path's gradient plus gamma times the branch's
    assert torch.allclose(g_sgm, g_skip + 0.2 * (g_plain - g_skip), atol=1e-5)
    assert not torch.allclose(g_sgm, g_plain)


def test_linbp_relus_pass_their_gradient_as_the_identity():
    x = torch.tensor([-1.0, 2.0], requires_grad=True)
    out = LinearBackwardReLU()(x)
    assert out.tolist() == [0.0, 2.0]
    assert torch.autograd.grad(out.sum(), x)[0].tolist() == [1.0, 1.0]
    model = reshape_backward(tiny_residual(), linbp=1)
    assert isinstance(model[0].relu, nn.ReLU) and isinstance(model[1].relu, LinearBackwardReLU)


def test_a_model_without_residual_blocks_is_refused():
    with pytest.raises(ValueError, match="residual"):
        SGMCloak(extractors=[TinyEmbedding()], steps=1).load()


def test_the_cloak_runs_within_its_bar():
    torch.manual_seed(0)
    model = nn.Sequential(tiny_residual(), nn.Unflatten(1, (3, 32, 32)), TinyEmbedding())
    cloak = SGMCloak(extractors=[model], steps=2).load()
    x = torch.rand(2, 3, 32, 32)
    out, _, _ = perturb_within_bar(cloak, x)
    assert F.cosine_similarity(model(out), model(x)).mean() < 1.0
