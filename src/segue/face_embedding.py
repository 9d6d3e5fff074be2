"""A face-embedding network trained here (CosFace head), a second surrogate for feature-space cloaking.

One pretrained surrogate (the FaceNet port) is white-box for the facenet attackers and says
little about transfer: a cloak that only fools FaceNet leaves dlib at ~95 %
(experiments/results/feature_transfer_pilot*.md). Transfer-based attacks do better against an
*ensemble* of surrogates, so this module trains a second, independent one: a
:mod:`segue.models` backbone whose last layer gives a ``dim``-d embedding, learnt with a CosFace
margin-softmax head (Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face
Recognition", CVPR 2018) on the CelebA234 *train* people only (:func:`segue.data.celeba234_photos`),
model selection by 1-NN accuracy on the *val* people. The test people and dlib never enter it.

``benchmarks/train_face_embedding.py`` trains and writes it (:func:`celeba_cosface_path`);
:data:`segue.cloak.DIFFERENTIABLE` knows it as ``"celeba-cosface"``.

Example::

    model, history = train_embedding(photos, EmbeddingConfig(epochs=30), val=(gallery, probe))
    save_embedder(model, celeba_cosface_path(), {"command": "..."})
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from segue.data import FaceSet
from segue.models import create_model
from segue.runtime import seed_everything
from segue.victim import train_epoch


class CosineHead(nn.Module):
    """A cosine-softmax classifier on L2-normalised embeddings: ``scale * (cos(w_c, e) - margin [c = y])``.

    ``margin`` > 0 is CosFace's additive cosine margin (applied only when labels are given, i.e.
    in training); 0 is a plain cosine classifier (the fine-tuning attacker's head).

    Args:
        dim: embedding size (512 for FaceNet).
        num_classes: people.
        scale: logit scale (16).
        margin: CosFace margin (0).

    Shape:
        ``(N, dim)`` [, labels ``(N,)``] -> logits ``(N, num_classes)``.

    Examples:
        >>> import torch
        >>> head = CosineHead(4, 3, margin=0.2)
        >>> e, y = torch.randn(2, 4), torch.tensor([0, 2])
        >>> logits = head(e)
        >>> logits.shape, bool(logits.abs().max() <= 16)
        (torch.Size([2, 3]), True)
        >>> bool(torch.allclose(head(e, y)[0, 0], logits[0, 0] - 16 * 0.2))
        True
    """

    def __init__(self, dim: int, num_classes: int, scale: float = 16.0, margin: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, dim) * 0.01)
        self.scale, self.margin = scale, margin

    def forward(self, emb: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cos = F.normalize(emb, dim=1) @ F.normalize(self.weight, dim=1).T
        if labels is not None and self.margin:
            cos = cos - self.margin * F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        return self.scale * cos


class FaceEmbedder(nn.Module):
    """A registered backbone (:func:`segue.models.create_model`) -> ``dim`` -> BatchNorm -> L2 norm.

    Args:
        backbone: a :mod:`segue.models` name ("resnet18").
        dim: embedding size (128).

    Shape:
        ``(N,3,H,W)`` in [0,1] -> ``(N, dim)`` unit vectors.

    Examples:
        >>> import torch
        >>> e = FaceEmbedder(dim=8).eval()(torch.rand(2, 3, 32, 32))
        >>> e.shape, bool(torch.allclose(e.norm(dim=1), torch.ones(2)))
        (torch.Size([2, 8]), True)
    """

    MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def __init__(self, backbone: str = "resnet18", dim: int = 128):
        super().__init__()
        self.backbone_name, self.dim = backbone, dim
        self.net = create_model(backbone, num_classes=dim)
        self.bn = nn.BatchNorm1d(dim)
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.bn(self.net((x - self.mean) / self.std)), dim=1)


@dataclass
class EmbeddingConfig:
    """How :func:`train_embedding` trains (defaults: the CelebA234 surrogate's CPU recipe).

    Args:
        backbone, dim: :class:`FaceEmbedder`'s.
        epochs: passes over the photos (30).
        batch_size: 64.
        lr: peak SGD learning rate of the one-cycle schedule (0.1).
        weight_decay: 5e-4.
        scale, margin: :class:`CosineHead`'s (CosFace: 30, 0.35).
        seed: 0.
        max_seconds: stop after the epoch that passes this wall-clock budget (None: no limit).
    """

    backbone: str = "resnet18"
    dim: int = 128
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.1
    weight_decay: float = 5e-4
    scale: float = 30.0
    margin: float = 0.35
    seed: int = 0
    max_seconds: float | None = None


def augmenter(size: int) -> nn.Module:
    """Training augmentation (kornia): horizontal flip and a mild random resized crop."""
    import kornia.augmentation as K

    return nn.Sequential(K.RandomHorizontalFlip(), K.RandomResizedCrop((size, size), scale=(0.8, 1.0), ratio=(0.9, 1.1)))


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, device: torch.device | str = "cpu", batch: int = 128) -> torch.Tensor:
    """``(N, D)`` embeddings of ``images`` in eval mode, on the CPU."""
    model.eval()
    return torch.cat([model(images[i : i + batch].to(device)).cpu() for i in range(0, len(images), batch)])


def nearest_neighbour_accuracy(gallery: torch.Tensor, gallery_labels: torch.Tensor,
                               probe: torch.Tensor, probe_labels: torch.Tensor) -> float:
    """Fraction of probe embeddings whose most cosine-similar gallery embedding has their label.

    Examples:
        >>> import torch
        >>> g = torch.eye(3); p = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.2, 0.9]])
        >>> nearest_neighbour_accuracy(g, torch.arange(3), p, torch.tensor([0, 1]))
        0.5
    """
    sims = F.normalize(probe, dim=1) @ F.normalize(gallery, dim=1).T
    return (gallery_labels[sims.argmax(1)] == probe_labels).float().mean().item()


def train_embedding(photos: FaceSet, cfg: EmbeddingConfig = EmbeddingConfig(),
                    val: tuple[FaceSet, FaceSet] | None = None, device: torch.device | str = "cpu",
                    on_epoch=None) -> tuple[FaceEmbedder, list[dict]]:
    """Train a :class:`FaceEmbedder` with a CosFace head on ``photos`` (labels = people).

    ``val`` = (gallery, probe) of *other* people: after every epoch the probe photos are
    identified by their nearest gallery photo, and the epoch with the best 1-NN accuracy is the
    one returned (the last one without ``val``). Returns the model (eval mode, on the CPU) and
    one history row per epoch.
    """
    rng = seed_everything(cfg.seed)
    model = FaceEmbedder(cfg.backbone, cfg.dim).to(device)
    head = CosineHead(cfg.dim, len(photos.classes), cfg.scale, cfg.margin).to(device)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay, nesterov=True)
    steps = cfg.epochs * -(-len(photos) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
    augment = augmenter(photos.images.shape[-1]).to(device)
    history, best, best_state, t_start = [], -1.0, None, time.perf_counter()
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        loss, acc = train_epoch(model, opt, photos, cfg.batch_size, rng, device, sched=sched,
                                logits_fn=lambda x, y: head(model(augment(x)), y), min_batch=2)
        row = {"epoch": epoch + 1, "loss": round(loss, 4), "train_acc": round(acc, 4)}
        if val is not None:
            gallery, probe = val
            row["val_1nn"] = round(nearest_neighbour_accuracy(embed(model, gallery.images, device), gallery.labels,
                                                              embed(model, probe.images, device), probe.labels), 4)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        history.append(row)
        if on_epoch:
            on_epoch(row)
        score = row.get("val_1nn", epoch)
        if score > best:
            best, best_state = score, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if cfg.max_seconds is not None and time.perf_counter() - t_start > cfg.max_seconds:
            break
    model = model.cpu()
    model.load_state_dict(best_state)
    return model.eval(), history


def save_embedder(model: FaceEmbedder, path: str | Path, provenance: dict) -> None:
    """Weights as safetensors (never pickle), with the architecture and ``provenance`` as metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"backbone": model.backbone_name, "dim": str(model.dim), "provenance": json.dumps(provenance, default=str)}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)  # never a half-written file at ``path``


