"""experiments/layer_cloak.py: FaceNet cut after a stage, and the cloak that pushes that map away."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # experiments/ is a folder of the repository, not part of the installed package

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from conftest import perturb_within_bar  # noqa: E402

from experiments.layer_cloak import FaceNetLayer, LayerCloak  # noqa: E402
from segue.cloak import DIFFERENTIABLE  # noqa: E402


def test_the_cut_network_is_facenet_up_to_its_stage():
    facenet = DIFFERENTIABLE.create("facenet-torch")
    x = torch.rand(2, 3, 112, 112)
    feats = {}
    handle = facenet.net.repeat_1.register_forward_hook(lambda m, a, out: feats.setdefault("f", out))
    with torch.no_grad():
        facenet(x)
        cut = FaceNetLayer(facenet, "repeat_1")(x)
    handle.remove()
    assert cut.shape == (2, 256 * 17 * 17)
    assert torch.allclose(cut, F.normalize(feats["f"].flatten(1), dim=1), atol=1e-5)
    with pytest.raises(ValueError):
        FaceNetLayer(facenet, "last_linear")


def test_the_layer_cloak_moves_its_feature_map_within_the_bar():
    g = torch.Generator().manual_seed(0)
    x = ((0.3 + 0.4 * torch.rand(2, 3, 112, 112, generator=g)) * 255).round() / 255
    cloak = LayerCloak(layer="conv2d_4b", steps=3, chroma=0.3, texture=True).load()
    out, _, _ = perturb_within_bar(cloak, x)
    with torch.no_grad():
        moved = F.cosine_similarity(cloak.models[0](out), cloak.models[0](x))
    assert (out != x).any() and (moved < 1 - 1e-4).all()
