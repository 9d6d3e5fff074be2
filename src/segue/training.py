"""Two-stage training of the generator against a surrogate classifier (paper Alg. 1).

Stage 1 (surrogate): f learns to predict the side label from protected images x + G(x).
Stage 2 (generator): G minimises f's loss on distortion(x + G(x)) + l2_weight * ||delta||_2,
i.e. it makes delta an *easy* feature for the side label - a shortcut that a model trained
on the protected photos learns instead of the faces.

Two schedules are offered:

* ``paper`` (default): as the official code - every epoch trains G for a full pass; every
  ``surrogate_every``-th epoch (1st, 6th, 11th, ...) first trains f for a full pass.
* ``interleaved``: every batch does ``surrogate_steps`` steps of f then one step of G (the
  min-min schedule of error-minimising noise). Measured worse at the same GPU time
  (benchmarks/results/recipe_sweep_gpu, victim peak accuracy on WebFace10 112 px): 62.5%
  with carrier swap 0.5 and f in eval mode, 25% with f in train mode; ``paper``: 15.5%.

Training stops after ``epochs``, after ``max_seconds``, or once the mean surrogate loss on
protected data in an epoch falls below ``stop_loss`` (paper: 0.001).

What f predicts (``side_target``):

* ``class`` (paper): the side label, cross-entropy over the K identities of the training set.
* ``code_bits`` (our extension): the 16 code bits, binary cross-entropy per bit, and every
  batch gives each identity a fresh random code. G must then *write* any code so that f can
  read it back: the perturbation becomes a per-code pattern for codes (and people) never
  seen in training, instead of a shortcut for the K training codes only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from segue.data import FaceSet
from segue.distortion import DistortionConfig, DistortionLayer
from segue.generator import Generator, GeneratorConfig
from segue.models import create_model
from segue.runtime import seed_everything
from segue.side_info import code_targets, side_loss


@dataclass
class TrainConfig:
    """Hyper-parameters of Alg. 1.

    Defaults are the paper's Alg. 1 (official code: batch 16, f in eval mode during G's
    steps). ``interleaved``, ``carrier_swap``, ``surrogate_mode_for_generator="train"`` and
    ``side_target="code_bits"`` are alternatives we measured; see the GPU recipe sweep.
    """

    image_size: int = 112
    epochs: int = 20
    schedule: str = "paper"  # "paper" | "interleaved"
    surrogate_every: int = 5
    surrogate_steps: int = 1
    batch_size: int = 16
    lr_generator: float = 5e-4
    lr_surrogate: float = 5e-4
    l2_weight: float = 1e-3
    surrogate_mode_for_generator: str = "eval"  # "eval" (official code) or "train" (BN batch statistics)
    carrier_swap: float = 0.0  # fraction of each batch whose delta is added to another person's photo
    stop_loss: float = 1e-3
    max_seconds: float | None = None  # wall-clock budget: stop after the epoch that crosses it
    side_target: str = "class"  # "class" (paper) or "code_bits" (f reads the code; random codes per batch)
    recalibrate_bn: bool = False  # recompute f's BatchNorm statistics after each surrogate pass (not in the paper)
    surrogate_distortion: bool = False  # f also learns from distorted protected images (not in the paper), see surrogate_input
    surrogate: str = "resnet18"
    seed: int = 0
    init_generator: str | None = None  # start G from these weights (a path or a shipped name): fine-tuning
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


def init_state(weights: str, config: GeneratorConfig) -> dict[str, torch.Tensor]:
    """Weights to start G from; they must fit ``config``'s layers (eps, smooth and the low_band
    settings may differ: they act after the last layer, so a robust or low-frequency variant can
    fine-tune the default, and a two-band one another two-band one).

    A single-band generator can start a two-band one (``low_band``): its output channels go to
    the band with its own low-pass, the other band starts at zero, so training begins from
    exactly the delta of the generator it starts from.
    """
    from segue.checkpoint import load_generator

    start, _ = load_generator(weights)
    for key in ("width", "code_bits", "res_blocks", "in_channels", "norm"):
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
    if (start.config.smooth, start.config.luma) == (config.smooth, config.luma):
        band = slice(0, c)
    elif (start.config.smooth, start.config.luma) == (config.low_band, config.low_band_luma):
        band = slice(c, 2 * c)
    else:
        raise ValueError(f"init_generator {weights!r} (smooth {start.config.smooth}) matches neither band of "
                         f"the config (smooth {config.smooth}, low_band {config.low_band})")
    target = Generator(config).state_dict()
    for key, value in state.items():
        if value.shape != target[key].shape:  # the last conv: one set of C outputs per band
            widened = torch.zeros_like(target[key])
            widened[band] = value
            state[key] = widened
    return state


class SegueTrainer:
    """Holds G, f, their optimisers and the distortion layer; one method per stage."""

    def __init__(self, cfg: TrainConfig, num_classes: int, device: torch.device):
        if cfg.side_target not in ("class", "code_bits"):
            raise ValueError(f"unknown side_target {cfg.side_target!r}")
        self.cfg, self.device, self.num_classes = cfg, device, num_classes
        self.generator = Generator(cfg.generator).to(device)
        if cfg.init_generator:
            self.generator.load_state_dict(init_state(cfg.init_generator, cfg.generator))
        outputs = cfg.generator.code_bits if cfg.side_target == "code_bits" else num_classes
        self.surrogate = create_model(cfg.surrogate, outputs).to(device)
        self.distortion = DistortionLayer.from_config(cfg.distortion).to(device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr_generator)
        self.opt_f = torch.optim.Adam(self.surrogate.parameters(), lr=cfg.lr_surrogate)

    def carrier(self, x: torch.Tensor) -> torch.Tensor:
        """The photos delta is added to: x itself, or for a ``carrier_swap`` fraction another photo.

        With a swapped carrier the face says nothing about the side label, so the only way for
        f to be right is to read delta: delta is pushed to be a face-independent shortcut
        (close to a per-identity pattern). Our addition to Alg. 1, off by default: measured, it
        protected less than the paper's recipe (see the recipe sweep).
        """
        if self.cfg.carrier_swap <= 0:
            return x
        swap = torch.rand(len(x), device=x.device) < self.cfg.carrier_swap
        other = x[torch.randperm(len(x), device=x.device)]
        return torch.where(swap[:, None, None, None], other, x)

    def side_targets(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(side labels G is given, f's targets) for one batch of side labels.

        ``class``: G gets the label, f predicts it. ``code_bits``: each identity is mapped to a
        random code for this batch; G gets that code, f predicts its bits.
        """
        if self.cfg.side_target == "class":
            return labels, labels
        bits = self.cfg.generator.code_bits
        table = torch.randint(0, 2**bits, (self.num_classes,), device=labels.device)
        codes = table[labels]
        return codes, code_targets(codes, bits)

    @torch.no_grad()
    def surrogate_input(self, x: torch.Tensor, s: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        """What f learns from (and recalibrates its BatchNorm on): protected images made by G in
        eval mode, as protect makes them.

        ``surrogate_distortion`` (our addition): through the distortion layer too,
        so f learns to read the part of delta that survives JPEG, grayscale, rescaling - and G,
        minimising f's loss, strengthens that part. In the paper f sees undistorted images and
        reads the easiest part, the fine one JPEG q10 removes.
        """
        self.generator.eval()
        xp = (self.carrier(x) + self.generator(x, s)).clamp(0, 1)
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
        quantity) - one extra forward pass, a few percent of the step. f runs in eval mode
        as in the official code unless ``surrogate_mode_for_generator="train"`` (f's BatchNorm
        on batch statistics: a lower loss on tiny data, but with the interleaved schedule it
        still protected less than the paper's recipe on WebFace10).
        """
        target = s if target is None else target
        self.surrogate.train(self.cfg.surrogate_mode_for_generator == "train")
        self.generator.train()
        delta = self.generator(self.distortion.generator_input(x, target, self.surrogate), s)
        with torch.no_grad():
            protected = side_loss(self.surrogate((x + delta).clamp(0, 1)), target).item()
        xp = (self.carrier(x) + delta).clamp(0, 1)
        ce = side_loss(self.surrogate(self.distortion(xp, target, self.surrogate)), target)
        l2 = delta.flatten(1).norm(dim=1).mean()
        loss = ce + self.cfg.l2_weight * l2
        self.opt_g.zero_grad(set_to_none=True)
        self.surrogate.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return {"protected_loss": protected, "distorted_loss": ce.item(), "delta_l2": l2.item()}

    @torch.no_grad()
    def recalibrate_bn(self, images: torch.Tensor, side: torch.Tensor) -> None:
        """Recompute f's BatchNorm running statistics on the current protected images.

        After a short surrogate pass (few batches) the running statistics still carry their
        initial values, so f in eval mode - which G is trained against - is near chance.
        One no-grad pass with cumulative averaging (momentum None) fixes them. Pilot on ORL
        (``segue demo`` settings): f's loss fell to 0.002, but the victim was not protected.
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
            if self.cfg.recalibrate_bn:
                self.recalibrate_bn(images, side)
            return {**self.run_epoch(images, side, "generator", rng), "surrogate_loss": first["protected_loss"], "stage": stage}
        order = torch.randperm(len(images), generator=rng)
        sums: dict[str, float] = {}
        for start in range(0, len(order), self.cfg.batch_size):
            idx = order[start : start + self.cfg.batch_size]
            x = images[idx].to(self.device)
            s, target = self.side_targets(side[idx].to(self.device))
            row: dict[str, float] = {}
            if stage in ("surrogate", "interleaved"):
                for _ in range(self.cfg.surrogate_steps if stage == "interleaved" else 1):
                    row["protected_loss"] = self.surrogate_step(x, s, target)
            if stage in ("generator", "interleaved"):
                row.update(self.generator_step(x, s, target))
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
