"""``segue evaluate`` and ``segue demo``: what an attacker learns from protected photos."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from segue.runtime import resolve_device, versions, write_json_atomic


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Fit an attacker on TRAIN (protected or clean) and report its clean-test accuracy (per epoch)."""
    from segue.attackers import create_attacker
    from segue.countermeasures import apply_data, batch_transforms, build_countermeasures
    from segue.data import load_image_folder

    device = resolve_device(args.device)
    if args.attacker == "scratch":
        attacker = create_attacker("scratch", model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                                   seed=args.seed, device=device)
    else:
        attacker = create_attacker(args.attacker, seed=args.seed, device=device)
    cms = build_countermeasures(args.countermeasure or [])
    train = load_image_folder(args.train, args.image_size)
    test = load_image_folder(args.test, args.image_size, classes=train.classes)
    seen = originals_quality(args.originals, train, args.image_size) if args.originals else None
    train = train.with_images(apply_data(cms, train.images, train.labels))
    result = attacker.run(train, test, on_epoch=lambda r: print(json.dumps(r), file=sys.stderr, flush=True),
                          batch_transforms=batch_transforms(cms) or None)
    out = {"train": str(Path(args.train).resolve()), "test": str(Path(args.test).resolve()),
           "image_size": args.image_size, "attacker": attacker.config(), "countermeasures": [c.describe() for c in cms],
           "versions": versions(), **({"visibility": seen} if seen else {}), **result}
    write_json_atomic(Path(args.output), out)
    print(f"{args.attacker}: final {result['final_acc']:.3f}, peak {result['peak_acc']:.3f} "
          f"(epoch {result['peak_epoch']}), chance {result['chance']:.3f}"
          + (f"; TRAIN against ORIGINALS: HaarPSI {seen['haarpsi_median']}, CIEDE2000 p95 {seen['delta_e_p95_median']}, "
             f"PSNR {seen['psnr_mean']} dB" if seen else "") + f" -> {args.output}")
    return 0


def originals_quality(originals: str, train, image_size: int) -> dict:
    """How visible TRAIN's protection is: its photos against the same-named ORIGINALS, at ``image_size``
    (median HaarPSI / CIEDE2000 p95, PSNR: :func:`segue.quality.set_quality`)."""
    from segue.data import load_image_folder
    from segue.quality import set_quality

    root = Path(originals)
    clean = load_image_folder(root, image_size, classes=train.classes)
    rel = [Path(p).relative_to(Path(p).parents[1]) for p in train.paths]
    if [Path(p).relative_to(root) for p in clean.paths] != rel:
        raise ValueError(f"{originals} does not hold the same files as the training folder (same subfolders and names)")
    return {"originals": str(root.resolve()), **set_quality(clean.images, train.images)}


def cmd_demo(args: argparse.Namespace) -> int:
    from segue.demo import run_demo

    run_demo(out_dir=Path(args.output), device=resolve_device(args.device), quick=args.quick, cloak=args.cloak,
             **({"weights": args.weights} if args.weights else {}))
    return 0

def add_parser(sub) -> None:
    """``segue evaluate`` and ``segue demo``: what an attacker learns from protected photos subcommands."""
    e = sub.add_parser("evaluate", help="fit an attacker (default: a victim trained from scratch) on TRAIN, "
                                        "test on clean TEST")
    e.add_argument("--train", required=True)
    e.add_argument("--test", required=True)
    e.add_argument("-o", "--output", default="results.json")
    e.add_argument("--attacker", default="scratch",
                   help="scratch (a --model trained from scratch) or a pretrained-embedding / fine-tuning attacker "
                        "(segue list attackers)")
    e.add_argument("--countermeasure", action="append", metavar="NAME",
                   help="applied before/while fitting, repeatable (segue list countermeasures), e.g. projection")
    e.add_argument("--originals", metavar="DIR",
                   help="the unprotected photos TRAIN was made from (same tree): adds their visibility (median "
                        "HaarPSI / CIEDE2000 p95, PSNR at --image-size) to the output")
    e.add_argument("--model", default="resnet18")
    e.add_argument("--epochs", type=int, default=15)
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--image-size", type=int, default=112)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("demo", help="the whole story on the embedded ORL faces (no network, < 10 min on CPU)")
    d.add_argument("-o", "--output", default="segue-demo")
    d.add_argument("--weights", metavar="NAME",
                   help="the shipped generator to protect with (default: segue.demo.DEMO_WEIGHTS; segue list protections)")
    d.add_argument("--quick", action="store_true", help="a 1-minute smoke version (fewer epochs)")
    d.add_argument("--cloak", action="store_true",
                   help="also protect the photos with segue protect --cloak (per-photo FaceNet PGD, ~4 more "
                        "minutes) and measure both attackers on them; needs the attacks extra")
    d.add_argument("--device", default="auto")
    d.set_defaults(func=cmd_demo)
