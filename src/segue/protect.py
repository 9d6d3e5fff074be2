"""Protect: one generator forward pass per batch over a folder of photos.

The output tree mirrors the input tree with the same file names and formats (``--format png``
converts; lossy output is warned about, because JPEG destroys part of delta). The input is
only ever read. Each file is handled on its own: a file that cannot be read gets a one-line
error in the log and in ``report.json``, and the run goes on.

Side labels (who is in a photo) come from the tree: each subfolder of IN is one person (label =
its index in natural order), and the files directly in IN are one more person, after them
(label = the number of subfolders; so a flat folder is one person, label 0). ``--label N`` gives
every photo label N; pseudo-label generators label each face themselves.

Every written file is decoded again and measured against its input as :func:`segue.imageio.read_photo`
decodes it (Pillow's RGB reading; 16-bit grey scaled by 1/257): its L-inf must stay within eps
for lossless outputs (PNG, TIFF, BMP, PPM, WebP from a lossless input) and within eps plus
:func:`segue.imageio.encoder_tolerance` for JPEG and lossy WebP. A file beyond that is refused
(an error, nothing written), as is one whose encoder dropped its alpha channel.

Where delta goes (``ProtectOptions.region``):

- ``full``: the whole frame, as the generator was trained on face crops.
- ``faces``: each face found by a detector, in a square crop with margin; photos without a
  face are copied through unchanged and listed as ``no_face``.
- ``auto`` (default): photos up to ``crop_max_side`` pixels are taken to be face crops
  (``full``), larger ones go through the detector (``faces``).

Each region is resized to the generator's training size, delta is computed there and resized
back (bilinear) to the region's own size. Bilinear resizing is a convex combination of delta
values and overlapping faces are clamped, so ||delta||_inf <= eps holds on the output pixels.

Every engine (local threads here, Ray in :mod:`segue.ray_engine`) calls the same
:class:`Protector` and the generator always sees batches of exactly ``batch_size`` crops
(zero-padded), so a file's bytes do not depend on which files shared its batch.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import kornia.metrics
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from segue.data import IMAGE_SUFFIXES, natural_key
from segue.faces import Box, FaceDetector, create_detector, crop_around
from segue.generator import Generator
from segue.imageio import (DEFAULT_MAX_PIXELS, LOSSY_FORMATS, SAVE_FORMAT_BY_SUFFIX, BadImage, Photo, encode_bytes,
                           encoder_tolerance, read_photo, remove_stale_parts, to_uint8, write_atomic)
from segue.side_info import SideInfo

SSIM_MAX_PIXELS = 4_000_000  # SSIM of larger regions is skipped (reported as null): it costs more than protecting


@dataclass
class ProtectOptions:
    """How a folder is protected (see ``segue protect --help``)."""

    label: int | None = None
    output_format: str = "keep"  # "keep" (each file's own format) or "png"
    work_size: int | None = None  # None: the generator's training size; 0: each region's own size
    batch_size: int = 16
    workers: int = 2
    overwrite: bool = False
    quality: int = 95
    side_info: SideInfo | None = None  # labels from the photo itself (pseudo-labels): folders and label unused
    region: str = "auto"  # "auto", "faces" or "full"
    crop_max_side: int = 512  # "auto": photos up to this size are face crops
    face_margin: float = 0.5
    detector: str = "dlib-hog"
    keep_exif: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass
class Job:
    src: Path
    dst: Path
    rel: str
    label: int | None


def plan_jobs(in_dir: Path, out_dir: Path, opts: ProtectOptions) -> tuple[list[Job], list[dict]]:
    """Pair every input image with its output path and side label; explain what cannot be done.

    Files directly in IN get the label after the subfolders' (see the module docstring): they
    are protected as one more person rather than refused, so a flat folder needs no ``--label``.
    """
    in_dir, out_dir = in_dir.resolve(), out_dir.resolve()
    if not in_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {in_dir}")
    if out_dir == in_dir or in_dir in out_dir.parents:
        raise ValueError("OUT must not be IN or lie inside it (IN is never modified)")
    classes = sorted((d.name for d in in_dir.iterdir() if d.is_dir()), key=natural_key)
    jobs, errors, claimed = [], [], {}
    for src in sorted(in_dir.rglob("*"), key=lambda p: natural_key(str(p))):
        if src.suffix.lower() not in IMAGE_SUFFIXES or src.is_dir():
            continue
        rel = src.relative_to(in_dir)
        if opts.side_info is not None:
            label = None  # assigned from the photo when it is loaded
        elif opts.label is not None:
            label = opts.label
        else:
            label = classes.index(rel.parts[0]) if len(rel.parts) > 1 else len(classes)
        dst = out_dir / (rel if opts.output_format == "keep" else rel.with_suffix(".png"))
        if dst in claimed:
            errors.append({"input": str(rel), "error": f"output name {dst.name} is already taken by {claimed[dst]}"})
            continue
        claimed[dst] = str(rel)
        jobs.append(Job(src, dst, str(rel), label))
    return jobs, errors


def resize_all(images: list[torch.Tensor], size: int) -> torch.Tensor:
    """Photos of any sizes as one ``(N,3,size,size)`` batch (bilinear, antialiased)."""
    return torch.stack([
        x if x.shape[-2:] == (size, size)
        else F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        for x in images
    ])


def generator_deltas(generator: Generator, x: torch.Tensor, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
    """delta for ``x`` in chunks of exactly ``batch_size`` (zero-padded).

    CPU convolutions may pick different kernels for different batch sizes (we measured
    5e-8 differences between batches of 3 and 8), which flips a few rounded pixels; a fixed
    chunk size makes every image's result independent of its neighbours.
    """
    device = next(generator.parameters()).device
    out = []
    for start in range(0, len(x), batch_size):
        xb, yb = x[start : start + batch_size], labels[start : start + batch_size]
        n = len(xb)
        if n < batch_size:
            xb = torch.cat([xb, xb.new_zeros(batch_size - n, *xb.shape[1:])])
            yb = torch.cat([yb, yb.new_zeros(batch_size - n)])
        out.append(generator(xb.to(device), yb.to(device))[:n].cpu())
    return torch.cat(out)


def perturb(generator: Generator, images: list[torch.Tensor], labels: torch.Tensor, work_size: int | None,
            small: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Protected versions of whole images of any sizes (in-memory; no face detection)."""
    if not work_size:
        return [generator.protect(x[None].to(next(generator.parameters()).device), labels[i : i + 1])[0].cpu()
                for i, x in enumerate(images)]
    small = resize_all(images, work_size) if small is None else small
    deltas = generator_deltas(generator, small, labels, max(len(images), 1))
    return [(x + _fit(d, x.shape[-2:])).clamp(0, 1) for x, d in zip(images, deltas)]


