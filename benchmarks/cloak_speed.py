"""Seconds a photo of the cloak strengths, and a hash of what they write, on a fixed set of photos.

    python benchmarks/cloak_speed.py --name cloak_speed_walk
    PYTHONPATH=OTHER_CHECKOUT/src python benchmarks/cloak_speed.py --name cloak_speed_before

Run against two checkouts one after the other, on an idle machine, to compare the speed of two
versions of the same algorithm: equal hashes say the outputs are bit-identical, so only the time
differs. Timings on a
shared 2-core machine drift by up to ~10 % between runs (benchmarks/results/cloak_frontier_celeba234_test_walk.md:
the unchanged first-shipped cloak 0.86 s in one run, 0.94 s in another). The photos: the first
``--photos`` training photos of the CelebA234 test people (6 a person), 112 px.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import time
from pathlib import Path

import torch

from _common import write_results
from cloak_frontier import load_data


def source_revision() -> str:
    """The git commit of the segue that is imported (it may be another checkout's, via PYTHONPATH);
    ``-dirty`` when its checkout has uncommitted changes."""
    import segue

    root = Path(segue.__file__).resolve().parents[2]
    out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def count_measures(cloak) -> list[int]:
    """A one-element counter of the photos a perceptual cloak measures against its bar (``terms``)."""
    counter = [0]
    if hasattr(cloak, "terms"):
        terms = cloak.terms

        def counted(refs, y):
            counter[0] += len(y)
            return terms(refs, y)
        cloak.terms = counted
    return counter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strengths", nargs="+", default=["low"])
    ap.add_argument("--photos", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--precision", choices=["float32", "bfloat16", "auto"], default=None,
                    help="the extractors' precision instead of the strength's own (segue.runtime.autocast)")
    ap.add_argument("--name", required=True)
    args = ap.parse_args()
    from segue.protect.presets import create_preset
    from segue.runtime import resolve_precision

    train, _ = load_data("celeba234-test", 6)
    x, y = train.images[: args.photos], train.labels[: args.photos]
    rows = {}
    for strength in args.strengths:
        cloak = create_preset(strength)
        if args.precision:
            cloak.precision = resolve_precision(args.precision, cloak.device)
        cloak.perturb(x[:2], y[:2])  # warm-up: first calls allocate
        measured = count_measures(cloak)
        seconds, digest = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = cloak.perturb(x, y)
            seconds.append(round((time.perf_counter() - t0) / len(x), 4))
            digest = hashlib.sha1(out.numpy().tobytes()).hexdigest()[:16]
        rows[strength] = {"seconds_per_photo": seconds, "sha1": digest, "precision": cloak.precision,
                          "visibility_measures_per_photo": round(measured[0] / args.repeats / len(x), 1) if measured else None}
    revision = source_revision()
    command = (f"python benchmarks/cloak_speed.py --strengths {' '.join(args.strengths)} --photos {args.photos} "
               f"--repeats {args.repeats}" + (f" --precision {args.precision}" if args.precision else "") + f" --name {args.name}")
    lines = [f"# Cloak speed ({revision})", "", f"`{command}` (segue at {revision})", "",
             f"{args.photos} CelebA234 test photos, 112 px, {torch.get_num_threads()} CPU threads.", "",
             "| strength | precision | s / photo, each repeat | visibility measures a photo | sha1 of the output |",
             "|---|---|---|---|---|"]
    lines += [f"| {k} | {r['precision']} | {', '.join(map(str, r['seconds_per_photo']))} | "
              f"{r['visibility_measures_per_photo']} | {r['sha1']} |" for k, r in rows.items()]
    write_results(args.name, {"command": command, "revision": revision, "photos": args.photos, "rows": rows},
                  "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
