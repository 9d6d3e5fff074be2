"""Two-stage training of the generator against a surrogate classifier (paper Alg. 1).

Stage 1 (surrogate): f learns to predict the side label from protected images x + G(x).
Stage 2 (generator): G minimises f's loss on distortion(x + G(x)) + l2_weight * ||delta||_2,
i.e. it makes delta an *easy* feature for the side label - a shortcut that a model trained
on the protected photos learns instead of the faces.

Two schedules are offered:

* ``paper``: as the official code - every epoch trains G for a full pass; every
  ``surrogate_every``-th epoch (1st, 6th, 11th, ...) first trains f for a full pass.
* ``interleaved``: every batch does ``surrogate_steps`` steps of f then one step of G (the
  min-min schedule of error-minimising noise), so f and G co-adapt within an epoch. It is
  the shipped recipe; it has not yet been compared with ``paper`` at equal CPU time.

Training stops after ``epochs`` or once the mean surrogate loss on protected data in an
epoch falls below ``stop_loss`` (paper: 0.001).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from segue.data import FaceSet
from segue.distortion import DistortionConfig, DistortionLayer
from segue.generator import Generator, GeneratorConfig
from segue.models import create_model
from segue.runtime import seed_everything


@dataclass
class TrainConfig:
    """Hyper-parameters of Alg. 1.

    Defaults are the paper's except ``schedule`` and ``carrier_swap`` (the shipped recipe,
    measured in benchmarks/); ``configs/paper.yaml`` restores the paper's Alg. 1 exactly.
    """

    image_size: int = 112
    epochs: int = 20
    schedule: str = "interleaved"  # "interleaved" | "paper"
    surrogate_every: int = 5
    surrogate_steps: int = 1
    batch_size: int = 32
    lr_generator: float = 5e-4
    lr_surrogate: float = 5e-4
    l2_weight: float = 1e-3
    surrogate_mode_for_generator: str = "eval"  # "eval" (official code, shipped weights) or "train" (BN batch stats)
    carrier_swap: float = 0.5  # fraction of each batch whose delta is added to another person's photo
    stop_loss: float = 1e-3
    surrogate: str = "resnet18"
    seed: int = 0
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    distortion: DistortionConfig = field(default_factory=DistortionConfig)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        gen = GeneratorConfig(**d.pop("generator", {}))
        dis = DistortionConfig(**d.pop("distortion", {}))
        return cls(generator=gen, distortion=dis, **d)

    def to_dict(self) -> dict:
        return asdict(self)


class SegueTrainer:
    """Holds G, f, their optimisers and the distortion layer; one method per stage."""

    def __init__(self, cfg: TrainConfig, num_classes: int, device: torch.device):
        self.cfg, self.device = cfg, device
        self.generator = Generator(cfg.generator).to(device)
        self.surrogate = create_model(cfg.surrogate, num_classes).to(device)
        self.distortion = DistortionLayer.from_config(cfg.distortion).to(device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr_generator)
        self.opt_f = torch.optim.Adam(self.surrogate.parameters(), lr=cfg.lr_surrogate)

    def carrier(self, x: torch.Tensor) -> torch.Tensor:
        """The photos delta is added to: x itself, or for a ``carrier_swap`` fraction another photo.

        With a swapped carrier the face says nothing about the side label, so the only way for
        f to be right is to read delta: delta is pushed to be a face-independent shortcut
        (close to a per-identity pattern), which a victim learns before the faces. This is our
        addition to the paper's Alg. 1 (0 = off, the paper's behaviour).
        """
        if self.cfg.carrier_swap <= 0:
            return x
        swap = torch.rand(len(x), device=x.device) < self.cfg.carrier_swap
        other = x[torch.randperm(len(x), device=x.device)]
        return torch.where(swap[:, None, None, None], other, x)

    def surrogate_step(self, x: torch.Tensor, s: torch.Tensor) -> float:
        """One step of f on protected images (G frozen); returns the loss before the step."""
        self.surrogate.train()
        self.generator.eval()  # f learns from the perturbations that protect will produce
        with torch.no_grad():
            xp = (self.carrier(x) + self.generator(x, s)).clamp(0, 1)
        loss = F.cross_entropy(self.surrogate(xp), s)
        self.opt_f.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_f.step()
        return loss.item()

    def generator_step(self, x: torch.Tensor, s: torch.Tensor) -> dict[str, float]:
        """One step of G: minimise f's loss on the distorted protected image (f frozen).

        Also returns f's loss on the undistorted protected image (the paper's stopping
        quantity) - one extra forward pass, a few percent of the step. f runs in eval mode
        as in the official code unless ``surrogate_mode_for_generator="train"``: early in
        training f's BatchNorm running statistics lag, its eval-mode output is close to
        uniform and G gets little signal (tiny-data trial: eval-mode loss 1.40 -> 2.88 over
        6 epochs, train mode 0.27 -> 0.006). Not yet benchmarked on WebFace10.
        """
        self.surrogate.train(self.cfg.surrogate_mode_for_generator == "train")
        self.generator.train()
        delta = self.generator(self.distortion.generator_input(x, s, self.surrogate), s)
        with torch.no_grad():
            protected = F.cross_entropy(self.surrogate((x + delta).clamp(0, 1)), s).item()
        xp = (self.carrier(x) + delta).clamp(0, 1)
        ce = F.cross_entropy(self.surrogate(self.distortion(xp)), s)
        l2 = delta.flatten(1).norm(dim=1).mean()
        loss = ce + self.cfg.l2_weight * l2
        self.opt_g.zero_grad(set_to_none=True)
        self.surrogate.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return {"protected_loss": protected, "distorted_loss": ce.item(), "delta_l2": l2.item()}

    def stage_of(self, epoch: int) -> str:
        if self.cfg.schedule == "interleaved":
            return "interleaved"
        if self.cfg.schedule != "paper":
            raise ValueError(f"unknown schedule {self.cfg.schedule!r}")
        return "surrogate+generator" if epoch % self.cfg.surrogate_every == 0 else "generator"

    def run_epoch(self, images: torch.Tensor, side: torch.Tensor, stage: str, rng: torch.Generator) -> dict:
        """One pass over the data in the given stage; returns the epoch's mean losses.

        ``protected_loss`` is f's loss on x + G(x) (in generator steps; in pure surrogate
        passes, the training loss before each update); ``distorted_loss`` is G's objective,
        f's loss after the distortion layer.
        """
        if stage == "surrogate+generator":  # official code: a full surrogate pass, then a generator pass
            first = self.run_epoch(images, side, "surrogate", rng)
            return {**self.run_epoch(images, side, "generator", rng), "surrogate_loss": first["protected_loss"], "stage": stage}
        order = torch.randperm(len(images), generator=rng)
        sums: dict[str, float] = {}
        for start in range(0, len(order), self.cfg.batch_size):
            idx = order[start : start + self.cfg.batch_size]
            x, s = images[idx].to(self.device), side[idx].to(self.device)
            row: dict[str, float] = {}
            if stage in ("surrogate", "interleaved"):
                for _ in range(self.cfg.surrogate_steps if stage == "interleaved" else 1):
                    row["protected_loss"] = self.surrogate_step(x, s)
            if stage in ("generator", "interleaved"):
                row.update(self.generator_step(x, s))
            for key, value in row.items():
                sums[key] = sums.get(key, 0.0) + value * len(idx)
        return {"stage": stage, **{k: round(v / len(order), 5) for k, v in sums.items()}}


def train_generator(
    data: FaceSet,
    side_labels: torch.Tensor,
    num_classes: int,
    cfg: TrainConfig,
    device: torch.device,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[Generator, nn.Module, list[dict]]:
    """Run Alg. 1 on ``data`` with the given side labels; returns (G, f, per-epoch history)."""
    rng = seed_everything(cfg.seed)
    cfg.generator.image_size = cfg.image_size
    trainer = SegueTrainer(cfg, num_classes, device)
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        stage = trainer.stage_of(epoch)
        row = {"epoch": epoch + 1, **trainer.run_epoch(data.images, side_labels, stage, rng)}
        row["seconds"] = round(time.perf_counter() - t0, 2)
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if row["protected_loss"] < cfg.stop_loss:
            break
    trainer.generator.eval()
    return trainer.generator, trainer.surrogate, history
