import pytest
import torch

from conftest import make_photo_folder, tiny_train_config
from segue.data import load_image_folder
from segue.distortion import PGD, DistortionConfig, DistortionLayer
from segue.models import create_model
from segue.training import TrainConfig, train_generator

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_faces_many(tmp_path_factory):
    # 32 photos per identity: enough surrogate steps for its BatchNorm running statistics to settle
    root = make_photo_folder(tmp_path_factory.mktemp("many"), identities=4, per_identity=32, size=(32, 32))
    return load_image_folder(root, 32)


def test_paper_schedule_alternates_whole_epochs(tiny_data):
    cfg = tiny_train_config(epochs=6, surrogate_every=3, stop_loss=0.0)
    _, _, history = train_generator(tiny_data, tiny_data.labels, 4, cfg, CPU)
    assert [r["stage"] for r in history] == ["surrogate+generator", "generator", "generator"] * 2


def test_generator_epochs_reduce_the_surrogate_loss(tiny_faces_many):
    # Alg. 1's generator stage: with f fixed (trained in epoch 1 only), every G epoch must lower
    # f's loss on protected images. A wrong sign or a detached delta makes it rise or stay flat.
    cfg = tiny_train_config(epochs=4, surrogate_every=10, stop_loss=0.0)
    _, _, history = train_generator(tiny_faces_many, tiny_faces_many.labels, 4, cfg, CPU)
    losses = [r["protected_loss"] for r in history]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.98 * losses[0], losses


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


def test_max_seconds_ends_training_after_the_epoch_that_crosses_it(tiny_data):
    cfg = tiny_train_config(epochs=5, stop_loss=0.0, max_seconds=0.0)
    _, _, history = train_generator(tiny_data, tiny_data.labels, 4, cfg, CPU)
    assert len(history) == 1


def test_config_round_trips_through_dict():
    cfg = tiny_train_config()
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_old_train_configs_drop_removed_fields_at_their_shipped_value():
    """Fields that moved to experiments/training_variants.py: at the value every shipped generator was
    trained with they are dropped (old configs, results.json provenance), any other value names the module."""
    old = {**tiny_train_config().to_dict(), "schedule": "paper", "surrogate_steps": 1, "carrier_swap": 0.0,
           "surrogate_mode_for_generator": "eval", "side_target": "class", "recalibrate_bn": False,
           "generator": {"width": 16, "norm": "group", "luma": False, "code_blocks_eps": 0.0, "code_blocks": 8}}
    assert TrainConfig.from_dict(old) == tiny_train_config()
    for key, value in (("schedule", "interleaved"), ("side_target", "code_bits"), ("carrier_swap", 0.5)):
        with pytest.raises(ValueError, match=f"{key}=.*experiments/training_variants.py"):
            TrainConfig.from_dict({**old, key: value})
    with pytest.raises(ValueError, match="luma=True.*experiments/generator_variants.py"):
        TrainConfig.from_dict({**old, "generator": {"luma": True}})
    with pytest.raises(ValueError, match="unknown fields"):
        TrainConfig.from_dict({**old, "epochz": 3})


def test_every_shipped_provenance_config_loads():
    """The train_config recorded with each shipped generator is a valid config today, with the generator
    config the weights carry."""
    import json
    from importlib import resources

    from segue.checkpoint import migrate_generator_config
    from segue.generator import GeneratorConfig

    for name in ("webface10_112", "webface10_112_robust", "webface10_112_robust_rem"):
        meta = json.loads((resources.files("segue") / "weights" / f"{name}.json").read_text())
        cfg = TrainConfig.from_dict(meta["provenance"]["train_config"])
        assert cfg.generator == GeneratorConfig(**migrate_generator_config(meta["generator"]))


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


def test_init_generator_fine_tunes_given_weights(tiny_data, tmp_path):
    """--init: G starts from saved weights (a smooth variant may start from a plain one); the layers must match."""
    from segue.checkpoint import save_generator
    from segue.generator import Generator, GeneratorConfig

    torch.manual_seed(3)
    start = Generator(GeneratorConfig(width=16))
    path = save_generator(start, tmp_path / "start.safetensors")
    cfg = tiny_train_config(epochs=1, lr_generator=0.0, init_generator=str(path),
                            generator=GeneratorConfig(width=16, smooth=2))
    g, _, _ = train_generator(tiny_data, tiny_data.labels, 4, cfg, CPU)
    for (k, a), b in zip(g.state_dict().items(), start.state_dict().values()):
        assert torch.equal(a, b), k
    assert g.config.smooth == 2
    with pytest.raises(ValueError, match="width"):
        train_generator(tiny_data, tiny_data.labels, 4, tiny_train_config(
            epochs=1, init_generator=str(path), generator=GeneratorConfig(width=32)), CPU)


