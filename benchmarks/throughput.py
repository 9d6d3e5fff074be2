"""`segue protect` throughput (decode, faces, generator, paste, encode, the L-inf check, write, report).

    python benchmarks/throughput.py [--weights W] [--repeat 3] [--big 16] [--train-only]

1. End to end, start-up included: the ``segue protect`` command on WebFace10's 1300 training
   photos (224-px JPEG face crops, read in place from ``$SEGUE_WEBFACE10/train_clean``), timed
   from process start to exit (interpreter, torch import, generator loading, the run, report.json),
   written back as JPEG q95 and with ``--format png``; ``--repeat`` runs of each (the median is
   reported, every run is in the JSON). Outputs go to a temporary folder, removed at the end.
2. In process, start-up excluded (``protect_folder``'s own timing, the rows of earlier versions):
   WebFace10's 200 test photos as they are and as a 112-px PNG copy, and ``--big`` synthetic 12-MP
   phone photos (4000x3000 JPEG, a WebFace10 face scaled to ~900 px on a smooth background) with the
   face detector (``--region auto``) and with ``--full-image``.
3. The bare generator forward at 112 px (batch 16), median of 5 rounds of 10 calls: one call at a
   time on all torch threads (the ratio's reference, as before) and two threads of one torch thread
   each side by side (what protect's two lanes run).

Nothing is copied into the repository. Writes benchmarks/results/throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from _common import write_results
from segue.checkpoint import load_generator
from segue.data import webface10_root
from segue.protect import DEFAULT_SSIM_EVERY, ProtectOptions, protect_folder
from segue.protect.jobs import DEFAULT_VISIBILITY_EVERY


def bare_forward(generator, size: int, batch: int, repeats: int = 10, rounds: int = 5) -> float:
    """images/s of one forward call at a time on all torch threads (median of ``rounds``)."""
    x, s = torch.rand(batch, 3, size, size), torch.zeros(batch, dtype=torch.long)
    speeds = []
    with torch.inference_mode():
        generator(x, s)
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(repeats):
                generator(x, s)
            speeds.append(batch * repeats / (time.perf_counter() - t0))
    return statistics.median(speeds)


def bare_forward_lanes(generator, size: int, batch: int, lanes: int = 2, repeats: int = 10, rounds: int = 5) -> float:
    """images/s of ``lanes`` threads calling the generator side by side, one torch thread each (median of ``rounds``)."""
    x, s = torch.rand(batch, 3, size, size), torch.zeros(batch, dtype=torch.long)
    threads = torch.get_num_threads()

    def work(n: int) -> None:
        torch.set_num_threads(1)
        with torch.inference_mode():
            for _ in range(n):
                generator(x, s)

    speeds = []
    with ThreadPoolExecutor(lanes) as pool:
        list(pool.map(work, [1] * lanes))
        for _ in range(rounds):
            t0 = time.perf_counter()
            list(pool.map(work, [repeats] * lanes))
            speeds.append(batch * repeats * lanes / (time.perf_counter() - t0))
    torch.set_num_threads(threads)
    return statistics.median(speeds)


def segue_command() -> list[str]:
    """The ``segue`` console script of this interpreter's environment (``python -m segue.cli`` if none)."""
    script = shutil.which("segue")
    return [script] if script else [sys.executable, "-m", "segue.cli"]


def cpu_ticks() -> list[int]:
    """The machine's CPU time so far (/proc/stat, all cores) by kind; [] where there is none."""
    try:
        return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return []


def steal_share(before: list[int], after: list[int]) -> float | None:
    """Share of the machine's CPU time the hypervisor gave to other machines meanwhile (steal, 8th field)."""
    if len(before) < 8 or len(after) < 8:
        return None
    total = sum(after[:8]) - sum(before[:8])
    return round((after[7] - before[7]) / total, 3) if total else None


