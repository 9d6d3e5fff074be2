"""The per-photo work every engine shares: regions, generator, paste-back, encode, the L-inf check, metrics."""

from __future__ import annotations

import math
import threading

import numpy as np
import torch

from segue.faces import Box, FaceDetector, create_detector, crop_around
from segue.generator import Generator
from segue.imageio import SAVE_FORMAT_BY_SUFFIX, BadImage, Photo, encode_bytes, encoder_tolerance, read_photo
from segue.protect.delta import add_deltas, frames_tensor, generator_deltas, generator_size, paste, to_work_size, union
from segue.protect.jobs import DEFAULT_VISIBILITY_EVERY, Job, ProtectOptions
from segue.quality import diff_stats, psnr, ssim_uint8
from segue.visibility import VisibilityBudget, budget_of, visibility_uint8

FRAME_PIXELS = 1 << 22  # whole frames resized and pasted together: 16 face crops of 224 px, one 12-MP photo


class Protector:
    """The per-photo work every engine shares: regions, generator, paste-back, encode, metrics.

    The local thread lanes (:func:`segue.protect.protect_folder`), the Ray engine and the web app
    all call it, so a photo is protected the same way whichever runs it.

    Args:
        generator: a loaded :class:`segue.generator.Generator` (:func:`segue.load_generator`).
        opts: :class:`ProtectOptions`.
        detector: a :class:`segue.faces.FaceDetector` (default: ``opts.detector``, one per thread).

    Shape:
        ``perturb([(Job, Photo), ...])`` -> one ``(rgb (H,W,3) uint8 or None, boxes or None)`` per
        photo: the protected pixels at the photo's own size (None: no face found).

    Examples:
        >>> import io
        >>> from pathlib import Path
        >>> import numpy as np
        >>> from PIL import Image
        >>> from segue.checkpoint import load_generator
        >>> from segue.imageio import read_photo
        >>> from segue.protect.jobs import Job
        >>> buf = io.BytesIO()
        >>> Image.fromarray(np.full((112, 96, 3), 128, np.uint8)).save(buf, "PNG")
        >>> protector = Protector(load_generator("default")[0], ProtectOptions(label=0))
        >>> job = Job(src=Path("face.png"), dst=Path("out/face.png"), rel="face.png", label=0)
        >>> [(rgb, boxes)] = protector.perturb([(job, read_photo(buf.getvalue()))])
        >>> rgb.shape, int(np.abs(rgb.astype(int) - 128).max()) <= 8
        ((112, 96, 3), True)
    """

    def __init__(self, generator: Generator, opts: ProtectOptions, detector: FaceDetector | None = None):
        self.generator, self.opts = generator.eval(), opts
        self.work_size = opts.work_size if opts.work_size is not None else generator_size(generator)
        self._detector = detector  # one given is shared by every thread, one at a time
        self._detector_lock = threading.Lock()
        self._local = threading.local()  # otherwise each thread creates its own
        self._side_info_lock = threading.Lock()  # pseudo-labels may embed with dlib: one thread at a time
        self.visibility_budget: VisibilityBudget = opts.visibility_budget or budget_of(generator)
        every = opts.visibility_every
        self.visibility_every = getattr(generator, "visibility_every", DEFAULT_VISIBILITY_EVERY) if every is None else every

    @property
    def detector(self) -> FaceDetector:
        if self._detector is not None:
            return self._detector
        if getattr(self._local, "detector", None) is None:
            self._local.detector = create_detector(self.opts.detector)
        return self._local.detector

    def detect(self, rgb: np.ndarray) -> list[Box]:
        """Faces in ``rgb``; safe from several threads (dlib's detector is not)."""
        if self._detector is None:
            return self.detector.detect(rgb)
        with self._detector_lock:
            return self._detector.detect(rgb)

    def regions(self, photo: Photo) -> list[Box] | None:
        """Crops to perturb; ``None`` means the whole frame, ``[]`` that no face was found."""
        h, w = photo.rgb.shape[:2]
        region = self.opts.region
        if region == "full" or (region == "auto" and max(h, w) <= self.opts.crop_max_side):
            return None
        if region not in ("auto", "faces"):
            raise ValueError(f"unknown region {region!r} (auto, faces or full)")
        return [crop_around(b, w, h, self.opts.face_margin) for b in self.detect(photo.rgb)]

    @torch.inference_mode()
    def perturb(self, items: list[tuple[Job, Photo]]) -> list[tuple[np.ndarray | None, list[Box] | None]]:
        """Protected pixels (``None`` where no face was found) and the regions used, per photo.

        Whole-frame photos of one size are resized (:func:`to_work_size`) and pasted
        (:func:`add_deltas`) together, up to ``FRAME_PIXELS`` pixels at a time; face crops one by
        one (:func:`paste`). A crop's values do not depend on its batch: each is resized on its
        own and the generator always sees chunks of ``batch_size``.
        """
        plans = [self.regions(photo) for _, photo in items]
        if not self.work_size:
            return self._perturb_native(items, plans)
        whole: dict[tuple, list[int]] = {}
        owners = []  # (photo, box) of each face crop
        for i, ((_, photo), boxes) in enumerate(zip(items, plans)):
            if boxes is None:
                whole.setdefault(photo.rgb.shape, []).append(i)
            owners += [(i, box) for box in boxes or []]
        groups = [idx[k : k + max(1, FRAME_PIXELS // (shape[0] * shape[1]))]  # 12-MP photos: one at a time
                  for shape, idx in whole.items() for k in range(0, len(idx), max(1, FRAME_PIXELS // (shape[0] * shape[1])))]
        parts = [to_work_size([items[i][1].rgb for i in idx], self.work_size) for idx in groups]
        parts += [to_work_size([items[i][1].rgb[y0:y1, x0:x1]], self.work_size) for i, (x0, y0, x1, y1) in owners]
        if not parts:
            return [(None, b) for b in plans]
        small = torch.cat(parts)
        order = [i for idx in groups for i in idx] + [i for i, _ in owners]  # the photo of each row of small
        deltas = generator_deltas(self.generator, small, self._labels(items, order, small), self.opts.batch_size)
        eps, out, k = self.generator.eps, [None] * len(items), 0
        for idx in groups:
            frames = frames_tensor([items[i][1].rgb for i in idx])
            for i, protected in zip(idx, add_deltas(frames, deltas[k : k + len(idx)], eps)):
                out[i] = protected
            k += len(idx)
        pieces: dict[int, list[tuple[Box, torch.Tensor]]] = {}
        for (i, box), d in zip(owners, deltas[k:]):
            pieces.setdefault(i, []).append((box, d))
        for i, p in pieces.items():
            out[i] = paste(items[i][1].rgb, p, eps)
        return list(zip(out, plans))

    def _perturb_native(self, items, plans) -> list[tuple[np.ndarray | None, list[Box] | None]]:
        """``work_size`` 0: each crop at its own size, one at a time."""
        crops, owners = [], []
        for i, ((_, photo), boxes) in enumerate(zip(items, plans)):
            h, w = photo.rgb.shape[:2]
            for box in boxes if boxes is not None else [(0, 0, w, h)]:
                x0, y0, x1, y1 = box
                crops.append(photo.rgb[y0:y1, x0:x1])
                owners.append((i, box))
        if not crops:
            return [(None, b) for b in plans]
        order = [i for i, _ in owners]
        size = generator_size(self.generator) or 112
        labels = self._labels(items, order, None if self.opts.side_info is None else
                              torch.cat([to_work_size([c], size) for c in crops]))
        deltas = [generator_deltas(self.generator, torch.from_numpy(c).permute(2, 0, 1)[None].float() / 255,
                                   labels[k : k + 1], 1)[0] for k, c in enumerate(crops)]
        pieces: dict[int, list[tuple[Box, torch.Tensor]]] = {}
        for (i, box), d in zip(owners, deltas):
            pieces.setdefault(i, []).append((box, d))
        eps = self.generator.eps
        return [(paste(photo.rgb, pieces[i], eps) if i in pieces else None, plans[i])
                for i, (_, photo) in enumerate(items)]

    def _labels(self, items, order: list[int], small: torch.Tensor | None) -> torch.Tensor:
        """Side label of each crop (``order``: its photo); pseudo-labels from the crops as G sees them (``small``)."""
        if self.opts.side_info is None:
            return torch.tensor([items[i][0].label for i in order])
        with self._side_info_lock:
            labels = self.opts.side_info.assign(small)  # the label is per face
        for i, lab in zip(order, labels.tolist()):
            items[i][0].label = lab
        return labels

    @property
    def eps255(self) -> int:
        """eps in /255 steps: a pixel moved by at most eps and rounded moves by at most its ceiling."""
        return math.ceil(self.generator.eps * 255 - 1e-6)

    def linf_limit(self, fmt: str, photo: Photo) -> int:
        """The largest L-inf (/255) a written file may have: eps, plus the encoder's tolerance if lossy."""
        return self.eps255 + (encoder_tolerance(self.opts.quality) if photo.output_is_lossy(fmt) else 0)

    def measures_ssim(self, job: Job) -> bool:
        """Whether this photo's SSIM is measured: every ``ssim_every``-th of the plan, from the first."""
        every = self.opts.ssim_every
        return bool(every) and job.index % every == 0

    def measures_visibility(self, job: Job) -> bool:
        """Whether this photo's visibility is measured (and held to the budget): every ``visibility_every``-th."""
        return bool(self.visibility_every) and job.index % self.visibility_every == 0

    def finish(self, job: Job, photo: Photo, protected: np.ndarray | None, boxes: list[Box] | None) -> tuple[bytes, dict]:
        """The output file's bytes and its report row.

        The bytes are decoded again and measured against the input over the whole frame, so the
        row reports what the user gets; beyond :meth:`linf_limit`, or with the alpha channel lost,
        the file is refused with :class:`BadImage` (a report line saying "L-inf 254" is no protection);
        so is a measured file beyond the protection's :class:`VisibilityBudget`, measured at the file's
        native size over the protected region (the union of the face boxes, or the whole frame).
        """
        fmt = SAVE_FORMAT_BY_SUFFIX.get(job.dst.suffix.lower(), "PNG")
        row = {"input": job.rel, "output": job.dst.name, "label": job.label,
               "region": "full" if boxes is None else "faces", "faces": None if boxes is None else len(boxes)}
        if photo.notes:
            row["notes"] = photo.notes
        if protected is None:  # no face: nothing to protect, the photo passes through unchanged
            same_format = photo.format == fmt
            data = photo.raw if same_format else encode_bytes(photo, photo.rgb, fmt, self.opts.quality,
                                                              self.opts.png_level)
            return data, {**row, "status": "no_face", "psnr": None, "ssim": None, "linf": 0, "visibility": None}
        data = encode_bytes(photo, protected, fmt, self.opts.quality, self.opts.png_level)
        back, lossy = read_photo(data, max_pixels=2**62), photo.output_is_lossy(fmt)
        if back.rgb.shape != photo.rgb.shape:
            raise BadImage(f"output not written: the {fmt} encoder changed the image's size")
        linf, sse = diff_stats(photo.rgb, back.rgb)
        limit = self.linf_limit(fmt, photo)
        if linf > limit:
            allowed = f"eps {self.eps255}" + (f" + {fmt} q{self.opts.quality} tolerance {limit - self.eps255}" if lossy else "")
            raise BadImage(f"output not written: L-inf {linf}/255 exceeds the {limit}/255 allowed ({allowed})")
        if photo.alpha is not None and fmt != "JPEG" and (back.alpha is None or not np.array_equal(back.alpha, photo.alpha)):
            raise BadImage(f"output not written: the {fmt} encoder does not keep the alpha channel; --format png keeps it")
        h, w = photo.rgb.shape[:2]
        vis = None
        if self.measures_visibility(job):
            x0, y0, x1, y1 = union(boxes) if boxes else (0, 0, w, h)
            vis = visibility_uint8(photo.rgb[y0:y1, x0:x1], back.rgb[y0:y1, x0:x1])
            broken = self.visibility_budget.violations(vis)
            if broken:
                raise BadImage(f"output not written: more visible than the protection's budget ({'; '.join(broken)})")
        ssim = None
        if self.measures_ssim(job):  # a lossy encoder changes the whole frame; a lossless one only the regions
            x0, y0, x1, y1 = union(boxes) if boxes and not lossy else (0, 0, w, h)
            ssim = ssim_uint8(photo.rgb[y0:y1, x0:x1], back.rgb[y0:y1, x0:x1])
        if boxes:
            row["boxes"] = [list(b) for b in boxes]
        return data, {**row, "status": "protected", "psnr": round(psnr(sse / (h * w * 3) / 255**2), 3), "ssim": ssim,
                      "linf": linf, "linf_allowed": limit, "visibility": vis}

    def protect(self, items: list[tuple[Job, Photo]]) -> list[tuple[bytes, dict]]:
        """Bytes and report row for each photo: the one code path of every engine."""
        return [self.finish(job, photo, out, boxes) for (job, photo), (out, boxes) in zip(items, self.perturb(items))]
