"""Two-stage training of the generator against a surrogate classifier (paper Alg. 1).

Stage 1 (surrogate): f learns to predict the side label from protected images x + G(x).
Stage 2 (generator): G minimises f's loss on distortion(x + G(x)) + l2_weight * ||delta||_2,
i.e. it makes delta an *easy* feature for the side label - a shortcut that a model trained
on the protected photos learns instead of the faces.

The schedule is the official code's: every epoch trains G for a full pass; every
``surrogate_every``-th epoch (1st, 6th, 11th, ...) first trains f for a full pass; f is in
eval mode during G's steps. Training stops after ``epochs``, after ``max_seconds``, or once
the mean surrogate loss on protected data in an epoch falls below ``stop_loss`` (paper: 0.001).

Schedules and targets we measured and did not keep (per-batch alternation, a carrier swap, f in
train mode during G's steps, f reading the code bits, BatchNorm recalibration; GPU recipe sweep,
docs/experiments/recipe-sweep.md) are in ``experiments/training_variants.py``.

One module (~340 lines, a third of them docstrings) because config, trainer and loop are
Alg. 1 read top to bottom; ``experiments/training_variants.py`` subclasses all three.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import nn

from segue.checkpoint import drop_removed_fields, load_generator, migrate_generator_config
from segue.data import FaceSet
from segue.distortion import DistortionConfig, DistortionLayer
from segue.generator import Generator, GeneratorConfig
from segue.models import create_model
from segue.runtime import seed_everything
from segue.side_info import side_loss


# TrainConfig fields that left the package for experiments/training_variants.py, each with the value
# every shipped generator was trained with (dropped from old configs and provenance at that value).
REMOVED_TRAIN_FIELDS: dict[str, Any] = {
    "schedule": "paper",
    "surrogate_steps": 1,
    "surrogate_mode_for_generator": "eval",
    "carrier_swap": 0.0,
    "side_target": "class",
    "recalibrate_bn": False,
}
TRAINING_VARIANTS = "experiments/training_variants.py (VariantTrainConfig, train_variant)"


@dataclass
class TrainConfig:
    """Hyper-parameters of Alg. 1.

    Defaults are the paper's Alg. 1 (official code: batch 16, f in eval mode during G's steps);
    ``surrogate_distortion`` and the distortion layer's robustness stages are our additions that the
    shipped ``robust`` / ``robust_rem`` generators were trained with (configs/recipes/).

    Args:
        image_size: training resolution (112 on the CPU protocol).
        epochs: at most this many epochs (20); ``stop_loss`` may end training earlier.
        surrogate_every: f trains in one epoch of every ``surrogate_every`` (5), G in all of them.
        batch_size, lr_generator, lr_surrogate: 16, 5e-4, 5e-4 (Adam).
        l2_weight: weight of G's mean ||delta||_2 term (1e-3).
        stop_loss: stop once f's loss on undistorted protected photos is below it (1e-3).
        max_seconds: wall-clock budget: stop after the epoch that crosses it.
        surrogate_distortion: f also learns from distorted protected images (ours).
        surrogate: registered classifier used as f (``resnet18``).
        seed: seeds G, f and the batch order.
        init_generator: start G from these weights (a path or a shipped name): fine-tuning.
        generator, distortion: :class:`GeneratorConfig`, :class:`DistortionConfig`.

    Examples:
        >>> cfg = TrainConfig.from_dict({"epochs": 2, "generator": {"width": 16}, "distortion": {"jpeg_p": 0.5}})
        >>> cfg.epochs, cfg.generator.width, cfg.distortion.jpeg_p, cfg.distortion.pgd_steps
        (2, 16, 0.5, 5)
    """

    image_size: int = 112
    epochs: int = 20
    surrogate_every: int = 5
    batch_size: int = 16
    lr_generator: float = 5e-4
    lr_surrogate: float = 5e-4
    l2_weight: float = 1e-3
    stop_loss: float = 1e-3
    max_seconds: float | None = None  # wall-clock budget: stop after the epoch that crosses it
    surrogate_distortion: bool = False  # f also learns from distorted protected images (not in the paper), see surrogate_input
    surrogate: str = "resnet18"
    seed: int = 0
    init_generator: str | None = None  # start G from these weights (a path or a shipped name): fine-tuning
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    distortion: DistortionConfig = field(default_factory=DistortionConfig)

    GENERATOR_CONFIG: ClassVar[type] = GeneratorConfig

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config from a dict (a YAML file, a results.json's ``train_config``); fields that moved to
        ``experiments/`` are dropped where they are at their shipped value, else a ``ValueError``."""
        d = cls.migrate(dict(d))
        gen = cls.GENERATOR_CONFIG(**cls.migrate_generator(dict(d.pop("generator", {}))))
        dis = DistortionConfig(**d.pop("distortion", {}))
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"train config has unknown fields {unknown}")
        return cls(generator=gen, distortion=dis, **d)

    @staticmethod
    def migrate(d: dict) -> dict:
        return drop_removed_fields(d, REMOVED_TRAIN_FIELDS, "train config", TRAINING_VARIANTS)

    @staticmethod
    def migrate_generator(d: dict) -> dict:
        return migrate_generator_config(d, "train config's generator")

    def to_dict(self) -> dict:
        return asdict(self)