@pytest.mark.parametrize("start_smooth, band", [(1, slice(0, 3)), (4, slice(3, 6))])
def test_single_band_weights_start_a_two_band_generator(tmp_path, start_smooth, band):
    """--init into a two-band G: the plain or low-passed generator fills the band with its own
    low-pass, the other band starts at zero, so the first delta is exactly the old one."""
    from segue.checkpoint import save_generator
    from segue.generator import Generator, GeneratorConfig
    from segue.training import init_state

    torch.manual_seed(5)
    start = Generator(GeneratorConfig(width=16, smooth=start_smooth))
    with torch.no_grad():
        start.decoder[-1].bias.normal_()
    path = save_generator(start, tmp_path / "start.safetensors")
    config = GeneratorConfig(width=16, smooth=1, low_band=4)
    two = Generator(config)
    two.load_state_dict(init_state(str(path), config))
    other = slice(3, 6) if band.start == 0 else slice(0, 3)
    assert two.decoder[-1].weight[other].abs().sum() == 0 and two.decoder[-1].bias[other].abs().sum() == 0
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(two(x, torch.tensor([0, 1])), start(x, torch.tensor([0, 1])), atol=1e-6)
    with pytest.raises(ValueError, match="neither band"):
        init_state(str(path), GeneratorConfig(width=16, smooth=2, low_band=8))
    two_path = save_generator(two, tmp_path / "two.safetensors")
    with pytest.raises(ValueError, match="low_band"):
        init_state(str(two_path), GeneratorConfig(width=16))


def test_two_band_weights_start_another_two_band_generator(tmp_path):
    """--init between two-band generators whose coarse bands differ (size, luma, blocks): the
    layers are the same, so the weights carry over and the fine band's delta is unchanged."""
    from segue.checkpoint import save_generator
    from segue.generator import Generator, GeneratorConfig
    from segue.training import init_state

    torch.manual_seed(6)
    start = Generator(GeneratorConfig(width=16, low_band=4))
    with torch.no_grad():
        start.decoder[-1].weight[3:], start.decoder[-1].bias[3:] = 0, 0  # coarse band silent
    path = save_generator(start, tmp_path / "two4.safetensors")
    config = GeneratorConfig(width=16, low_band=8, low_band_luma=True, low_band_blocks=True)
    blocks = Generator(config)
    blocks.load_state_dict(init_state(str(path), config))
    x, labels = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.allclose(blocks(x, labels), start(x, labels), atol=1e-6)
        blocks.decoder[-1].bias[3:] = 1.0  # and the coarse band is live in the new generator
        assert not torch.allclose(blocks(x, labels), start(x, labels), atol=1e-4)


@pytest.mark.parametrize("distort", [False, True])
def test_surrogate_distortion_shows_f_the_distorted_images(distort):
    """surrogate_distortion: f's training images go through the distortion layer (here: always
    grey, so f sees equal channels); off (the paper), f sees the colour protected images."""
    from segue.training import SegueTrainer

    cfg = TrainConfig(image_size=32, surrogate="resnet18", surrogate_distortion=distort,
                      distortion=DistortionConfig(pgd_steps=0, blur_kernel=0, sharpness=1.0, hflip_p=0, vflip_p=0,
                                                  grey_p=1.0))
    trainer = SegueTrainer(cfg, num_classes=3, device=torch.device("cpu"))
    seen = []
    trainer.surrogate.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    torch.manual_seed(0)
    trainer.surrogate_step(torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]))
    grey = torch.allclose(seen[0][:, 0], seen[0][:, 1], atol=1e-6) and torch.allclose(seen[0][:, 1], seen[0][:, 2], atol=1e-6)
    assert grey == distort


def test_adversarial_noise_reaches_f_in_both_stages():
    """distortion.adv_rho: G's loss and (with surrogate_distortion) f's training images are on
    x + delta + r with 0 < |r| <= rho, so G is trained against the attacker's adversarial training."""
    from segue.training import SegueTrainer

    rho = 4 / 255
    cfg = TrainConfig(image_size=32, surrogate="resnet18", surrogate_distortion=True,
                      distortion=DistortionConfig(pgd_steps=0, blur_kernel=0, sharpness=1.0, hflip_p=0, vflip_p=0,
                                                  adv_rho=rho))
    trainer = SegueTrainer(cfg, num_classes=3, device=torch.device("cpu"))
    seen = []
    trainer.surrogate.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    torch.manual_seed(0)
    x, s = torch.rand(4, 3, 32, 32) * 0.8 + 0.1, torch.tensor([0, 1, 2, 0])
    trainer.surrogate_step(x, s)
    trainer.generator.eval()
    with torch.no_grad():
        clean = (x + trainer.generator(x, s)).clamp(0, 1)
    assert 0 < (seen[-1] - clean).abs().max() <= rho + 1e-5  # the last call is f's training forward
    seen.clear()
    trainer.generator_step(x, s)
    assert 0 < (seen[-1] - clean).abs().max() <= rho + 1e-5  # G's loss: the last forward, before its step
