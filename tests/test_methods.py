"""Noise methods (segue.methods) and the victim registry: budget, shape, registries, EM caps."""

import pytest
import torch

from segue.data import FaceSet
from segue.methods import create_method, list_methods
from segue.models import create_model

EPS = 8 / 255


def tiny_set(n=12, classes=3, size=32, seed=0) -> FaceSet:
    gen = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 3, size, size, generator=gen) * 255).round() / 255
    return FaceSet(images, torch.arange(n) % classes, [f"p{c}" for c in range(classes)])


FAST_EM = dict(batch_size=6, train_steps=2, max_passes=1)
CASES = [
    ("none", {}),
    ("random", {}),
    ("lsp", {}),
    ("segue", {}),
    ("em", dict(mode="classwise", **FAST_EM)),
    ("em", dict(mode="samplewise", steps=2, **FAST_EM)),
]


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{k.get('mode', '')}" for n, k in CASES])
def test_method_bound_shape_and_8bit(name, kw):
    data = tiny_set()
    method = create_method(name, **kw).fit(data, data.labels)
    out = method.perturb(data.images, data.labels)
    assert out.shape == data.images.shape and out.dtype == torch.float32
    assert (out - data.images).abs().max() <= EPS + 1e-6
    assert ((out * 255) - (out * 255).round()).abs().max() < 1e-4  # 8-bit valued, as a saved PNG
    assert out.min() >= 0 and out.max() <= 1
    if name != "none":
        assert (out != data.images).float().mean() > 0.3  # it does perturb


def test_registries_name_unknown_entries():
    for create in (lambda: create_method("nope"), lambda: create_model("nope", 3)):
        with pytest.raises(KeyError, match="known: .*"):
            create()
    assert {"none", "random", "em", "lsp", "segue"} <= set(list_methods())


def test_lsp_patterns_are_class_separable_and_patchwise():
    data = tiny_set(n=30, classes=3)
    lsp = create_method("lsp", grid=4).fit(data, data.labels)
    delta = lsp.patterns(data.labels, (32, 32))
    # constant on each 8x8 cell (a 4x4 grid of colour patches)
    cells = delta.view(30, 3, 4, 8, 4, 8)
    assert torch.allclose(cells, cells[:, :, :, :1, :, :1].expand_as(cells), atol=1e-6)
    # nearest class mean of the patterns recovers every label (linearly separable shortcut)
    flat = delta.flatten(1)
    means = torch.stack([flat[data.labels == c].mean(0) for c in range(3)])
    assert torch.equal(torch.cdist(flat, means).argmin(1), data.labels)
    # two images of the same class get different draws (not one pattern per class)
    assert not torch.allclose(flat[0], flat[3])


def test_em_caps_and_stop_reason():
    data = tiny_set()
    em = create_method("em", mode="classwise", batch_size=6, train_steps=1, max_passes=2, stop_acc=2.0)
    em.fit(data, data.labels)
    assert em.fit_info["passes"] == 2 and em.fit_info["stopped_by"] == "max_passes"
    em = create_method("em", mode="classwise", batch_size=6, train_steps=1, stop_acc=0.0).fit(data, data.labels)
    assert em.fit_info["passes"] == 1 and em.fit_info["stopped_by"] == "stop_acc"
    em = create_method("em", mode="samplewise", batch_size=6, train_steps=1, max_seconds=0.0).fit(data, data.labels)
    assert em.fit_info["stopped_by"] == "max_seconds" and em.fit_info["history"][0]["cut_short"]
    # class-wise noise: every image of a class gets the same delta
    em = create_method("em", mode="classwise", batch_size=6, train_steps=1, max_passes=1).fit(data, data.labels)
    delta = em.perturb(data.images, data.labels) - data.images
    inner = delta[:, :, 8:24, 8:24]  # away from the [0,1] clamp of extreme pixels, compare where unclipped
    same = (data.images[0] > 9 / 255) & (data.images[0] < 246 / 255) & (data.images[3] > 9 / 255) & (data.images[3] < 246 / 255)
    assert torch.allclose(delta[0][same], delta[3][same], atol=1.5 / 255)
    assert inner.abs().max() <= EPS + 1e-6


def test_em_min_min_lowers_the_surrogate_loss():
    data = tiny_set(n=12)
    em = create_method("em", mode="samplewise", batch_size=12, train_steps=3, steps=5, max_passes=1, step_size=2 / 255)
    em.fit(data, data.labels)
    model = em.model.eval()
    x, y = data.images, data.labels
    with torch.no_grad():
        clean_loss = torch.nn.functional.cross_entropy(model(x), y)
        noisy_loss = torch.nn.functional.cross_entropy(model((x + em.noise).clamp(0, 1)), y)
    assert noisy_loss < clean_loss


@pytest.mark.parametrize("name,size", [("inception_v3", 80), ("efficientnet_b1", 32), ("vit_tiny", 32)])
def test_new_victims_build_and_run(name, size):
    if name == "vit_tiny":
        pytest.importorskip("timm", reason="the ViT victim needs the bench extra")
    model = create_model(name, 4, image_size=size).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, size, size)).shape == (2, 4)