def init_state(weights: str, config: GeneratorConfig, load: Callable = load_generator) -> dict[str, torch.Tensor]:
    """Weights to start G from; they must fit ``config``'s layers (eps, smooth and the low_band
    settings may differ: they act after the last layer, so a robust or low-frequency variant can
    fine-tune the default, and a two-band one another two-band one).

    A single-band generator can start a two-band one (``low_band``): its output channels go to
    the band with its own low-pass, the other band starts at zero, so training begins from
    exactly the delta of the generator it starts from. ``load`` reads the weights (the
    experiments' variants pass their own loader).
    """
    start, _ = load(weights)
    for key in type(config).LAYER_FIELDS:
        if getattr(start.config, key) != getattr(config, key):
            raise ValueError(f"init_generator {weights!r} has {key}={getattr(start.config, key)!r}, "
                             f"the config {getattr(config, key)!r}")
    state = start.state_dict()
    if bool(start.config.low_band) == bool(config.low_band):
        return state  # same layers; a different low_band (size, luma, blocks) acts after the last one, like smooth
    if start.config.low_band:
        raise ValueError(f"init_generator {weights!r} has low_band={start.config.low_band}, "
                         f"the config {config.low_band}")
    c = config.in_channels
    if start.config.fine_band_shape() == config.fine_band_shape():
        band = slice(0, c)
    elif start.config.fine_band_shape() == config.coarse_band_shape():
        band = slice(c, 2 * c)
    else:
        raise ValueError(f"init_generator {weights!r} (smooth {start.config.smooth}) matches neither band of "
                         f"the config (smooth {config.smooth}, low_band {config.low_band})")
    target = type(start)(config).state_dict()
    for key, value in state.items():
        if value.shape != target[key].shape:  # the last conv: one set of C outputs per band
            widened = torch.zeros_like(target[key])
            widened[band] = value
            state[key] = widened
    return state


