"""A one-pass cloak: one universal feature-space pattern per side label, learned once on many faces.

Every generator tried so far against pretrained recognisers computes its delta from the photo, and
none moved dlib (docs/attacks.md): the per-photo PGD's delta is nearly orthogonal to what the
generator computes. This tries the other one-pass form: a bank of ``K`` image-independent patterns,
pattern ``k`` trained to push *any* face's FaceNet embedding away from its clean embedding and
toward a decoy ``t_k`` (a targeted universal adversarial perturbation; Moosavi-Dezfooli et al.,
CVPR 2017). Protecting is one addition, so throughput is the generator's or better; all of one
person's photos carry the same pattern, as class-wise error-minimising noise does (the from-scratch
shortcut). dlib never enters training: it is the black-box attacker.

Outcome (docs/attacks.md, experiments/results/universal_cloak_k35_*.md, coarse_cloak_k35_*.md): the
patterns move FaceNet on new faces and dlib about as much per unit of that move as the per-photo PGD,
but too little: dlib-linear 69-97.5 % everyone protected (64 % with :class:`CoarseResidual`).

Train (patterns derived from CelebA234 photos: kept outside the repository)::

    python -m experiments.universal_cloak --out /path/patterns.safetensors --minutes 40

then measure them with ``python experiments/feature_transfer_pilot.py --universal /path/patterns.safetensors``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from segue.data import FaceSet
from segue.distortion import DistortionLayer
from segue.methods.base import NoiseMethod, quantise_within
from segue.methods.feature_cloak import AFFINE_DIVERSITY
from segue.quality import rms, rms_cap, within_psnr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/: a folder of the repository, not installed
from experiments.feature_cloak_variants import centroids  # noqa: E402


def project(delta: torch.Tensor, eps: float, psnr_floor: float) -> torch.Tensor:
    """Each delta cut to the L-inf ``eps`` and to the L2 ball of ``psnr_floor`` (differentiable)."""
    return within_psnr(delta.clamp(-eps, eps), psnr_floor)


def cloak_terms(model, x: torch.Tensor, delta: torch.Tensor, clean: torch.Tensor, decoys: torch.Tensor,
                diversity: DistortionLayer | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cosine of each protected photo's embedding to its clean embedding and to its decoy."""
    inp = (x + delta).clamp(0, 1)
    e = model(diversity(inp) if diversity is not None else inp)
    return F.cosine_similarity(e, clean).mean(), F.cosine_similarity(e, decoys).mean()


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
            own, toward = cloak_terms(model, x.images, patterns[idx], model(x.images), targets[idx])
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
        own, toward = cloak_terms(model, x, p[idx], clean, targets[idx], diversity)
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


class CoarseResidual(nn.Module):
    """A per-photo delta seen through a coarse window: the face at ``size`` px in, a smooth ``(N,3,H,W)``
    delta out (bilinear upsampling, ``eps * tanh``); its last layer starts at zero, so at first the bank alone.

    Why: the patterns transfer to dlib about as well per unit of FaceNet's move as the per-photo PGD
    but are weak; the per-photo generators are strong on FaceNet and transfer least. This gives the
    bank a little per-photo adaptivity while keeping the photo's fine detail, which a generator can
    fit to FaceNet's own features, out of reach.
    """

    def __init__(self, eps: float, size: int = 28, width: int = 32):
        super().__init__()
        self.eps, self.size = eps, size
        self.net = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                                 nn.ReLU(), nn.Conv2d(width, 3, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coarse = self.net(F.interpolate(x, size=self.size, mode="area") - 0.5)
        return self.eps * torch.tanh(F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False))


def coarse_delta(patterns: torch.Tensor, residual: CoarseResidual, x: torch.Tensor, idx: torch.Tensor, eps: float,
                 psnr_floor: float) -> torch.Tensor:
    """Pattern ``idx`` plus the residual of ``x``, cut to the L-inf budget and the PSNR floor (differentiable)."""
    return project(patterns[idx] + residual(x), eps, psnr_floor)