def _fit(delta: torch.Tensor, size) -> torch.Tensor:
    """Resize a ``(3,h,w)`` delta to ``size`` (bilinear: stays within its own value range)."""
    if delta.shape[-2:] == tuple(size):
        return delta
    return F.interpolate(delta[None], size=tuple(size), mode="bilinear", align_corners=False)[0]


def quality_metrics(before: np.ndarray, after: np.ndarray, region: Box | None = None) -> dict:
    """PSNR (dB, whole image), SSIM (over ``region``, null above 4 MP) and L-inf (/255 steps).

    Pixels outside ``region`` are known to be unchanged, so only the region is compared.
    """
    h, w = before.shape[:2]
    x0, y0, x1, y1 = region or (0, 0, w, h)
    a8, b8 = before[y0:y1, x0:x1], after[y0:y1, x0:x1]
    diff = a8.astype(np.int16) - b8.astype(np.int16)
    linf = int(np.abs(diff).max(initial=0))
    mse = float(np.square(diff, dtype=np.float64).sum()) / (h * w * 3) / 255**2
    psnr = float("inf") if mse == 0 else 10 * np.log10(1 / mse)
    ssim = None
    if min(a8.shape[:2]) >= 11 and a8.shape[0] * a8.shape[1] <= SSIM_MAX_PIXELS:
        # contiguous NCHW: kornia's SSIM is 3x slower on the permuted view
        a = torch.from_numpy(a8).permute(2, 0, 1)[None].float().contiguous() / 255
        b = torch.from_numpy(b8).permute(2, 0, 1)[None].float().contiguous() / 255
        ssim = round(float(kornia.metrics.ssim(a, b, 11).mean()), 5)
    return {"psnr": round(psnr, 3), "ssim": ssim, "linf": linf}


