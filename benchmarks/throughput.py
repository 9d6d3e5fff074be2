"""`segue protect` throughput, end to end (decode, faces, generator, paste, encode, report).

    python benchmarks/throughput.py [--weights W] [--batch-size 16] [--workers 2] [--big 16]

Inputs, built in a temporary folder (nothing is copied into the repo):
- WebFace10's 200 test photos as they are: 224-px JPEG face crops (written back as JPEG q95,
  and converted to PNG with ``--format png``), and a 112-px PNG copy of them;
- ``--big`` synthetic 12-MP phone photos (4000x3000 JPEG): a WebFace10 face scaled to
  ~900 px pasted on a smooth background, found by the face detector (``--region auto``),
  and the same photos with ``--full-image``.
Also times the bare generator forward pass at 112 px, so the cost of everything else is
visible as a ratio. Writes benchmarks/results/throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _common import write_results
from segue.checkpoint import load_generator
from segue.data import webface10_root
from segue.protect import ProtectOptions, protect_folder


def bare_forward(generator, size: int, batch: int, repeats: int = 10) -> float:
    x, s = torch.rand(batch, 3, size, size), torch.zeros(batch, dtype=torch.long)
    with torch.inference_mode():
        generator(x, s)
        t0 = time.perf_counter()
        for _ in range(repeats):
            generator(x, s)
    return batch * repeats / (time.perf_counter() - t0)


def make_big_photos(faces: list[Path], out: Path, n: int) -> None:
    """12-MP JPEGs with one face each, at phone-photo framing."""
    rng = np.random.default_rng(0)
    (out / "me").mkdir(parents=True)
    for i in range(n):
        bg = rng.integers(40, 200, (30, 40, 3), dtype=np.uint8)
        photo = Image.fromarray(bg).resize((4000, 3000), Image.BICUBIC)
        face = Image.open(faces[i % len(faces)]).convert("RGB").resize((900, 900), Image.BICUBIC)
        photo.paste(face, (int(rng.integers(300, 2700)), int(rng.integers(300, 1800))))
        photo.save(out / "me" / f"IMG_{i:04d}.jpg", quality=92)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--big", type=int, default=16, help="number of 12-MP photos")
    args = ap.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # the lossy-output warning, expected here
    generator, _ = load_generator(args.weights, "cpu")
    src = webface10_root() / "test_clean"
    base = dict(batch_size=args.batch_size, workers=args.workers)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copytree(src, tmp / "crops224")
        for p in (tmp / "crops224").rglob("*.jpg"):
            dst = tmp / "crops112" / p.relative_to(tmp / "crops224").with_suffix(".png")
            dst.parent.mkdir(parents=True, exist_ok=True)
            Image.open(p).convert("RGB").resize((112, 112), Image.BILINEAR).save(dst)
        make_big_photos(sorted(src.rglob("*.jpg")), tmp / "photos12mp", args.big)
        cases = [
            ("224x224 JPEG crops -> JPEG q95", "crops224", {}),
            ("224x224 JPEG crops -> PNG", "crops224", {"output_format": "png"}),
            ("112x112 PNG crops -> PNG", "crops112", {}),
            ("4000x3000 JPEG photos, faces detected -> JPEG q95", "photos12mp", {}),
            ("4000x3000 JPEG photos, --full-image -> JPEG q95", "photos12mp", {"region": "full"}),
        ]
        for k, (label, folder, extra) in enumerate(cases):
            report = protect_folder(generator, tmp / folder, tmp / f"out{k}", ProtectOptions(**base, **extra),
                                    progress=False)
            s = report["summary"]
            rows.append({"input": label, "images": s["protected"] + s["no_face"], "faces_missed": s["no_face"],
                         "seconds": s["seconds"], "images_per_second": s["images_per_second"],
                         "psnr_mean": s["psnr_mean"], "ssim_mean": s["ssim_mean"], "linf_max": s["linf_max"]})
            print(rows[-1], flush=True)
    fwd = bare_forward(generator, 112, args.batch_size)
    threads = torch.get_num_threads()
    payload = {"cpu_cores": os.cpu_count(), "torch_threads": threads, "batch_size": args.batch_size,
               "workers": args.workers, "end_to_end": rows, "generator_forward_112_images_per_second": round(fwd, 1),
               "command": "python benchmarks/throughput.py"}
    md = [f"## `segue protect` throughput on this machine ({os.cpu_count()} CPU cores, {threads} torch threads, "
          f"batch {args.batch_size}, {args.workers} I/O threads)", "",
          "| input -> output | images | no face found | seconds | images/s end to end | ratio to bare G forward | PSNR dB | L-inf /255 |",
          "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['input']} | {r['images']} | {r['faces_missed']} | {r['seconds']:.2f} | "
                  f"{r['images_per_second']:.1f} | {r['images_per_second'] / fwd:.2f} | {r['psnr_mean']} | {r['linf_max']} |")
    md += ["", f"Bare generator forward at 112 px (batch {args.batch_size}): {fwd:.1f} images/s. "
           "PSNR and L-inf are measured on the decoded output file (for JPEG output they include the JPEG loss; "
           "for 12-MP photos PSNR is over the whole frame, so a face-only perturbation scores high).", ""]
    write_results("throughput", payload, "\n".join(md))


if __name__ == "__main__":
    main()
