"""`segue protect` throughput, end to end (decode, resize, generator, encode PNG, report).

    python benchmarks/throughput.py [--weights W] [--batch-size 16] [--workers 2]

Uses WebFace10's 200 test photos as 224-px JPEG inputs and a 112-px PNG copy of them, in a
temporary folder (nothing is copied into the repo). Also times the bare generator forward
pass at 112 px, so the overhead of I/O is visible. Writes benchmarks/results/throughput.*.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from _common import write_results
from segue.checkpoint import load_generator
from segue.data import webface10_root
from segue.protect import ProtectOptions, protect_folder


def bare_forward(generator, size: int, batch: int, repeats: int = 5) -> float:
    x, s = torch.rand(batch, 3, size, size), torch.zeros(batch, dtype=torch.long)
    with torch.inference_mode():
        generator(x, s)
        t0 = time.perf_counter()
        for _ in range(repeats):
            generator(x, s)
    return batch * repeats / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    generator, _ = load_generator(args.weights, "cpu")
    src = webface10_root() / "test_clean"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copytree(src, tmp / "in224")
        for p in (tmp / "in224").rglob("*.jpg"):
            dst = tmp / "in112" / p.relative_to(tmp / "in224").with_suffix(".png")
            dst.parent.mkdir(parents=True, exist_ok=True)
            Image.open(p).convert("RGB").resize((112, 112), Image.BILINEAR).save(dst)
        opts = ProtectOptions(batch_size=args.batch_size, workers=args.workers)
        for name in ("in224", "in112"):
            report = protect_folder(generator, tmp / name, tmp / f"out_{name}", opts, progress=False)
            s = report["summary"]
            rows.append({"input": f"{name[2:]}x{name[2:]} ({'JPEG' if name == 'in224' else 'PNG'})",
                         "images": s["protected"], "seconds": s["seconds"], "images_per_second": s["images_per_second"],
                         "psnr_mean": s["psnr_mean"]})
    fwd = bare_forward(generator, 112, args.batch_size)
    payload = {"threads": torch.get_num_threads(), "batch_size": args.batch_size, "workers": args.workers,
               "end_to_end": rows, "generator_forward_112_images_per_second": round(fwd, 1)}
    md = [f"## `segue protect` throughput on this machine ({torch.get_num_threads()} CPU threads, batch {args.batch_size})", "",
          "| input | images | seconds | images/s end to end | ratio to bare G forward |", "|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['input']} | {r['images']} | {r['seconds']:.2f} | {r['images_per_second']:.1f} | {r['images_per_second'] / fwd:.2f} |")
    md += ["", f"Bare generator forward at 112 px: {fwd:.1f} images/s. Output: PNG, with per-image PSNR/SSIM/L-inf report.", ""]
    write_results("throughput", payload, "\n".join(md))


if __name__ == "__main__":
    main()
