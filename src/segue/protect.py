"""Protect: one generator forward pass per batch over a folder of photos.

The output tree mirrors the input tree with the same file names (lossless PNG by default;
a lossy format is opt-in and warned about, because JPEG destroys much of delta). The input
is only ever read. Each file is handled on its own: a file that cannot be read gets a
one-line error in the log and in ``report.json``, and the run goes on.

Photos are perturbed at the generator's training size: the photo is resized to it, delta is
computed there and resized back (bilinear) to the photo's own size. Bilinear resizing is a
convex combination of delta values, so ||delta||_inf <= eps still holds at full resolution,
and the pattern keeps the scale relative to the face that the generator was trained for.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import kornia.metrics
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from segue.data import IMAGE_SUFFIXES, natural_key
from segue.generator import Generator
from segue.side_info import SideInfo
from segue.imageio import LOSSY_FORMATS, SAVE_FORMAT_BY_SUFFIX, Photo, encode, read_photo, to_uint8, write_atomic


@dataclass
class ProtectOptions:
    """How a folder is protected (see ``segue protect --help``)."""

    label: int | None = None
    output_format: str = "png"  # "png" or "keep"
    work_size: int | None = None  # None: the generator's training size; 0: each photo's own size
    batch_size: int = 16
    workers: int = 2
    overwrite: bool = False
    quality: int = 95
    side_info: SideInfo | None = None  # labels from the photo itself (pseudo-labels): folders and label unused


@dataclass
class Job:
    src: Path
    dst: Path
    rel: str
    label: int | None


def plan_jobs(in_dir: Path, out_dir: Path, opts: ProtectOptions) -> tuple[list[Job], list[dict]]:
    """Pair every input image with its output path and side label; explain what cannot be done."""
    in_dir, out_dir = in_dir.resolve(), out_dir.resolve()
    if not in_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {in_dir}")
    if out_dir == in_dir or in_dir in out_dir.parents:
        raise ValueError("OUT must not be IN or lie inside it (IN is never modified)")
    classes = sorted((d.name for d in in_dir.iterdir() if d.is_dir()), key=natural_key)
    jobs, errors = [], []
    for src in sorted(in_dir.rglob("*"), key=lambda p: natural_key(str(p))):
        if not src.is_file() or src.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        rel = src.relative_to(in_dir)
        if opts.side_info is not None:
            label = None  # assigned from the photo when it is loaded
        elif opts.label is not None:
            label = opts.label
        elif len(rel.parts) > 1:
            label = classes.index(rel.parts[0])
        else:
            errors.append({"input": str(rel), "error": "no identity: file is not in a class subfolder; pass --label N"})
            continue
        keep_name = opts.output_format == "keep" or src.suffix.lower() == ".png"
        jobs.append(Job(src, out_dir / (rel if keep_name else rel.with_suffix(".png")), str(rel), label))
    return jobs, errors


def resize_all(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """Photos of any sizes as one ``(N,3,size,size)`` batch (bilinear, antialiased)."""
    return torch.stack([
        x if x.shape[-2:] == (size, size)
        else F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        for x in images
    ])


def perturb(generator: Generator, images: list[torch.Tensor], labels: torch.Tensor, work_size: int | None,
            small: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Protected versions of images of any sizes, batching the generator call at ``work_size``.

    ``small`` is the batch already resized to ``work_size``, if the caller has it.
    """
    device = next(generator.parameters()).device
    if not work_size:
        return [generator.protect(x[None].to(device), labels[i : i + 1].to(device))[0].cpu() for i, x in enumerate(images)]
    small = (resize_all(images, work_size) if small is None else small).to(device)
    deltas = generator(small, labels.to(device)).cpu()
    out = []
    for x, d in zip(images, deltas):
        if d.shape[-2:] != x.shape[-2:]:
            d = F.interpolate(d[None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
        out.append((x + d).clamp(0, 1))
    return out


def quality_metrics(before: np.ndarray, after: np.ndarray) -> dict:
    """PSNR (dB), SSIM and L-inf (in /255 steps) between two uint8 RGB arrays."""
    a = torch.from_numpy(before).permute(2, 0, 1)[None].float() / 255
    b = torch.from_numpy(after).permute(2, 0, 1)[None].float() / 255
    linf = int(np.abs(before.astype(np.int16) - after.astype(np.int16)).max())
    mse = torch.mean((a - b) ** 2).item()
    psnr = float("inf") if mse == 0 else float(kornia.metrics.psnr(a, b, 1.0))
    ssim = float(kornia.metrics.ssim(a, b, 11).mean()) if min(a.shape[-2:]) >= 11 else float("nan")
    return {"psnr": round(psnr, 3), "ssim": round(ssim, 5), "linf": linf}


def _load(job: Job) -> tuple[Job, Photo | None, str | None]:
    try:
        return job, read_photo(job.src), None
    except Exception as exc:  # one clear line per bad file; the run goes on
        return job, None, f"{type(exc).__name__}: {exc}".splitlines()[0]


def _save(job: Job, photo: Photo, protected: torch.Tensor, opts: ProtectOptions) -> dict:
    rgb = to_uint8(protected)
    image = encode(photo, rgb)
    fmt = SAVE_FORMAT_BY_SUFFIX.get(job.dst.suffix.lower(), "PNG")
    write_atomic(image, job.dst, fmt, photo.icc_profile, opts.quality)
    written = np.array(image.convert("RGB"), dtype=np.uint8)
    return {"input": job.rel, "output": str(job.dst.name), "label": job.label, **quality_metrics(photo.rgb, written)}


def protect_folder(generator: Generator, in_dir: str | Path, out_dir: str | Path, opts: ProtectOptions | None = None,
                   progress: bool = True) -> dict:
    """Protect every image under ``in_dir`` into ``out_dir``; returns (and writes) the report."""
    opts = opts or ProtectOptions()
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    jobs, errors = plan_jobs(in_dir, out_dir, opts)
    work_size = opts.work_size if opts.work_size is not None else generator_size(generator)
    if opts.output_format == "keep" and any(SAVE_FORMAT_BY_SUFFIX.get(j.dst.suffix.lower()) in LOSSY_FORMATS for j in jobs):
        warnings.warn("writing lossy JPEG/WebP output: re-encoding destroys much of the protection; prefer PNG", stacklevel=2)
    skipped = [j for j in jobs if j.dst.exists() and not opts.overwrite]
    todo = [j for j in jobs if not (j.dst.exists() and not opts.overwrite)]
    results: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), desc="protect", unit="img", disable=not progress, file=sys.stderr)
    with ThreadPoolExecutor(max_workers=max(opts.workers, 1)) as pool, torch.inference_mode():
        for start in range(0, len(todo), opts.batch_size):
            loaded = list(pool.map(_load, todo[start : start + opts.batch_size]))
            good = [(j, p) for j, p, e in loaded if p is not None]
            for j, _, e in loaded:
                if e is not None:
                    errors.append({"input": j.rel, "error": e})
                    tqdm.write(f"segue: error: {j.rel}: {e}", file=sys.stderr)
            if good:
                tensors = [p.tensor() for _, p in good]
                small = None
                if opts.side_info is not None:  # pseudo-labels: embed the photo as G sees it (training size)
                    small = resize_all(tensors, work_size or generator_size(generator) or 112)
                    for (j, _), lab in zip(good, opts.side_info.assign(small).tolist()):
                        j.label = lab
                labels = torch.tensor([j.label for j, _ in good])
                protected = perturb(generator, tensors, labels, work_size, small if work_size else None)
                results += list(pool.map(lambda a: _save(*a, opts), [(j, p, x) for (j, p), x in zip(good, protected)]))
            bar.update(len(loaded))
    bar.close()
    seconds = time.perf_counter() - t0
    report = {
        "input": str(in_dir.resolve()),
        "output": str(out_dir.resolve()),
        "work_size": work_size,
        "files": results,
        "errors": errors,
        "skipped_existing": [j.rel for j in skipped],
        "summary": summarize(results, len(errors), seconds),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".report.json.part"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out_dir / "report.json")
    return report


def summarize(results: list[dict], n_errors: int, seconds: float) -> dict:
    """Mean quality and throughput of a protect run."""
    def mean(key: str) -> float | None:
        vals = [r[key] for r in results if np.isfinite(r[key])]
        return round(float(np.mean(vals)), 4) if vals else None

    return {
        "protected": len(results),
        "errors": n_errors,
        "psnr_mean": mean("psnr"),
        "ssim_mean": mean("ssim"),
        "linf_max": max((r["linf"] for r in results), default=None),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(results) / seconds, 2) if seconds > 0 and results else None,
    }


def generator_size(generator: Generator) -> int | None:
    """The image size the generator was trained at (stored in its provenance), if known."""
    return generator.config.image_size


@torch.inference_mode()
def protect_images(generator: Generator, images: torch.Tensor, side_labels: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Protect an in-memory ``(N,3,H,W)`` set and quantise to 8 bits, as a saved PNG would be."""
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        xp = perturb(generator, list(x), side_labels[start : start + batch_size], generator_size(generator))
        out.append((torch.stack(xp) * 255).round() / 255)
    return torch.cat(out)
