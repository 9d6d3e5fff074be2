"""segue.face_embedding: the CosFace surrogate trains, keeps its best val epoch, round-trips, and registers."""

import pytest
import torch

from segue.cloak import DIFFERENTIABLE
from segue.data import FaceSet
from segue.face_embedding import (EmbeddingConfig, FaceEmbedder, embed, nearest_neighbour_accuracy, save_embedder,
                                  train_embedding)


def blobs(people: int, per: int, seed: int) -> FaceSet:
    """Synthetic 32 px 'faces': one fixed random pattern per person plus per-photo noise."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(people, 3, 32, 32, generator=gen)
    images = (base.repeat_interleave(per, 0) + 0.15 * torch.randn(people * per, 3, 32, 32, generator=gen)).clamp(0, 1)
    return FaceSet(images, torch.arange(people).repeat_interleave(per), [f"p{i}" for i in range(people)])


@pytest.fixture(scope="module")
def trained():
    photos = blobs(6, 8, seed=0)
    val_people = blobs(4, 4, seed=1)
    gallery, probe = val_people.subset([i for i in range(16) if i % 4 < 2]), val_people.subset([i for i in range(16) if i % 4 >= 2])
    cfg = EmbeddingConfig(dim=16, epochs=3, batch_size=16, lr=0.05)
    model, history = train_embedding(photos, cfg, val=(gallery, probe))
    return model, history, gallery, probe


def test_training_lowers_the_cosface_loss(trained):
    _, history, _, _ = trained
    assert len(history) == 3 and history[-1]["loss"] < history[0]["loss"]


def test_the_returned_model_is_the_best_val_epoch(trained):
    model, history, gallery, probe = trained
    acc = nearest_neighbour_accuracy(embed(model, gallery.images), gallery.labels, embed(model, probe.images), probe.labels)
    assert acc == pytest.approx(max(r["val_1nn"] for r in history), abs=1e-4)


def test_max_seconds_stops_after_the_first_epoch():
    _, history = train_embedding(blobs(3, 4, seed=2), EmbeddingConfig(dim=8, epochs=5, batch_size=6, max_seconds=0.0))
    assert len(history) == 1


def test_celeba_cosface_loads_from_its_path_and_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGUE_CELEBA_COSFACE", str(tmp_path / "missing.safetensors"))
    with pytest.raises(FileNotFoundError, match="train_face_embedding.py"):
        DIFFERENTIABLE.create("celeba-cosface")
    model = FaceEmbedder(dim=128).eval()
    path = tmp_path / "e.safetensors"
    save_embedder(model, path, {"command": "test"})
    monkeypatch.setenv("SEGUE_CELEBA_COSFACE", str(path))
    loaded = DIFFERENTIABLE.create("celeba-cosface")
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = loaded(x)
    assert torch.allclose(out, model(x)) and DIFFERENTIABLE.tags("celeba-cosface")["dim"] == out.shape[1]
    out.sum().backward()  # a surrogate: gradients reach the input, none of its weights train
    assert x.grad is not None and not any(p.requires_grad for p in loaded.parameters())
