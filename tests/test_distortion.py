"""The robustness stages of the distortion layer: each does what its name says, lets the
gradient through to delta, and is off unless configured (the paper's layer is unchanged)."""

import pytest
import torch

from segue.distortion import DistortionConfig, DistortionLayer, RandomRescale
from segue.runtime import load_config_file
from segue.training import TrainConfig

ROBUST = {"jpeg_p": 1.0, "rescale_p": 1.0, "grey_p": 1.0, "strong_blur_p": 1.0, "affine_p": 1.0}
PAPER_OFF = dict(pgd_steps=0, blur_kernel=0, sharpness=1, hflip_p=0, vflip_p=0)


def _smooth_and_noisy(seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    smooth = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8), size=(64, 64), mode="bilinear")
    return (0.8 * smooth + 0.2 * torch.rand(2, 3, 64, 64)).clamp(0, 1)


def test_paper_layer_has_no_robustness_stages_by_default():
    names = [type(s).__name__ for s in DistortionLayer.from_config(DistortionConfig()).stages]
    assert "RandomRescale" not in names and len(names) == 5  # PGD, blur, sharpness, 2 flips


@pytest.mark.parametrize("stage", sorted(ROBUST))
def test_each_robust_stage_changes_the_image_and_passes_gradient(stage):
    layer = DistortionLayer.from_config(DistortionConfig(**PAPER_OFF, **{stage: 1.0}))
    assert len(layer.stages) == 1
    delta = torch.zeros(2, 3, 64, 64, requires_grad=True)
    x = _smooth_and_noisy()
    out = layer((x + delta).clamp(0, 1))
    assert out.shape == x.shape and (out - x).abs().max() > 1e-3
    out.sum().backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0
    if stage == "grey_p":
        assert torch.allclose(out[:, 0], out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])


def test_rescale_removes_fine_detail_and_keeps_coarse():
    torch.manual_seed(1)
    checker = (torch.arange(64)[:, None] + torch.arange(64)[None]) % 2
    fine = checker.float().expand(1, 3, 64, 64)
    out = RandomRescale(p=1.0, min_factor=0.5)(fine)
    assert out.std() < 0.2 * fine.std()  # the 1-px pattern is gone
    coarse = _smooth_and_noisy(2) * 0 + torch.linspace(0, 1, 64)[None, None, None]
    assert (RandomRescale(p=1.0, min_factor=0.5)(coarse) - coarse).abs().mean() < 0.02


def test_robust_preset_loads_from_the_shipped_config():
    cfg = TrainConfig.from_dict(load_config_file("configs/robust_112.yaml"))  # base: webface10_112.yaml
    d = cfg.distortion
    assert d.jpeg_p > 0 and d.rescale_p > 0 and d.grey_p > 0 and d.strong_blur_p > 0
    assert len(DistortionLayer.from_config(d).stages) == 9


def test_adversarial_noise_attacks_the_protected_image_and_keeps_deltas_gradient():
    """adv_rho (REM-style): the offset on x + delta stays within rho, raises f's loss (also when the
    caller is under no_grad, as surrogate_input is), and the gradient still reaches delta."""
    from segue.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet18", 3).eval()
    layer = DistortionLayer.from_config(DistortionConfig(**PAPER_OFF, adv_rho=4 / 255))
    assert [type(s).__name__ for s in layer.stages] == ["AdversarialNoise"]
    x, y = torch.rand(4, 3, 32, 32) * 0.8 + 0.1, torch.tensor([0, 1, 2, 0])
    delta = torch.zeros_like(x, requires_grad=True)
    out = layer(x + delta, y, model)
    assert 0 < (out - x).abs().max() <= 4 / 255 + 1e-6
    ce = torch.nn.functional.cross_entropy
    assert ce(model(out), y) > ce(model(x), y)
    ce(model(out), y).backward()
    assert delta.grad is not None and delta.grad.abs().sum() > 0
    with torch.no_grad():
        assert ce(model(layer(x, y, model)), y) > ce(model(x), y)
    assert torch.equal(layer(x, None, None), x)  # without f and labels there is nothing to attack
