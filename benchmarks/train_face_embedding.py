"""Train the CelebA234 face-embedding surrogate ("celeba-cosface" in segue.cloak.DIFFERENTIABLE).

    python benchmarks/train_face_embedding.py [--epochs 30] [--people N] [--max-seconds S] [--device cpu]

A ResNet18 -> 128-d embedding with a CosFace head (segue.face_embedding), trained on every photo
of the CelebA234 *train* people (164 identities, dlib-aligned 112 px crops). The epoch kept is the
one with the best 1-NN accuracy on the *val* people (gallery: their first photos, probe: their last
5); the test people enter nothing. For scale, the pretrained references on the same val split:
FaceNet and dlib, 1-NN (dlib is the benchmarks' black-box attacker: never a surrogate, only
a yardstick here). Writes the weights to segue.face_embedding.celeba_cosface_path() (outside the
repository: trained on research-only photos) and benchmarks/results/NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict

import torch

from _common import write_results
from segue.data import celeba234_photos, load_celeba234
from segue.extractors import create_extractor
from segue.runtime import device_name
from segue.face_embedding import (EmbeddingConfig, celeba_cosface_path, nearest_neighbour_accuracy, save_embedder,
                                  train_embedding)


def reference_1nn(name: str, gallery, probe) -> float:
    """1-NN accuracy of a pretrained extractor on the val split (same protocol as the surrogate's)."""
    extractor = create_extractor(name)
    g, p = (torch.as_tensor(extractor.embed(s.images)) for s in (gallery, probe))
    return nearest_neighbour_accuracy(g, gallery.labels, p, probe.labels)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--people", type=int, default=None, help="only the first N train people (smoke runs)")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="weights path (default: celeba_cosface_path())")
    ap.add_argument("--name", default="celeba_cosface")
    args = ap.parse_args()
    cfg = EmbeddingConfig(epochs=args.epochs, max_seconds=args.max_seconds)
    photos = celeba234_photos("train", args.size, args.people)
    gallery, probe = load_celeba234("val", size=args.size)
    print(f"{len(photos)} photos of {len(photos.classes)} train people; val: {len(gallery.classes)} people",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    model, history = train_embedding(photos, cfg, val=(gallery, probe), device=args.device,
                                     on_epoch=lambda r: print(r, file=sys.stderr, flush=True))
    seconds = time.perf_counter() - t0
    flags = [f"--epochs {args.epochs}"] + ([f"--people {args.people}"] if args.people else []) \
        + ([f"--max-seconds {args.max_seconds:g}"] if args.max_seconds else []) \
        + ([f"--size {args.size}"] if args.size != 112 else []) + [f"--name {args.name}"]
    command = "python benchmarks/train_face_embedding.py " + " ".join(flags)
    hardware = device_name(torch.device(args.device))
    best = max(history, key=lambda r: r["val_1nn"])
    out = args.out or celeba_cosface_path()
    save_embedder(model, out, {"command": command, "config": asdict(cfg), "history": history, "hardware": hardware,
                               "train_people": len(photos.classes), "seconds": round(seconds, 1)})
    refs = {name: round(reference_1nn(name, gallery, probe), 4) for name in ("facenet", "dlib")}
    payload = {"command": command, "hardware": hardware, "config": asdict(cfg), "train_people": len(photos.classes),
               "train_photos": len(photos), "val_people": len(gallery.classes), "seconds": round(seconds, 1),
               "best_epoch": best["epoch"], "val_1nn": best["val_1nn"], "reference_val_1nn": refs,
               "weights": str(out), "history": history}
    md = [f"## CelebA234 face-embedding surrogate (ResNet18 + CosFace, {cfg.dim}-d, {args.size} px)", "",
          f"`{command}` on {hardware}, {seconds / 60:.0f} min; {len(photos)} photos of {len(photos.classes)} train people.", "",
          "1-NN identification of the val people (never trained on): gallery = their training photos, probe = their "
          "last 5 photos.", "",
          "| embedding | val 1-NN |", "|---|---|",
          f"| celeba-cosface (epoch {best['epoch']} of {len(history)}, chosen on this val split) | {100 * best['val_1nn']:.1f} % |",
          f"| FaceNet (pretrained, CASIA-WebFace) | {100 * refs['facenet']:.1f} % |",
          f"| dlib (pretrained; the black-box attacker, never a surrogate) | {100 * refs['dlib']:.1f} % |"]
    write_results(args.name, payload, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
