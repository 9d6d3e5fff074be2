"""What a protect run is asked to do: its options, one job per input file, and reading the inputs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from segue.data import IMAGE_SUFFIXES, natural_key
from segue.imageio import (DEFAULT_MAX_PIXELS, LOSSY_FORMATS, SAVE_FORMAT_BY_SUFFIX, BadImage, Photo, read_photo,
                           remove_stale_parts)
from segue.side_info import SideInfo
from segue.visibility import VisibilityBudget

# SSIM costs about twice the generator per photo (12 ms per 224-px photo on one core): it is measured on
# every 64th photo (2-3% of the run's time); PSNR and L-inf on every one.
DEFAULT_SSIM_EVERY = 64
# zlib level of PNG outputs (segue.imageio.png_bytes): on a 224-px protected photo 1.9 ms and 78 KiB,
# where Pillow's default (all five filters per row, level 6) takes 23 ms for 62 KiB.
DEFAULT_PNG_LEVEL = 1
# Visibility (HaarPSI + CIEDE2000, segue.visibility) costs ~12 ms per 224-px photo on one core, more than the
# generator: a generator's outputs are measured every 16th photo (its visibility varies little from photo
# to photo: docs/visibility.md), a per-photo protection's (the cloak) on every one. Every measured file
# beyond the protection's visibility budget is refused, as one beyond eps is.
DEFAULT_VISIBILITY_EVERY = 16


@dataclass
class ProtectOptions:
    """How a folder is protected (the options of ``segue protect --help``, which has each one's help).

    Args:
        label: one side label for every photo (None: one per subfolder; a flat folder is person 0).
        output_format: ``"keep"`` (each file's own format; lossless stays lossless) or ``"png"``.
        work_size: size G runs at (None: its training size; 0: each region's own size).
        batch_size, workers: photos per generator pass (16) and thread lanes (2).
        overwrite: redo outputs that already exist (default: keep them; they are written atomically).
        quality: JPEG / lossy-WebP quality (95).
        side_info: a :class:`segue.side_info.SideInfo` (pseudo-label generators bring their own).
        region, crop_max_side, face_margin, detector: what is perturbed: ``auto`` treats photos up to
            ``crop_max_side`` px as face crops and searches larger ones for faces (``dlib-hog``).
        keep_exif: keep EXIF (default: dropped).
        max_pixels: refuse larger images (decompression bombs).
        ssim_every: SSIM of every Nth photo in the report (PSNR and L-inf of every one).
        png_level: zlib level of PNG outputs (1).
        visibility_every: visibility of every Nth photo (None: every photo for a per-photo protection,
            ``DEFAULT_VISIBILITY_EVERY`` for a generator; 0: none).
        visibility_budget: a :class:`segue.visibility.VisibilityBudget` (None: the protection's own).

    Examples:
        >>> opts = ProtectOptions(output_format="png", ssim_every=1)
        >>> opts.region, opts.quality, opts.png_level
        ('auto', 95, 1)
    """

    label: int | None = None
    output_format: str = "keep"  # "keep" (each file's own format) or "png"
    work_size: int | None = None  # None: the generator's training size; 0: each region's own size
    batch_size: int = 16
    workers: int = 2  # lanes: threads that each take a batch from decoding to writing
    overwrite: bool = False
    quality: int = 95
    side_info: SideInfo | None = None  # labels from the photo itself (pseudo-labels): folders and label unused
    region: str = "auto"  # "auto", "faces" or "full"
    crop_max_side: int = 512  # "auto": photos up to this size are face crops
    face_margin: float = 0.5
    detector: str = "dlib-hog"
    keep_exif: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    ssim_every: int = DEFAULT_SSIM_EVERY  # SSIM of photos 1, 1+N, 1+2N, ... of the plan; 1: every photo, 0: none
    png_level: int = DEFAULT_PNG_LEVEL  # zlib level of PNG outputs (0-9; lossless at every level)
    visibility_every: int | None = None  # None: 1 for a per-photo protection, DEFAULT_VISIBILITY_EVERY for a generator
    visibility_budget: VisibilityBudget | None = None  # None: the protection's own (segue.visibility.budget_of)


@dataclass
class Job:
    """One photo to protect: where it is read from and written to, its side label, its place in the plan.

    Args:
        src, dst: input and output paths (``dst`` mirrors ``src`` under OUT).
        rel: the path relative to IN (what the report names).
        label: the photo's side label (its subfolder's person), or None.
        index: position in the plan (natural order of IN): picks the photos whose SSIM is measured.

    Examples:
        >>> from pathlib import Path
        >>> Job(Path("in/3/a.jpg"), Path("out/3/a.jpg"), "3/a.jpg", label=3).index
        0
    """
    src: Path
    dst: Path
    rel: str
    label: int | None
    index: int = 0  # position in the plan (natural order of IN): picks the photos whose SSIM is measured


def plan_jobs(in_dir: Path, out_dir: Path, opts: ProtectOptions) -> tuple[list[Job], list[dict]]:
    """Pair every input image with its output path and side label; explain what cannot be done.

    Files directly in IN get the label after the subfolders' (see :mod:`segue.protect`): they
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
        jobs.append(Job(src, dst, str(rel), label, len(jobs)))
    return jobs, errors


def prepare_run(in_dir: Path, out_dir: Path, opts: ProtectOptions) -> tuple[list[Job], list[Job], list[dict]]:
    """Jobs to do, jobs already done (kept unless ``overwrite``), and planning errors."""
    jobs, errors = plan_jobs(in_dir, out_dir, opts)
    remove_stale_parts(out_dir.resolve())
    if opts.output_format == "keep" and any(SAVE_FORMAT_BY_SUFFIX.get(j.dst.suffix.lower()) in LOSSY_FORMATS for j in jobs):
        warnings.warn("writing lossy JPEG/WebP output (quality %d; lossless WebP stays lossless): re-encoding "
                      "weakens the protection; --format png keeps all of it" % opts.quality, stacklevel=3)
    done = [j for j in jobs if j.dst.exists() and not opts.overwrite]
    return [j for j in jobs if not (j.dst.exists() and not opts.overwrite)], done, errors


def load_job(job: Job, opts: ProtectOptions, data: bytes | None = None) -> tuple[Job, Photo | None, str | None]:
    """Decode one input (from its path, or from ``data`` already read); a bad file becomes a
    one-line reason instead of an exception."""
    try:
        return job, read_photo(job.src if data is None else data, opts.max_pixels, opts.keep_exif), None
    except BadImage as exc:
        return job, None, str(exc)
    except Exception as exc:  # anything unforeseen is still one line, and the run goes on
        return job, None, f"{type(exc).__name__}: {exc}".splitlines()[0]
