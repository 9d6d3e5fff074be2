"""A one-pass cloak: one universal feature-space pattern per side label, learned once on many faces.

Every generator tried so far against pretrained recognisers computes its delta from the photo, and
none moved dlib (docs/attacks.md): the per-photo PGD's delta is nearly orthogonal to what the
generator computes. This tries the other one-pass form: a bank of ``K`` image-independent patterns,
pattern ``k`` trained to push *any* face's FaceNet embedding away from its clean embedding and
toward a decoy ``t_k`` (a targeted universal adversarial perturbation; Moosavi-Dezfooli et al.,
CVPR 2017). Protecting is one addition, so throughput is the generator's or better; all of one
person's photos carry the same pattern, as class-wise error-minimising noise does (the from-scratch
shortcut). dlib never enters training: it is the black-box attacker.

Train (patterns derived from CelebA234 photos: kept outside the repository)::

    python -m experiments.universal_cloak --out /path/patterns.safetensors --minutes 40

then measure them with ``python benchmarks/feature_transfer_pilot.py --universal /path/patterns.safetensors``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from segue.data import FaceSet
from segue.distortion import DistortionLayer
from segue.methods.base import NoiseMethod, quantise
from segue.methods.feature_cloak import AFFINE_DIVERSITY, centroids
from segue.quality import rms, rms_cap, within_rms


def project(patterns: torch.Tensor, eps: float, psnr_floor: float) -> torch.Tensor:
    """Patterns cut to the L-inf ``eps`` and to the L2 ball of ``psnr_floor`` (each pattern alone)."""
    return within_rms(patterns.clamp(-eps, eps), rms_cap(psnr_floor))


def cloak_terms(model, patterns: torch.Tensor, x: torch.Tensor, clean: torch.Tensor, idx: torch.Tensor,
                targets: torch.Tensor, diversity: DistortionLayer | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cosine of each protected photo's embedding to its clean embedding and to its pattern's decoy."""
    inp = (x + patterns[idx]).clamp(0, 1)
    e = model(diversity(inp) if diversity is not None else inp)
    return F.cosine_similarity(e, clean).mean(), F.cosine_similarity(e, targets[idx]).mean()