class Protector:
    """The per-photo work every engine shares: regions, generator, paste-back, encode, metrics."""

    def __init__(self, generator: Generator, opts: ProtectOptions, detector: FaceDetector | None = None):
        self.generator, self.opts = generator.eval(), opts
        self.work_size = opts.work_size if opts.work_size is not None else generator_size(generator)
        self._detector = detector

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = create_detector(self.opts.detector)
        return self._detector

    def regions(self, photo: Photo) -> list[Box] | None:
        """Crops to perturb; ``None`` means the whole frame, ``[]`` that no face was found."""
        h, w = photo.rgb.shape[:2]
        region = self.opts.region
        if region == "full" or (region == "auto" and max(h, w) <= self.opts.crop_max_side):
            return None
        if region not in ("auto", "faces"):
            raise ValueError(f"unknown region {region!r} (auto, faces or full)")
        return [crop_around(b, w, h, self.opts.face_margin) for b in self.detector.detect(photo.rgb)]

    @torch.inference_mode()
    def perturb(self, items: list[tuple[Job, Photo]]) -> list[tuple[np.ndarray | None, list[Box] | None]]:
        """Protected pixels (``None`` where no face was found) and the regions used, per photo."""
        plans = [self.regions(photo) for _, photo in items]
        crops, owners = [], []
        for i, ((job, photo), boxes) in enumerate(zip(items, plans)):
            h, w = photo.rgb.shape[:2]
            for box in boxes if boxes is not None else [(0, 0, w, h)]:
                x0, y0, x1, y1 = box
                crops.append(torch.from_numpy(photo.rgb[y0:y1, x0:x1]).permute(2, 0, 1).float() / 255)
                owners.append((i, box))
        if not crops:
            return [(None, b) for b in plans]
        labels = self._labels(items, owners, crops)
        if self.work_size:
            deltas = list(generator_deltas(self.generator, resize_all(crops, self.work_size), labels,
                                           self.opts.batch_size))
        else:  # each crop at its own size, one at a time
            deltas = [generator_deltas(self.generator, c[None], labels[k : k + 1], 1)[0] for k, c in enumerate(crops)]
        pieces: dict[int, list[tuple[Box, torch.Tensor]]] = {}
        for (i, box), d in zip(owners, deltas):
            pieces.setdefault(i, []).append((box, d))
        eps = self.generator.eps
        return [(paste(photo.rgb, pieces[i], eps) if i in pieces else None, plans[i])
                for i, (_, photo) in enumerate(items)]

    def _labels(self, items, owners, crops) -> torch.Tensor:
        if self.opts.side_info is None:
            return torch.tensor([items[i][0].label for i, _ in owners])
        # pseudo-labels: embed each crop as G sees it (training size); the label is per face
        size = self.work_size or generator_size(self.generator) or 112
        labels = self.opts.side_info.assign(resize_all(crops, size))
        for (i, _), lab in zip(owners, labels.tolist()):
            items[i][0].label = lab
        return labels

    @property
    def eps255(self) -> int:
        """eps in /255 steps: a pixel moved by at most eps and rounded moves by at most its ceiling."""
        return math.ceil(self.generator.eps * 255 - 1e-6)

    def linf_limit(self, fmt: str, photo: Photo) -> int:
        """The largest L-inf (/255) a written file may have: eps, plus the encoder's tolerance if lossy."""
        return self.eps255 + (encoder_tolerance(self.opts.quality) if photo.output_is_lossy(fmt) else 0)

    def finish(self, job: Job, photo: Photo, protected: np.ndarray | None, boxes: list[Box] | None) -> tuple[bytes, dict]:
        """The output file's bytes and its report row.

        The bytes are decoded again and measured against the input, so the row reports what the
        user gets; beyond :meth:`linf_limit`, or with the alpha channel lost, the file is refused
        with :class:`BadImage` (a report line saying "L-inf 254" is no protection).
        """
        fmt = SAVE_FORMAT_BY_SUFFIX.get(job.dst.suffix.lower(), "PNG")
        row = {"input": job.rel, "output": job.dst.name, "label": job.label,
               "region": "full" if boxes is None else "faces", "faces": None if boxes is None else len(boxes)}
        if photo.notes:
            row["notes"] = photo.notes
        if protected is None:  # no face: nothing to protect, the photo passes through unchanged
            same_format = photo.format == fmt
            data = photo.raw if same_format else encode_bytes(photo, photo.rgb, fmt, self.opts.quality)
            return data, {**row, "status": "no_face", "psnr": None, "ssim": None, "linf": 0}
        data = encode_bytes(photo, protected, fmt, self.opts.quality)
        back, lossy = read_photo(data, max_pixels=2**62), photo.output_is_lossy(fmt)
        # a lossy encoder changes the whole frame; a lossless one only the regions (SSIM is costly)
        metrics = quality_metrics(photo.rgb, back.rgb, union(boxes) if boxes and not lossy else None)
        metrics["linf"] = linf = int(np.abs(back.rgb.astype(np.int16) - photo.rgb).max(initial=0))
        limit = self.linf_limit(fmt, photo)
        if linf > limit:
            allowed = f"eps {self.eps255}" + (f" + {fmt} q{self.opts.quality} tolerance {limit - self.eps255}" if lossy else "")
            raise BadImage(f"output not written: L-inf {linf}/255 exceeds the {limit}/255 allowed ({allowed})")
        if photo.alpha is not None and fmt != "JPEG" and (back.alpha is None or not np.array_equal(back.alpha, photo.alpha)):
            raise BadImage(f"output not written: the {fmt} encoder does not keep the alpha channel; --format png keeps it")
        if boxes:
            row["boxes"] = [list(b) for b in boxes]
        return data, {**row, "status": "protected", **metrics}

    def protect(self, items: list[tuple[Job, Photo]]) -> list[tuple[bytes, dict]]:
        """Bytes and report row for each photo: the one code path of every engine."""
        return [self.finish(job, photo, out, boxes) for (job, photo), (out, boxes) in zip(items, self.perturb(items))]