def train_coarse(pool: FaceSet, model, patterns: torch.Tensor, targets: torch.Tensor, eps: float, psnr_floor: float,
                 away: float = 1.0, max_seconds: float = 1500, batch: int = 32, lr: float = 1e-3,
                 pattern_lr: float = 1e-4, seed: int = 0, val: tuple[FaceSet, torch.Tensor] | None = None,
                 log_every: int = 100) -> tuple[torch.Tensor, CoarseResidual, dict]:
    """The bank (from ``patterns``) and a :class:`CoarseResidual` trained together with Adam on the bank's
    objective, each photo carrying a random pattern."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the residual's initial weights and the input diversity's draws
    bank, residual = nn.Parameter(patterns.clone()), CoarseResidual(eps)
    opt = torch.optim.Adam([{"params": residual.parameters(), "lr": lr}, {"params": [bank], "lr": pattern_lr}])
    diversity = DistortionLayer.from_config(AFFINE_DIVERSITY)
    history: list[dict] = []
    t0, step = time.perf_counter(), 0

    def cosines(x, clean, idx, div=None):
        return cloak_terms(model, x, coarse_delta(bank, residual, x, idx, eps, psnr_floor), clean, targets[idx], div)

    while time.perf_counter() - t0 < max_seconds:
        step += 1
        x = pool.images[torch.randint(len(pool), (batch,), generator=gen)]
        idx = torch.randint(len(targets), (batch,), generator=gen)
        with torch.no_grad():
            clean = model(x)
        own, toward = cosines(x, clean, idx, diversity)
        opt.zero_grad()
        (away * own - toward).backward()
        opt.step()
        if val is not None and step % log_every == 0:
            with torch.no_grad():
                v_own, v_toward = cosines(val[0].images, model(val[0].images), val[1])
            history.append({"step": step, "seconds": round(time.perf_counter() - t0, 1),
                            "val_cos_own": round(v_own.item(), 4), "val_cos_decoy": round(v_toward.item(), 4)})
            print(json.dumps(history[-1]), flush=True)
    return bank.detach(), residual.eval(), {"steps_done": step, "seconds": round(time.perf_counter() - t0, 1),
                                            "history": history}


def save_bank(path: str | Path, patterns: torch.Tensor, targets: torch.Tensor, settings: dict, history: list,
              residual: CoarseResidual | None = None) -> None:
    """The bank as ``.safetensors``: ``patterns``, ``targets``, the residual's ``residual.*`` weights if
    any, and the settings :class:`UniversalCloak` reads."""
    extra = {} if residual is None else {f"residual.{k}": v.contiguous() for k, v in residual.state_dict().items()}
    save_file({"patterns": patterns.contiguous(), "targets": targets.contiguous(), **extra}, str(path),
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
            state = {k.removeprefix("residual."): f.get_tensor(k) for k in f.keys() if k.startswith("residual.")}
        super().__init__(self.meta["eps"], self.meta["seed"], device)
        self.residual = None
        if state:
            self.residual = CoarseResidual(self.eps).eval()
            self.residual.load_state_dict(state)
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
        idx = torch.as_tensor(side_labels) % len(self.patterns)
        if self.residual is None:
            delta = self.patterns[idx]
        else:
            with torch.no_grad():
                delta = coarse_delta(self.patterns, self.residual, images, idx, self.eps, self.psnr_floor)
        return quantise_within(images, delta, self.eps, self.psnr_floor)


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
    ap.add_argument("--coarse-from", help="a bank to start from: train it with a CoarseResidual (Adam) instead")
    args = ap.parse_args()
    model = DIFFERENTIABLE.create("facenet-torch")
    pool, decoys = celeba234_photos("train", 112), celeba234_photos("val", 112)
    targets = centroids(embed(model, decoys.images), decoys.labels, len(decoys.classes))  # one pattern per val person
    # validation: two photos of each val person, each carrying another person's pattern (label + 1)
    pick = torch.cat([(decoys.labels == c).nonzero().flatten()[:2] for c in range(len(decoys.classes))])
    val = (decoys.subset(pick), (decoys.labels[pick] + 1) % len(targets))
    residual = None
    if args.coarse_from:
        start = UniversalCloak(args.coarse_from)
        patterns, residual, info = train_coarse(pool, model, start.patterns, start.targets, start.eps,
                                                start.psnr_floor, args.away, 60 * args.minutes, seed=args.seed, val=val)
    else:
        patterns, info = train_patterns(pool, model, targets, args.eps / 255, args.psnr_floor, args.away, args.steps,
                                        60 * args.minutes, args.per_step, args.per_pattern, step_frac=args.step_frac,
                                        seed=args.seed, val=val)
    settings = {"eps": args.eps / 255, "seed": args.seed, "psnr_floor": args.psnr_floor, "away": args.away,
                "extractor": "facenet-torch", "pool": "celeba234 train (164 people)",
                "decoys": "facenet centroids of the celeba234 val people", "per_step": args.per_step,
                "per_pattern": args.per_pattern, "step_frac": args.step_frac, "schedule_steps": args.steps,
                **{k: v for k, v in info.items() if k != "history"}, "val_last": (info["history"] or [{}])[-1],
                **({"coarse_from": Path(args.coarse_from).name, "residual": "CoarseResidual(28 px, width 32), Adam 1e-3 "
                    "(bank 1e-4), batch 32"} if args.coarse_from else {})}
    save_bank(args.out, patterns, targets, settings, info["history"], residual)
    print(json.dumps(settings))


if __name__ == "__main__":
    main()
