"""Training options that lost, on top of ``segue.training`` (see experiments/README.md).

All measured in the GPU recipe sweep (NVIDIA H100, 40 s of generator training per run, ResNet18
victim on WebFace10 112 px, peak %; experiments/results/recipe_sweep_gpu, docs/experiments/recipe-sweep.md),
where the package's schedule (the paper's Alg. 1) gave 15.5 %:

* ``schedule: interleaved`` (+ ``surrogate_steps``) - every batch does ``surrogate_steps`` steps of f
  then one step of G (the min-min schedule of error-minimising noise): 62.5 % with a carrier swap of
  0.5 and f in eval mode, 25 % with f in train mode.
* ``carrier_swap: p`` - for a fraction p of each batch delta is added to another person's photo, so f
  can only be right by reading delta.
* ``surrogate_mode_for_generator: train`` - f's BatchNorm on batch statistics during G's steps.
* ``side_target: code_bits`` - f predicts the 16 code bits (binary cross-entropy per bit) and every
  batch gives each identity a fresh random code, meant to generalise to unseen people: it did not
  learn (loss at ln 2 per bit, 85.5 %).
* ``recalibrate_bn: true`` - recompute f's BatchNorm statistics after each surrogate pass. Pilot on
  ORL (``segue demo`` settings, docs/experiments/transfer.md): f's loss fell to 0.002, the victim
  still reached 97.5 %.

``train_variant`` is ``segue.training.train_generator`` with :class:`VariantTrainer`; the generator
options of ``generator_variants`` are available too (``VariantTrainConfig.generator``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from experiments.generator_variants import VariantGenerator, VariantGeneratorConfig, load_variant
from segue.data import FaceSet
from segue.side_info import code_targets
from segue.training import SegueTrainer, TrainConfig, train_generator


@dataclass
class VariantTrainConfig(TrainConfig):
    """``TrainConfig`` plus the options that left the package (defaults: the package's training)."""

    schedule: str = "paper"  # "paper" | "interleaved"
    surrogate_steps: int = 1  # interleaved: steps of f per batch
    surrogate_mode_for_generator: str = "eval"  # "eval" (official code) or "train" (BN batch statistics)
    carrier_swap: float = 0.0  # fraction of each batch whose delta is added to another person's photo
    side_target: str = "class"  # "class" (paper) or "code_bits" (f reads the code; random codes per batch)
    recalibrate_bn: bool = False  # recompute f's BatchNorm statistics after each surrogate pass
    generator: VariantGeneratorConfig = field(default_factory=VariantGeneratorConfig)

    GENERATOR_CONFIG: ClassVar[type] = VariantGeneratorConfig

    @staticmethod
    def migrate(d: dict) -> dict:
        return d  # every option is a field here

    @staticmethod
    def migrate_generator(d: dict) -> dict:
        return d


class VariantTrainer(SegueTrainer):
    """The package's trainer with the options of :class:`VariantTrainConfig`."""

    cfg: VariantTrainConfig
    generator_class = VariantGenerator
    load_weights = staticmethod(load_variant)

    def __init__(self, cfg: VariantTrainConfig, num_classes: int, device: torch.device):
        if cfg.side_target not in ("class", "code_bits"):
            raise ValueError(f"unknown side_target {cfg.side_target!r}")
        if cfg.schedule not in ("paper", "interleaved"):
            raise ValueError(f"unknown schedule {cfg.schedule!r}")
        super().__init__(cfg, num_classes, device)

    def surrogate_outputs(self) -> int:
        return self.cfg.generator.code_bits if self.cfg.side_target == "code_bits" else self.num_classes

    def side_targets(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``class``: G gets the label, f predicts it. ``code_bits``: each identity is mapped to a
        random code for this batch; G gets that code, f predicts its bits."""
        if self.cfg.side_target == "class":
            return labels, labels
        bits = self.cfg.generator.code_bits
        table = torch.randint(0, 2**bits, (self.num_classes,), device=labels.device)
        codes = table[labels]
        return codes, code_targets(codes, bits)

    def carrier(self, x: torch.Tensor) -> torch.Tensor:
        """The photos delta is added to: x itself, or for a ``carrier_swap`` fraction another photo.

        With a swapped carrier the face says nothing about the side label, so the only way for
        f to be right is to read delta: delta is pushed to be a face-independent shortcut.
        """
        if self.cfg.carrier_swap <= 0:
            return x
        swap = torch.rand(len(x), device=x.device) < self.cfg.carrier_swap
        other = x[torch.randperm(len(x), device=x.device)]
        return torch.where(swap[:, None, None, None], other, x)

    def protected(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return (self.carrier(x) + delta).clamp(0, 1)

    def surrogate_mode_for_generator(self) -> None:
        self.surrogate.train(self.cfg.surrogate_mode_for_generator == "train")

    def stage_of(self, epoch: int) -> str:
        return "interleaved" if self.cfg.schedule == "interleaved" else super().stage_of(epoch)

    def batch_step(self, stage: str, x: torch.Tensor, s: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        if stage != "interleaved":
            return super().batch_step(stage, x, s, target)
        row: dict[str, float] = {}
        for _ in range(self.cfg.surrogate_steps):
            row["protected_loss"] = self.surrogate_step(x, s, target)
        row.update(self.generator_step(x, s, target))
        return row

    def run_epoch(self, images: torch.Tensor, side: torch.Tensor, stage: str, rng: torch.Generator) -> dict:
        if stage == "surrogate+generator" and self.cfg.recalibrate_bn:
            first = self.run_epoch(images, side, "surrogate", rng)
            self.recalibrate_bn(images, side)
            return {**self.run_epoch(images, side, "generator", rng), "surrogate_loss": first["protected_loss"], "stage": stage}
        return super().run_epoch(images, side, stage, rng)

    @torch.no_grad()
    def recalibrate_bn(self, images: torch.Tensor, side: torch.Tensor) -> None:
        """Recompute f's BatchNorm running statistics on the current protected images.

        After a short surrogate pass (few batches) the running statistics still carry their
        initial values, so f in eval mode - which G is trained against - is near chance.
        One no-grad pass with cumulative averaging (momentum None) fixes them.
        """
        bns = [m for m in self.surrogate.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        self.surrogate.train()
        for start in range(0, len(images), self.cfg.batch_size):
            x = images[start : start + self.cfg.batch_size].to(self.device)
            s, target = self.side_targets(side[start : start + self.cfg.batch_size].to(self.device))
            self.surrogate(self.surrogate_input(x, s, target))
        for m, momentum in zip(bns, saved):
            m.momentum = momentum


def train_variant(data: FaceSet, side_labels: torch.Tensor, num_classes: int, cfg: VariantTrainConfig,
                  device: torch.device, on_epoch: Callable[[dict], None] | None = None):
    """``segue.training.train_generator`` with the experiments' options; returns (G, f, history)."""
    return train_generator(data, side_labels, num_classes, cfg, device, on_epoch, trainer_class=VariantTrainer)