def train_patterns(pool: FaceSet, model, targets: torch.Tensor, eps: float = 16 / 255, psnr_floor: float = 30.0,
                   away: float = 1.0, steps: int = 2000, max_seconds: float = float("inf"), per_step: int = 8,
                   per_pattern: int = 4, momentum: float = 1.0, step_frac: float = 0.05, seed: int = 0,
                   val: tuple[FaceSet, torch.Tensor] | None = None, log_every: int = 100) -> tuple[torch.Tensor, dict]:
    """``(K,3,H,W)`` patterns: each step draws ``per_step`` patterns and ``per_pattern`` random pool photos
    for each, and moves each drawn pattern one momentum L2 step (``step_frac`` of the PSNR radius,
    cosine-decayed over ``steps``) up ``cos(e(x+p), t) - away * cos(e(x+p), e(x))`` under input diversity.

    ``val``: photos and their pattern indices, measured without diversity every ``log_every`` steps.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the input diversity draws from the global generator: a pilot, seeded whole
    k_count, (_, c, h, w) = len(targets), pool.images.shape
    patterns = torch.zeros(k_count, c, h, w)
    velocity = torch.zeros_like(patterns)
    diversity = DistortionLayer.from_config(AFFINE_DIVERSITY)
    radius = rms_cap(psnr_floor)
    history: list[dict] = []
    t0, step = time.perf_counter(), 0

    def measure() -> dict:
        with torch.no_grad():
            x, idx = val
            own, toward = cloak_terms(model, patterns, x.images, model(x.images), idx, targets)
        return {"step": step, "seconds": round(time.perf_counter() - t0, 1), "val_cos_own": round(own.item(), 4),
                "val_cos_decoy": round(toward.item(), 4)}

    if val is not None:
        history.append(measure())
    for step in range(1, steps + 1):
        if time.perf_counter() - t0 > max_seconds:
            break
        drawn = torch.randperm(k_count, generator=gen)[:per_step]
        idx = drawn.repeat_interleave(per_pattern)
        x = pool.images[torch.randint(len(pool), (len(idx),), generator=gen)]
        with torch.no_grad():
            clean = model(x)
        p = patterns.clone().requires_grad_(True)
        own, toward = cloak_terms(model, p, x, clean, idx, targets, diversity)
        (grad,) = torch.autograd.grad(toward - away * own, p)
        g = grad[drawn]
        velocity[drawn] = momentum * velocity[drawn] + g / g.abs().mean((1, 2, 3), keepdim=True).clamp_min(1e-12)
        size = step_frac * radius * 0.5 * (1 + math.cos(math.pi * (step - 1) / steps))
        v = velocity[drawn]
        patterns[drawn] = project(patterns[drawn] + size * v / rms(v)[:, None, None, None], eps, psnr_floor)
        if val is not None and step % log_every == 0:
            history.append(measure())
            print(json.dumps(history[-1]), flush=True)
    info = {"steps_done": step, "seconds": round(time.perf_counter() - t0, 1), "history": history}
    return patterns, info


def save_bank(path: str | Path, patterns: torch.Tensor, targets: torch.Tensor, settings: dict, history: list) -> None:
    """The bank as ``.safetensors``: ``patterns``, ``targets`` and the settings :class:`UniversalCloak` reads."""
    save_file({"patterns": patterns.contiguous(), "targets": targets.contiguous()}, str(path),
              metadata={"settings": json.dumps(settings), "history": json.dumps(history)})


class UniversalCloak(NoiseMethod):
    """Adds pattern ``label % K`` of a trained bank to every photo (one addition: a one-pass protection).

    Args:
        path: a ``.safetensors`` bank written by this module (``patterns`` ``(K,3,H,W)``, its settings
            in the metadata).
        device: where FaceNet runs for the reporting in :func:`fit` (the bank itself needs nothing).

    Shape:
        ``perturb(images (N,3,H,W) in [0,1] at the bank's size, side_labels (N,))`` -> ``(N,3,H,W)``,
        8-bit, within the bank's L-inf budget and PSNR floor.
    """

    name = "universal-cloak"

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        with safe_open(str(path), "pt") as f:
            self.meta = json.loads(f.metadata()["settings"])
            self.patterns = f.get_tensor("patterns")
            self.targets = f.get_tensor("targets")
        super().__init__(self.meta["eps"], self.meta["seed"], device)
        self.path, self.psnr_floor = str(path), float(self.meta["psnr_floor"])
        self.models: list = []
        self.decoys: list[torch.Tensor] = []

    def config(self) -> dict:
        return {**super().config(), "path": Path(self.path).name, "patterns": len(self.patterns),
                **{k: v for k, v in self.meta.items() if k not in ("eps", "seed")}}

    def fit(self, train: FaceSet, side_labels: torch.Tensor) -> "UniversalCloak":
        """Loads FaceNet so a pilot can report the embeddings' cosines (each label's decoy in ``decoys``)."""
        from segue.cloak import DIFFERENTIABLE

        self.models = [DIFFERENTIABLE.create(self.meta["extractor"], self.device)]
        labels = torch.arange(int(torch.as_tensor(side_labels).max()) + 1)
        self.decoys = [self.targets[labels % len(self.patterns)]]
        return self

    def perturb(self, images: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        delta = self.patterns[torch.as_tensor(side_labels) % len(self.patterns)]
        out = quantise(images, delta, self.eps)
        for _ in range(20):  # 8-bit rounding can cost a photo its last fraction of a dB
            over = rms(out - images) > rms_cap(self.psnr_floor)
            if not over.any():
                break
            delta = torch.where(over[:, None, None, None], 0.97 * delta, delta)
            out = quantise(images, delta, self.eps)
        return out


def main() -> None:
    from segue.cloak import DIFFERENTIABLE
    from segue.data import celeba234_photos
    from segue.face_embedding import embed

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help=".safetensors path (outside the repository: CelebA234-derived)")
    ap.add_argument("--minutes", type=float, default=40)
    ap.add_argument("--steps", type=int, default=2000, help="the step-size schedule's length")
    ap.add_argument("--eps", type=float, default=16, help="L-inf, /255")
    ap.add_argument("--psnr-floor", type=float, default=30.0)
    ap.add_argument("--away", type=float, default=1.0)
    ap.add_argument("--per-step", type=int, default=8)
    ap.add_argument("--per-pattern", type=int, default=4)
    ap.add_argument("--step-frac", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model = DIFFERENTIABLE.create("facenet-torch")
    pool, decoys = celeba234_photos("train", 112), celeba234_photos("val", 112)
    targets = centroids(embed(model, decoys.images), decoys.labels, len(decoys.classes))  # one pattern per val person
    # validation: two photos of each val person, each carrying another person's pattern (label + 1)
    pick = torch.cat([(decoys.labels == c).nonzero().flatten()[:2] for c in range(len(decoys.classes))])
    val = (decoys.subset(pick), (decoys.labels[pick] + 1) % len(targets))
    patterns, info = train_patterns(pool, model, targets, args.eps / 255, args.psnr_floor, args.away, args.steps,
                                    60 * args.minutes, args.per_step, args.per_pattern, step_frac=args.step_frac,
                                    seed=args.seed, val=val)
    settings = {"eps": args.eps / 255, "seed": args.seed, "psnr_floor": args.psnr_floor, "away": args.away,
                "extractor": "facenet-torch", "pool": "celeba234 train (164 people)",
                "decoys": "facenet centroids of the celeba234 val people", "per_step": args.per_step,
                "per_pattern": args.per_pattern, "step_frac": args.step_frac, "schedule_steps": args.steps,
                **{k: v for k, v in info.items() if k != "history"}, "val_last": (info["history"] or [{}])[-1]}
    save_bank(args.out, patterns, targets, settings, info["history"])
    print(json.dumps(settings))


if __name__ == "__main__":
    main()