def union(boxes: list[Box]) -> Box:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def paste(rgb: np.ndarray, pieces: list[tuple[Box, torch.Tensor]], eps: float) -> np.ndarray:
    """Add each region's delta (resized to the region) to the photo; overlaps are clamped to eps."""
    ux0, uy0, ux1, uy1 = union([b for b, _ in pieces])
    canvas = torch.zeros(3, uy1 - uy0, ux1 - ux0)
    for (x0, y0, x1, y1), d in pieces:
        canvas[:, y0 - uy0 : y1 - uy0, x0 - ux0 : x1 - ux0] += _fit(d, (y1 - y0, x1 - x0))
    region = torch.from_numpy(rgb[uy0:uy1, ux0:ux1]).permute(2, 0, 1).float() / 255
    out = rgb.copy()
    out[uy0:uy1, ux0:ux1] = to_uint8(region + canvas.clamp_(-eps, eps))
    return out


def load_job(job: Job, opts: ProtectOptions, data: bytes | None = None) -> tuple[Job, Photo | None, str | None]:
    """Decode one input (from its path, or from ``data`` already read); a bad file becomes a
    one-line reason instead of an exception."""
    try:
        return job, read_photo(job.src if data is None else data, opts.max_pixels, opts.keep_exif), None
    except BadImage as exc:
        return job, None, str(exc)
    except Exception as exc:  # anything unforeseen is still one line, and the run goes on
        return job, None, f"{type(exc).__name__}: {exc}".splitlines()[0]


def finish_and_write(protector: Protector, job: Job, photo: Photo, out: np.ndarray | None, boxes) -> dict:
    """Encode and atomically write one output (with its input's permissions); a failure here is that
    file's error row, not the run's."""
    try:
        data, row = protector.finish(job, photo, out, boxes)
        write_atomic(data, job.dst, like=job.src)
        return row
    except BadImage as exc:  # refused by the L-inf check
        return {"input": job.rel, "status": "error", "error": str(exc)}
    except Exception as exc:
        return {"input": job.rel, "status": "error", "error": f"cannot write output: {type(exc).__name__}: {exc}".splitlines()[0]}


def prepare_run(in_dir: Path, out_dir: Path, opts: ProtectOptions) -> tuple[list[Job], list[Job], list[dict]]:
    """Jobs to do, jobs already done (kept unless ``overwrite``), and planning errors."""
    jobs, errors = plan_jobs(in_dir, out_dir, opts)
    remove_stale_parts(out_dir.resolve())
    if opts.output_format == "keep" and any(SAVE_FORMAT_BY_SUFFIX.get(j.dst.suffix.lower()) in LOSSY_FORMATS for j in jobs):
        warnings.warn("writing lossy JPEG/WebP output (quality %d; lossless WebP stays lossless): re-encoding "
                      "weakens the protection; --format png keeps all of it" % opts.quality, stacklevel=3)
    done = [j for j in jobs if j.dst.exists() and not opts.overwrite]
    return [j for j in jobs if not (j.dst.exists() and not opts.overwrite)], done, errors