def read_provenance(path: str | Path) -> dict:
    """The ``provenance`` :func:`save_embedder` recorded (command, config, history, hardware)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["provenance"])


def load_embedder(path: str | Path, device: torch.device | str = "cpu") -> FaceEmbedder:
    """A :class:`FaceEmbedder` from :func:`save_embedder`'s file, frozen, in eval mode.

    Examples:
        >>> import tempfile, torch
        >>> model = FaceEmbedder(dim=8).eval()
        >>> with tempfile.TemporaryDirectory() as d:
        ...     save_embedder(model, f"{d}/e.safetensors", {"command": "doctest"})
        ...     again = load_embedder(f"{d}/e.safetensors")
        ...     read_provenance(f"{d}/e.safetensors")["command"]
        'doctest'
        >>> x = torch.rand(2, 3, 32, 32)
        >>> bool(torch.allclose(model(x), again(x)))
        True
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    model = FaceEmbedder(meta["backbone"], int(meta["dim"]))
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval().requires_grad_(False)


def celeba_cosface_path() -> Path:
    """Where ``benchmarks/train_face_embedding.py`` writes the CelebA234 surrogate: ``$SEGUE_CELEBA_COSFACE``,
    else ``~/.cache/segue/surrogates/celeba_cosface.safetensors`` (trained on research-only photos: not shipped)."""
    env = os.environ.get("SEGUE_CELEBA_COSFACE")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "segue" / "surrogates" / "celeba_cosface.safetensors"