class SegueTrainer:
    """Holds G, f, their optimisers and the distortion layer; one method per stage of Alg. 1.

    ``surrogate_step``: f learns to classify ``x + G(x)`` by side label (G frozen).
    ``generator_step``: G minimises f's loss on ``distortion(x + G(x'))`` plus an L2 term (f frozen),
    the error-minimising shortcut. :func:`train_generator` runs the epochs.

    Args:
        cfg: :class:`TrainConfig`.
        num_classes: number of side labels (f's outputs).
        device: where G and f live.

    Shape:
        both steps take ``x (B,3,H,W)`` in [0,1] and side labels ``s (B,)``.

    Examples:
        >>> import torch
        >>> cfg = TrainConfig(image_size=32, generator=GeneratorConfig(width=16), distortion=DistortionConfig(pgd_steps=1))
        >>> trainer = SegueTrainer(cfg, num_classes=4, device=torch.device("cpu"))
        >>> x, s = torch.rand(4, 3, 32, 32), torch.arange(4)
        >>> f_loss = trainer.surrogate_step(x, s)
        >>> sorted(trainer.generator_step(x, s))
        ['delta_l2', 'distorted_loss', 'protected_loss']
    """

    generator_class: type[Generator] = Generator
    load_weights = staticmethod(load_generator)  # how init_generator is read

    def __init__(self, cfg: TrainConfig, num_classes: int, device: torch.device):
        self.cfg, self.device, self.num_classes = cfg, device, num_classes
        self.generator = self.generator_class(cfg.generator).to(device)
        if cfg.init_generator:
            self.generator.load_state_dict(init_state(cfg.init_generator, cfg.generator, self.load_weights))
        self.surrogate = create_model(cfg.surrogate, self.surrogate_outputs()).to(device)
        self.distortion = DistortionLayer.from_config(cfg.distortion).to(device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr_generator)
        self.opt_f = torch.optim.Adam(self.surrogate.parameters(), lr=cfg.lr_surrogate)

    def surrogate_outputs(self) -> int:
        """f's outputs: one per side label."""
        return self.num_classes

    def side_targets(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(side labels G is given, f's targets) for one batch of side labels: both the label."""
        return labels, labels

    def protected(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """The protected image f and G's loss are computed on: ``clip(x + delta)``."""
        return (x + delta).clamp(0, 1)

    def surrogate_mode_for_generator(self) -> None:
        """f during G's steps: eval mode (running BatchNorm statistics), as in the official code."""
        self.surrogate.eval()

    @torch.no_grad()
    def surrogate_input(self, x: torch.Tensor, s: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """What f learns from: protected images made by G in eval mode, as protect makes them.

        ``surrogate_distortion`` (our addition): through the distortion layer too,
        so f learns to read the part of delta that survives JPEG, grayscale, rescaling - and G,
        minimising f's loss, strengthens that part. In the paper f sees undistorted images and
        reads the easiest part, the fine one JPEG q10 removes.
        """
        self.generator.eval()
        xp = self.protected(x, self.generator(x, s))
        target = s if target is None else target  # AdversarialNoise attacks f's loss on it
        return self.distortion(xp, target, self.surrogate) if self.cfg.surrogate_distortion else xp

    def surrogate_step(self, x: torch.Tensor, s: torch.Tensor, target: torch.Tensor | None = None) -> float:
        """One step of f on protected images (G frozen); returns the loss before the step."""
        target = s if target is None else target
        xp = self.surrogate_input(x, s, target)
        self.surrogate.train()
        loss = side_loss(self.surrogate(xp), target)
        self.opt_f.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_f.step()
        return loss.item()

    def generator_step(self, x: torch.Tensor, s: torch.Tensor, target: torch.Tensor | None = None) -> dict[str, float]:
        """One step of G: minimise f's loss on the distorted protected image (f frozen).

        Also returns f's loss on the undistorted protected image (the paper's stopping
        quantity) - one extra forward pass, a few percent of the step.
        """
        target = s if target is None else target
        self.surrogate_mode_for_generator()
        self.generator.train()
        delta = self.generator(self.distortion.generator_input(x, target, self.surrogate), s)
        with torch.no_grad():
            protected = side_loss(self.surrogate((x + delta).clamp(0, 1)), target).item()
        xp = self.protected(x, delta)
        distorted = self.distortion(xp, target, self.surrogate)
        ce = side_loss(self.surrogate(distorted), target)
        l2 = delta.flatten(1).norm(dim=1).mean()
        extra, logs = self.extra_loss(distorted, x, s)
        loss = ce + self.cfg.l2_weight * l2 + extra
        self.opt_g.zero_grad(set_to_none=True)
        self.surrogate.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return {"protected_loss": protected, "distorted_loss": ce.item(), "delta_l2": l2.item(), **logs}

    def extra_loss(self, distorted: torch.Tensor, clean: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor | float, dict]:
        """A further term of G's loss on the distorted protected images, and what to log of it.

        None in Alg. 1; :class:`segue.cloak.CloakTrainer` adds the feature-space term against
        pretrained face extractors here.
        """
        return 0.0, {}

    def stage_of(self, epoch: int) -> str:
        """The official code's schedule: f and G on every ``surrogate_every``-th epoch, else G alone."""
        return "surrogate+generator" if epoch % self.cfg.surrogate_every == 0 else "generator"

    def batch_step(self, stage: str, x: torch.Tensor, s: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """One batch of a ``surrogate`` or ``generator`` pass; returns its losses."""
        if stage == "surrogate":
            return {"protected_loss": self.surrogate_step(x, s, target)}
        if stage == "generator":
            return self.generator_step(x, s, target)
        raise ValueError(f"unknown stage {stage!r}")

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
            x = images[idx].to(self.device)
            s, target = self.side_targets(side[idx].to(self.device))
            for key, value in self.batch_step(stage, x, s, target).items():
                sums[key] = sums.get(key, 0.0) + value * len(idx)
        return {"stage": stage, **{k: round(v / len(order), 5) for k, v in sums.items()}}


def train_generator(
    data: FaceSet,
    side_labels: torch.Tensor,
    num_classes: int,
    cfg: TrainConfig,
    device: torch.device,
    on_epoch: Callable[[dict], None] | None = None,
    trainer_class: type[SegueTrainer] = SegueTrainer,
) -> tuple[Generator, nn.Module, list[dict]]:
    """Run Alg. 1 on ``data`` with the given side labels; returns (G, f, per-epoch history).

    ``trainer_class``: a :class:`SegueTrainer` subclass (the experiments' variants)."""
    rng = seed_everything(cfg.seed)
    cfg.generator.image_size = cfg.image_size
    trainer = trainer_class(cfg, num_classes, device)
    history: list[dict] = []
    start = time.perf_counter()
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
        if cfg.max_seconds is not None and time.perf_counter() - start > cfg.max_seconds:
            break
    trainer.generator.eval()
    return trainer.generator, trainer.surrogate, history
