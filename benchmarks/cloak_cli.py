"""End to end: ``segue protect --cloak`` on WebFace10 photo files, then the pretrained attackers.

    python benchmarks/cloak_cli.py [--per-person 16]

The pilots (feature_transfer_pilot.py) cloak in-memory 112-px tensors; this runs the product:
the CLI on the original 224-px JPEG files (each photo a face crop, cloaked at 112 px and the delta
resized back, written as JPEG q95 like the inputs), and the attackers read the written files at
224 px. The same first ``--per-person`` training photos of each person as the pilots, all test
photos clean. Also: the attacker cleaning the training photos first (each data-level
countermeasure at its defaults, before dlib-linear embeds them), and the time of
``segue protect --weights default`` on the same folder (throughput).
Writes benchmarks/results/cloak_cli_wf10.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import write_results
from feature_transfer_pilot import ATTACKERS, partial_md, partial_rows
from segue.attackers import create_attacker
from segue.cli import main as segue
from segue.countermeasures import COUNTERMEASURES, apply_data, create_countermeasure
from segue.data import load_image_folder, split_per_class, webface10_root


def mirror(paths: list[str], root: Path, out: Path) -> None:
    """Symlinks to ``paths`` under ``out``, keeping their person folders (the originals stay read-only)."""
    for p in map(Path, paths):
        dst = out / p.relative_to(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(p)


def timed_protect(args: list[str]) -> float:
    t0 = time.perf_counter()
    if segue(["protect", *args, "--device", "cpu", "-q"]) != 0:
        raise SystemExit(f"segue protect {' '.join(args)} failed")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-person", type=int, default=16)
    ap.add_argument("--size", type=int, default=224, help="size the attackers read the files at (WebFace10: 224)")
    args = ap.parse_args()
    root = webface10_root()
    clean = split_per_class(load_image_folder(root / "train_clean", args.size), args.per_person)[0]
    test = load_image_folder(root / "test_clean", args.size)
    with tempfile.TemporaryDirectory() as tmp:
        src, cloaked_dir, default_dir = Path(tmp) / "in", Path(tmp) / "cloak", Path(tmp) / "default"
        mirror(clean.paths, root / "train_clean", src)
        seconds = {"cloak": timed_protect([str(src), "-o", str(cloaked_dir), "--cloak", "--ssim-every", "1"]),
                   "default": timed_protect([str(src), "-o", str(default_dir), "--weights", "default"])}
        report = json.loads((cloaked_dir / "report.json").read_text())
        cloaked = load_image_folder(cloaked_dir, args.size)
    if cloaked.classes != clean.classes or [Path(p).name for p in cloaked.paths] != [Path(p).name for p in clean.paths]:
        raise SystemExit("the protected folder does not mirror the input")
    attackers = {name: create_attacker(name) for name in ATTACKERS}  # each loads its model and cache once
    rows = {name: {"clean": a.run(clean, test)["final_acc"], "cloaked": a.run(cloaked, test)["final_acc"]}
            for name, a in attackers.items()}
    partial = partial_rows(clean, test, cloaked.images, every=True)
    cleaned = {}
    for name in (n for n in COUNTERMEASURES.list() if create_countermeasure(n).kind == "data"):
        cleaned[name] = {k: attackers["dlib-linear"].run(  # a fresh countermeasure per set, as an attacker would
                             clean.with_images(apply_data([create_countermeasure(name)], images, clean.labels)),
                             test)["final_acc"]
                         for k, images in (("clean", clean.images), ("cloaked", cloaked.images))}
    n = len(clean)
    payload = {"command": "python benchmarks/cloak_cli.py " + " ".join(sys.argv[1:]), "photos": n,
               "people": len(clean.classes), "attacker_size": args.size, "protection": report["protection"],
               "summary": report["summary"], "seconds": {k: round(v, 1) for k, v in seconds.items()},
               "seconds_per_photo": {k: round(v / n, 3) for k, v in seconds.items()}, "attackers": rows,
               "partial": partial, "countermeasures_dlib_linear": cleaned}
    s = report["summary"]
    md = ["## `segue protect --cloak` end to end on WebFace10 (files in, files out, pretrained attackers)", "",
          f"`{payload['command']}` on a 2-core CPU: the CLI cloaked the first {args.per_person} training photos of "
          f"each of the {len(clean.classes)} people ({n} JPEG files, 224 px, written as JPEG q95); the attackers "
          f"read the written files at {args.size} px and are scored on the {len(test)} clean test photos.", "",
          f"Quality (report.json): PSNR {s['psnr_mean']} dB, SSIM {s['ssim_mean']} (of {s['ssim_photos']} photos), "
          f"max L-inf {s['linf_max']}/255. Time: `--cloak` {payload['seconds_per_photo']['cloak']} s a photo, "
          f"`--weights default` {payload['seconds_per_photo']['default']} s a photo (same folder, same machine, "
          "including start-up).", "",
          "| attacker (fitted on the training photos, scored on clean test photos) | clean files | cloaked files |",
          "|---|---|---|"]
    md += [f"| {k} | {100 * r['clean']:.1f} % | {100 * r['cloaked']:.1f} % |" for k, r in rows.items()]
    md += ["", *partial_md(partial), "", "The attacker cleans the training photos first (each data-level countermeasure at "
           "its defaults, `segue list countermeasures`), then fits dlib-linear:", "",
           "| countermeasure | clean files | cloaked files |", "|---|---|---|"]
    md += [f"| {k} | {100 * r['clean']:.1f} % | {100 * r['cloaked']:.1f} % |" for k, r in cleaned.items()]
    write_results("cloak_cli_wf10", payload, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