def report_error(errors: list[dict], rel: str, message: str) -> None:
    errors.append({"input": rel, "error": message})
    tqdm.write(f"segue: error: {rel}: {message}", file=sys.stderr)


def protect_folder(generator: Generator, in_dir: str | Path, out_dir: str | Path, opts: ProtectOptions | None = None,
                   progress: bool = True, detector: FaceDetector | None = None) -> dict:
    """Protect every image under ``in_dir`` into ``out_dir``; returns (and writes) the report.

    Labels: one per subfolder, the files directly in ``in_dir`` one more (a flat folder: 0).

    Decoding of the next batch and encoding of the last one run in threads while the
    generator works on the current one. Ctrl-C finishes the files being written, writes the
    report (``interrupted: true``) and stops; a rerun skips what is done.
    """
    opts = opts or ProtectOptions()
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    todo, done, errors = prepare_run(in_dir, out_dir, opts)
    protector = Protector(generator, opts, detector)
    results: list[dict] = []
    t0 = time.perf_counter()
    batches = [todo[i : i + opts.batch_size] for i in range(0, len(todo), opts.batch_size)]
    bar = tqdm(total=len(todo), desc="protect", unit="img", disable=not progress, file=sys.stderr)
    pool = ThreadPoolExecutor(max_workers=max(opts.workers, 1))
    saving: deque = deque()

    def drain(keep: int) -> None:
        while len(saving) > keep:
            results.append(saving.popleft().result())
            bar.update(1)

    interrupted = False
    try:
        loading = [pool.submit(load_job, j, opts) for j in batches[0]] if batches else []
        for k in range(len(batches)):
            loaded = [f.result() for f in loading]
            loading = [pool.submit(load_job, j, opts) for j in batches[k + 1]] if k + 1 < len(batches) else []
            good = [(j, p) for j, p, _ in loaded if p is not None]
            for j, _, e in loaded:
                if e is not None:
                    report_error(errors, j.rel, e)
                    bar.update(1)
            for (j, p), (out, boxes) in zip(good, protector.perturb(good) if good else []):
                saving.append(pool.submit(finish_and_write, protector, j, p, out, boxes))
            drain(2 * opts.batch_size)
        drain(0)
    except KeyboardInterrupt:
        interrupted = True
        for f in loading:
            f.cancel()
        while saving:  # files already being written are completed (atomically), the rest dropped
            f = saving.popleft()
            if not f.cancel():
                try:
                    results.append(f.result())
                except Exception:
                    pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    report = build_report(in_dir, out_dir, protector.work_size, results, errors, done, time.perf_counter() - t0,
                          engine="local", interrupted=interrupted)
    if interrupted:
        raise KeyboardInterrupt
    return report


def build_report(in_dir: Path, out_dir: Path, work_size, results: list[dict], errors: list[dict], done: list[Job],
                 seconds: float, engine: str, interrupted: bool = False) -> dict:
    """Assemble ``report.json`` (written atomically) from the rows of any engine."""
    for row in results:  # a per-file failure while encoding/writing is reported like a bad input
        if row.get("status") == "error":
            report_error(errors, row["input"], row["error"])
    results = sorted((r for r in results if r.get("status") != "error"), key=lambda r: natural_key(r["input"]))
    report = {
        "input": str(in_dir.resolve()),
        "output": str(out_dir.resolve()),
        "engine": engine,
        "work_size": work_size,
        "interrupted": interrupted,
        "files": results,
        "errors": sorted(errors, key=lambda e: natural_key(e["input"])),
        "no_face": [r["input"] for r in results if r["status"] == "no_face"],
        "skipped_existing": [j.rel for j in done],
        "summary": summarize(results, len(errors), seconds),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic((json.dumps(report, indent=2) + "\n").encode(), out_dir / "report.json")
    return report


def summarize(results: list[dict], n_errors: int, seconds: float) -> dict:
    """Mean quality and throughput of a protect run."""
    protected = [r for r in results if r["status"] == "protected"]

    def mean(key: str) -> float | None:
        vals = [r[key] for r in protected if r[key] is not None and np.isfinite(r[key])]
        return round(float(np.mean(vals)), 4) if vals else None

    return {
        "protected": len(protected),
        "no_face": len(results) - len(protected),
        "errors": n_errors,
        "psnr_mean": mean("psnr"),
        "ssim_mean": mean("ssim"),
        "linf_max": max((r["linf"] for r in protected), default=None),
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
