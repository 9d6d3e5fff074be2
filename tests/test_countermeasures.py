"""Countermeasures (segue.countermeasures): each one's effect, composition, and the victim hook."""

import pytest
import torch
import torch.nn.functional as F

from segue.countermeasures import apply_data, batch_transforms, build_countermeasures, create_countermeasure
from segue.data import FaceSet
from segue.victim import VictimConfig, train_victim


def grid_images(n=4, size=32, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, size, size, generator=gen) * 255).round() / 255


def checkerboard(size=32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    board = ((yy + xx) % 2).float() * 0.5 + 0.25
    return board.expand(1, 3, size, size).clone()


def on_8bit_grid(x: torch.Tensor) -> bool:
    return bool(((x * 255) - (x * 255).round()).abs().max() < 1e-4)


def test_unknown_countermeasure_is_a_clear_keyerror():
    with pytest.raises(KeyError, match="unknown countermeasure 'nope'; known: .*jpeg"):
        create_countermeasure("nope")


def test_grayscale_makes_channels_equal():
    out = create_countermeasure("grayscale").apply(grid_images())
    assert out.shape == (4, 3, 32, 32) and on_8bit_grid(out)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])


def test_jpeg_is_a_real_lossy_reencode():
    x = grid_images()
    q90 = create_countermeasure("jpeg", quality=90).apply(x)
    q10 = create_countermeasure("jpeg", quality=10).apply(x)
    assert q10.shape == x.shape and on_8bit_grid(q10) and on_8bit_grid(q90)
    err90, err10 = (q90 - x).abs().mean(), (q10 - x).abs().mean()
    assert err90 > 0 and err10 > err90  # lower quality loses more
    with pytest.raises(ValueError):
        create_countermeasure("jpeg", quality=0)


def test_downscale_and_blur_remove_high_frequencies():
    board = checkerboard()
    for cm in (create_countermeasure("downscale", factor=0.5), create_countermeasure("blur")):
        out = cm.apply(board)
        assert out.shape == board.shape and on_8bit_grid(out)
        assert out[..., 4:-4, 4:-4].std() < 0.2 * board.std()  # the 1-px pattern is gone
    smooth = torch.linspace(0.2, 0.8, 32).view(1, 1, 1, 32).expand(1, 3, 32, 32).contiguous()
    assert (create_countermeasure("downscale", factor=0.5).apply(smooth) - smooth)[..., 2:-2].abs().max() < 3 / 255


def test_bitdepth_keeps_few_levels():
    out = create_countermeasure("bitdepth", bits=2).apply(grid_images())
    assert len(torch.unique(out)) <= 4 and on_8bit_grid(out)


def test_cutout_zeroes_a_square_and_keeps_labels():
    x = torch.ones(3, 3, 16, 16) * 0.5
    y = F.one_hot(torch.tensor([0, 1, 2]), 3).float()
    out, y2 = create_countermeasure("cutout", size=0.5)(None, x, y, torch.Generator().manual_seed(0))
    zeros = (out == 0).all(1).flatten(1).sum(1)
    assert torch.all(zeros > 0) and torch.all(zeros <= 64) and torch.equal(y2, y)


def test_mixup_and_cutmix_mix_images_and_targets():
    gen = torch.Generator().manual_seed(1)
    x = torch.stack([torch.full((3, 16, 16), v) for v in (0.0, 0.5, 1.0, 0.25)])
    y = F.one_hot(torch.arange(4), 4).float()
    for name in ("mixup", "cutmix"):
        changed = False
        for _ in range(5):  # a draw can be the identity permutation or lam=1
            out, t = create_countermeasure(name)(None, x, y, gen)
            assert torch.allclose(t.sum(1), torch.ones(4)) and out.shape == x.shape
            changed |= bool((t.max(1).values < 1).any()) and not torch.equal(out, x)
        assert changed, name
    # cutmix pastes pixels from another image: each output pixel is one of the inputs' values
    out, t = create_countermeasure("cutmix")(None, x, y, torch.Generator().manual_seed(3))
    assert set(torch.unique(out).tolist()) <= {0.0, 0.5, 1.0, 0.25}


def test_adversarial_training_stays_in_budget_and_raises_loss():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    x = torch.rand(6, 3, 8, 8) * 0.8 + 0.1
    y = F.one_hot(torch.arange(6) % 3, 3).float()
    adv = create_countermeasure("adv", rho=4 / 255, steps=5)
    out, t = adv(model.train(), x, y, torch.Generator().manual_seed(0))
    assert (out - x).abs().max() <= 4 / 255 + 1e-6 and torch.equal(t, y) and model.training
    loss = lambda z: -(y * F.log_softmax(model(z), 1)).sum(1).mean()  # noqa: E731
    assert loss(out) > loss(x)


def test_build_compose_and_split_by_kind():
    cms = build_countermeasures(["grayscale", {"name": "jpeg", "quality": 30}, {"name": "adv", "rho_255": 2}, "mixup"])
    assert [c.name for c in cms] == ["grayscale", "jpeg", "adv", "mixup"]
    assert abs(cms[2].rho - 2 / 255) < 1e-9
    assert [c.name for c in batch_transforms(cms)] == ["adv", "mixup"]
    out = apply_data(cms, grid_images())
    assert (out[:, 0] - out[:, 1]).abs().max() <= 2 / 255  # grey in, (nearly) grey out of the JPEG
    assert on_8bit_grid(out)


def tiny_faces(n=12, size=32):
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 3
    images = (torch.rand(n, 3, size, size, generator=gen) * 0.3 + labels.view(-1, 1, 1, 1) * 0.3).clamp(0, 1)
    return FaceSet(images, labels, ["a", "b", "c"])


def test_victim_hook_identity_matches_default_and_mixup_changes_training():
    data = tiny_faces()
    cfg = VictimConfig(epochs=1, batch_size=4, seed=0)
    plain = train_victim(data, data, cfg, torch.device("cpu"))
    calls = []

    def identity(model, x, y, gen):
        calls.append((x.shape, y.shape))
        return x, y

    same = train_victim(data, data, cfg, torch.device("cpu"), batch_transforms=[identity])
    assert len(calls) == 3 and calls[0] == ((4, 3, 32, 32), (4, 3))  # every batch, soft targets
    assert abs(same["history"][0]["train_loss"] - plain["history"][0]["train_loss"]) < 1e-3
    mixed = train_victim(data, data, cfg, torch.device("cpu"), batch_transforms=[create_countermeasure("mixup")])
    assert abs(mixed["history"][0]["train_loss"] - plain["history"][0]["train_loss"]) > 1e-3
