import pytest
import torch

from conftest import make_photo_folder, tiny_train_config
from segue.data import load_image_folder
from segue.distortion import PGD, DistortionConfig, DistortionLayer
from segue.models import create_model
from segue.training import TrainConfig, train_generator

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = make_photo_folder(tmp_path_factory.mktemp("data"), identities=4, per_identity=8, size=(32, 32))
    return load_image_folder(root, 32)


@pytest.mark.xfail(strict=True, reason="known gap, core issue open: the eval-mode surrogate's loss on protected data "
                   "does not fall in our runs (stays near or above chance)")
@pytest.mark.parametrize("schedule", ["interleaved", "paper"])
def test_training_reduces_protected_loss(tiny_data, schedule):
    cfg = tiny_train_config(schedule=schedule, epochs=6, surrogate_every=3, stop_loss=0.0)
    _, _, history = train_generator(tiny_data, tiny_data.labels, 4, cfg, CPU)
    losses = [r["protected_loss"] for r in history]
    assert len(history) == 6
    if schedule == "paper":
        assert [r["stage"] for r in history] == ["surrogate+generator", "generator", "generator"] * 2
    assert losses[-1] < 0.5 * losses[0], losses


def test_surrogate_in_train_mode_lowers_protected_loss(tiny_data):
    # The lead for the open core issue: with f's BatchNorm in train mode during G's steps the
    # surrogate's loss on protected data falls (in eval mode it does not, see the xfail above).
    cfg = tiny_train_config(epochs=6, stop_loss=0.0, carrier_swap=0.0, surrogate_mode_for_generator="train")
    _, _, history = train_generator(tiny_data, tiny_data.labels, 4, cfg, CPU)
    losses = [r["protected_loss"] for r in history]
    assert losses[-1] < 0.5 * losses[0], losses


def test_fixed_seed_is_deterministic(tiny_data):
    cfg = tiny_train_config(epochs=1)
    g1, _, h1 = train_generator(tiny_data, tiny_data.labels, 4, cfg, CPU)
    g2, _, h2 = train_generator(tiny_data, tiny_data.labels, 4, cfg, CPU)
    g3, _, _ = train_generator(tiny_data, tiny_data.labels, 4, tiny_train_config(epochs=1, seed=1), CPU)
    for (k, a), b, c in zip(g1.state_dict().items(), g2.state_dict().values(), g3.state_dict().values()):
        assert torch.equal(a, b), k
    assert [dict(r, seconds=0) for r in h1] == [dict(r, seconds=0) for r in h2]
    assert any(not torch.equal(a, c) for a, c in zip(g1.state_dict().values(), g3.state_dict().values()))


def test_stop_loss_ends_training_early(tiny_data):
    cfg = tiny_train_config(epochs=5, stop_loss=100.0)
    _, _, history = train_generator(tiny_data, tiny_data.labels, 4, cfg, CPU)
    assert len(history) == 1


def test_config_round_trips_through_dict():
    cfg = tiny_train_config()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_pgd_stays_in_budget_and_increases_loss():
    torch.manual_seed(0)
    model = create_model("resnet18", 3).eval()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    adv = PGD(rho=4 / 255, steps=5)(x, y, model)
    assert (adv - x).abs().max() <= 4 / 255 + 1e-6
    ce = torch.nn.functional.cross_entropy
    assert ce(model(adv), y) > ce(model(x), y)


def test_distortion_is_differentiable_to_the_input():
    layer = DistortionLayer.from_config(DistortionConfig(pgd_steps=0, hflip_p=1.0))
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert len(DistortionLayer.from_config(DistortionConfig(pgd_steps=0, blur_sigma=0, sharpness=1, hflip_p=0, vflip_p=0)).stages) == 0