def time_command(args: list[str], out: Path) -> tuple[float, dict, float | None]:
    """Wall seconds from process start to exit, the run's report and the CPU time stolen meanwhile."""
    ticks, t0 = cpu_ticks(), time.perf_counter()
    subprocess.run([*segue_command(), "protect", *args, "-o", str(out), "-q"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    return seconds, json.loads((out / "report.json").read_text()), steal_share(ticks, cpu_ticks())


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


def row(label: str, summary: dict, seconds: float, extra: dict | None = None) -> dict:
    images = summary["protected"] + summary["no_face"]
    return {"input": label, "images": images, "faces_missed": summary["no_face"], "seconds": round(seconds, 3),
            "images_per_second": round(images / seconds, 2), "psnr_mean": summary["psnr_mean"],
            "ssim_mean": summary["ssim_mean"], "ssim_photos": summary.get("ssim_photos"),
            "linf_max": summary["linf_max"], **(extra or {})}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each end-to-end command (median reported)")
    ap.add_argument("--big", type=int, default=16, help="number of 12-MP photos")
    ap.add_argument("--train-only", action="store_true", help="only the end-to-end runs on the 1300 training photos")
    args = ap.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # the lossy-output warning, expected here
    root = webface10_root()
    train, test = root / "train_clean", root / "test_clean"
    weights = [] if args.weights is None else ["--weights", str(args.weights)]
    commands = [("224x224 JPEG crops -> JPEG q95", []), ("224x224 JPEG crops -> PNG", ["--format", "png"])]
    end_to_end, in_process = [], []
    with tempfile.TemporaryDirectory(prefix="segue-throughput-") as tmp:
        tmp = Path(tmp)
        for k, (label, extra) in enumerate(commands):
            runs = [time_command([str(train), *extra, *weights], tmp / f"cli{k}_{r}") for r in range(args.repeat)]
            walls = [w for w, _, _ in runs]
            end_to_end.append(row(label, runs[-1][1]["summary"], statistics.median(walls),
                                  {"command": " ".join(["segue", "protect", "$SEGUE_WEBFACE10/train_clean", "-o", "OUT",
                                                        *extra, *weights, "-q"]),
                                   "seconds_each_run": [round(w, 3) for w in walls],
                                   "cpu_stolen_each_run": [st for _, _, st in runs],
                                   "run_only_images_per_second": runs[-1][1]["summary"]["images_per_second"]}))
            print(end_to_end[-1], flush=True)
        generator, _ = load_generator(args.weights, "cpu")
        if not args.train_only:
            shutil.copytree(test, tmp / "crops224")
            for p in (tmp / "crops224").rglob("*.jpg"):
                dst = tmp / "crops112" / p.relative_to(tmp / "crops224").with_suffix(".png")
                dst.parent.mkdir(parents=True, exist_ok=True)
                Image.open(p).convert("RGB").resize((112, 112), Image.BILINEAR).save(dst)
            make_big_photos(sorted(test.rglob("*.jpg")), tmp / "photos12mp", args.big)
            cases = [
                ("224x224 JPEG crops -> JPEG q95", "crops224", {}),
                ("224x224 JPEG crops -> PNG", "crops224", {"output_format": "png"}),
                ("112x112 PNG crops -> PNG", "crops112", {}),
                ("4000x3000 JPEG photos, faces detected -> JPEG q95", "photos12mp", {}),
                ("4000x3000 JPEG photos, --full-image -> JPEG q95", "photos12mp", {"region": "full"}),
            ]
            for k, (label, folder, extra) in enumerate(cases):
                report = protect_folder(generator, tmp / folder, tmp / f"out{k}", ProtectOptions(**extra), progress=False)
                in_process.append(row(label, report["summary"], report["summary"]["seconds"]))
                print(in_process[-1], flush=True)
    opts = ProtectOptions()
    fwd, fwd_lanes = bare_forward(generator, 112, opts.batch_size), bare_forward_lanes(generator, 112, opts.batch_size)
    threads = torch.get_num_threads()
    for r in end_to_end + in_process:
        r["ratio_to_bare_forward"] = round(r["images_per_second"] / fwd, 2)
    cmd = "python benchmarks/throughput.py" + "".join(f" {a}" for a in sys.argv[1:])
    payload = {"command": cmd, "cpu_cores": os.cpu_count(), "torch_threads": threads, "batch_size": opts.batch_size,
               "workers": opts.workers, "ssim_every": DEFAULT_SSIM_EVERY, "visibility_every": DEFAULT_VISIBILITY_EVERY,
               "png_level": opts.png_level,
               "end_to_end_start_up_included": end_to_end, "in_process_start_up_excluded": in_process,
               "generator_forward_112_images_per_second": round(fwd, 1),
               "generator_forward_112_two_lanes_images_per_second": round(fwd_lanes, 1)}
    header = ("| input -> output | images | no face found | seconds | images/s | ratio to bare G forward | PSNR dB "
              "| SSIM (photos) | L-inf /255 |")

    def line(r: dict) -> str:
        return (f"| {r['input']} | {r['images']} | {r['faces_missed']} | {r['seconds']:.2f} | {r['images_per_second']:.1f} "
                f"| {r['ratio_to_bare_forward']:.2f} | {r['psnr_mean']} | {r['ssim_mean']} ({r['ssim_photos']}) "
                f"| {r['linf_max']} |")

    md = [f"`{cmd}`", "",
          f"## `segue protect` throughput on this machine ({os.cpu_count()} CPU cores, {threads} torch threads, "
          f"batch {opts.batch_size}, {opts.workers} lanes, SSIM on every {DEFAULT_SSIM_EVERY}th photo, "
          f"visibility on every {DEFAULT_VISIBILITY_EVERY}th, "
          f"PNG at zlib level {opts.png_level})", "",
          f"### End to end, start-up included: WebFace10's {end_to_end[0]['images']} training photos, process start "
          f"to exit (median of {args.repeat})", "",
          *[f"    {r['command']}" for r in end_to_end], "",
          header, "|---|---|---|---|---|---|---|---|---|", *map(line, end_to_end), ""]
    if in_process:
        md += ["### In process, start-up excluded (`protect_folder`'s own timing)", "",
               header, "|---|---|---|---|---|---|---|---|---|", *map(line, in_process), ""]
    md += [f"Bare generator forward at 112 px (batch {opts.batch_size}): {fwd:.1f} images/s in one call on "
           f"{threads} torch threads (the ratio's reference), {fwd_lanes:.1f} images/s as two threads of one torch "
           "thread each, side by side (how `segue protect` runs it). Seconds of each end-to-end run: "
           + "; ".join(f"{r['input']}: {', '.join(f'{s:.2f}' for s in r['seconds_each_run'])}" for r in end_to_end)
           + " (CPU time taken by the hypervisor meanwhile, /proc/stat steal: "
           + "; ".join(", ".join("n/a" if st is None else f"{100 * st:.1f}%" for st in r["cpu_stolen_each_run"])
                       for r in end_to_end)
           + "). PSNR and L-inf are measured on the decoded output file (for JPEG output they include the JPEG "
           "loss; for 12-MP photos PSNR is over the whole frame, so a face-only perturbation scores high); SSIM on "
           "the photos counted in brackets.", ""]
    write_results("throughput", payload, "\n".join(md))


if __name__ == "__main__":
    main()
