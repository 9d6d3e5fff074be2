"""segue.cloak: the feature-space term moves protected embeddings toward the side label's decoy."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import tiny_train_config
from segue.generator import GeneratorConfig
from segue.cloak import DIFFERENTIABLE, CloakConfig, CloakLoss, CloakTrainer, decoy_targets
from segue.training import train_generator

CPU = torch.device("cpu")


class ToyExtractor(nn.Module):
    """A fixed random conv net with normalised outputs: a stand-in for a pretrained face model."""

    def __init__(self, dim: int = 8):
        super().__init__()
        torch.manual_seed(123)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                 nn.Linear(32, dim))
        self.requires_grad_(False)

    def forward(self, x):
        return F.normalize(self.net(x), dim=1)


DIFFERENTIABLE.register("toy-test", dim=8)(lambda device="cpu": ToyExtractor().to(device))


def test_decoy_targets_are_unit_seeded_and_shared_per_label():
    t = decoy_targets(5, 8, seed=1)
    assert t.shape == (5, 8) and torch.allclose(t.norm(dim=1), torch.ones(5))
    assert torch.equal(t, decoy_targets(5, 8, seed=1)) and not torch.equal(t, decoy_targets(5, 8, seed=2))
    real = torch.randn(3, 8)
    picked = decoy_targets(6, 8, decoys=real)
    assert torch.allclose(picked[0], picked[3]) and torch.allclose(picked[0].norm(), torch.tensor(1.0))


def test_loss_falls_when_the_embedding_reaches_the_decoy():
    ext = ToyExtractor()
    x = torch.rand(4, 3, 16, 16)
    targets = decoy_targets(2, 8)
    loss = CloakLoss([ext], [targets])
    labels = torch.tensor([0, 1, 0, 1])
    xp = x.clone().requires_grad_(True)
    start = loss(xp, x, labels).item()
    opt = torch.optim.Adam([xp], lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        loss(xp, x, labels).backward()
        opt.step()
    assert loss(xp, x, labels).item() < start - 0.2


def test_dlib_is_refused_as_a_training_extractor():
    cfg = CloakConfig(**{**vars(tiny_train_config()), "extractors": ["dlib"]})
    with pytest.raises(ValueError, match="black-box"):
        CloakTrainer(cfg, 4, CPU)


def test_training_with_the_term_moves_embeddings_toward_the_decoys(tiny_data):
    def cos_decoy(generator, trainer_cloak):
        with torch.no_grad():
            xp = generator.protect(tiny_data.images, tiny_data.labels)
            return trainer_cloak.terms(xp, tiny_data.images, tiny_data.labels)["cos_decoy"].item()

    # a wide budget (32/255) so that a tiny extractor's embedding can move visibly in 6 epochs
    settings = dict(epochs=6, stop_loss=0.0, generator=GeneratorConfig(width=16, eps=32 / 255))
    cfg = CloakConfig(**{**vars(tiny_train_config(**settings)), "extractors": ["toy-test"], "feature_weight": 5.0})
    plain, _, _ = train_generator(tiny_data, tiny_data.labels, 4, tiny_train_config(**settings), CPU)
    cloaked, _, history = train_generator(tiny_data, tiny_data.labels, 4, cfg, CPU, trainer_class=CloakTrainer)
    assert {"cos_clean", "cos_decoy"} <= set(history[-1])
    judge = CloakTrainer(cfg, 4, CPU).cloak  # same extractor and decoys (seeded)
    moved, unmoved = cos_decoy(cloaked, judge), cos_decoy(plain, judge)
    print(f"cos to decoy: cloaked {moved:.3f}, plain {unmoved:.3f}")
    assert moved > unmoved + 0.1


class CountingExtractor(ToyExtractor):
    """ToyExtractor that counts the photos it embeds."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def forward(self, x):
        self.seen += len(x)
        return super().forward(x)


def test_clean_embeddings_are_cached_per_photo_and_give_the_same_loss():
    gen = torch.Generator().manual_seed(7)  # own RNG: ToyExtractor() reseeds the global one
    x, labels = torch.rand(4, 3, 16, 16, generator=gen), torch.tensor([0, 1, 0, 1])
    xp = x + 0.05 * torch.randn(x.shape, generator=gen)
    counting = CountingExtractor()
    cached = CloakLoss([counting], [decoy_targets(2, 8)])
    uncached = CloakLoss([ToyExtractor()], [decoy_targets(2, 8)], cache_clean=False)
    first = cached(xp, x, labels)
    assert counting.seen == 8  # 4 protected + 4 clean
    again = cached(xp[[2, 0]], x[[2, 0]], labels[[2, 0]])  # a later batch of photos already seen
    assert counting.seen == 10  # only the 2 protected ones
    assert torch.allclose(first, uncached(xp, x, labels), atol=1e-6)
    assert torch.allclose(again, uncached(xp[[2, 0]], x[[2, 0]], labels[[2, 0]]), atol=1e-6)
    cached(xp, torch.rand(4, 3, 16, 16, generator=gen), labels)  # new photos are embedded
    assert counting.seen == 18


def test_trainer_takes_real_decoys():
    cfg = CloakConfig(**{**vars(tiny_train_config()), "extractors": ["toy-test"]})
    real = torch.randn(3, 8)
    trainer = CloakTrainer(cfg, 6, CPU, decoys=[real])
    table = trainer.cloak.targets[0]
    assert table.shape == (6, 8)
    for row in table:  # every label's decoy is one of the real embeddings, normalised
        assert torch.isclose(F.cosine_similarity(row[None], real).max(), torch.tensor(1.0), atol=1e-5)
    with pytest.raises(ValueError, match="one decoy table"):
        CloakTrainer(cfg, 6, CPU, decoys=[real, real])
