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
decodes it (Pillow's RGB reading; 16-bit grey scaled by 1/257): its L-inf over the whole image must
stay within eps for lossless outputs (PNG, TIFF, BMP, PPM, WebP from a lossless input) and within eps
plus :func:`segue.imageio.encoder_tolerance` for JPEG and lossy WebP. A file beyond that is refused
(an error, nothing written), as is one whose encoder dropped its alpha channel.

The report (``report.json``) has one row per file: ``psnr`` (dB, whole image) and ``linf`` (/255)
of every protected file, and ``ssim`` (:mod:`segue.quality`) of a sample: photos 1, 1+N, 1+2N, ...
of the plan (natural order of IN, whether or not already done), N = ``ProtectOptions.ssim_every``
(``--ssim-every``, default 64; 1: every photo, 0: none); the other rows have ``"ssim": null``, and
the summary's ``ssim_mean`` is the mean over its ``ssim_photos`` measured ones. SSIM is the one
metric that costs more than protecting a photo (about twice the generator), so it is sampled; the
L-inf check is exact on every file. PNG outputs are written at zlib level ``png_level``
(``--png-level``, default 1; lossless at every level, see :func:`segue.imageio.png_bytes`).

Where delta goes (``ProtectOptions.region``):

- ``full``: the whole frame, as the generator was trained on face crops.
- ``faces``: each face found by a detector, in a square crop with margin; photos without a
  face are copied through unchanged and listed as ``no_face``.
- ``auto`` (default): photos up to ``crop_max_side`` pixels are taken to be face crops
  (``full``), larger ones go through the detector (``faces``).

Each region is resized to the generator's training size in 8 bits, as the training photos were
(bilinear, antialiased: Pillow's ``BILINEAR``, :func:`to_work_size`), delta is computed there and
resized back (bilinear, in floats) to the region's own size. Bilinear resizing is a convex
combination of delta values and overlapping faces are clamped, so ||delta||_inf <= eps holds on
the output pixels.

Every engine (local threads in :func:`protect_folder`, Ray in :mod:`segue.ray_engine`, the web
app in :mod:`segue.serve`) calls the same :class:`Protector` and the generator always sees
batches of exactly ``batch_size`` crops (zero-padded), so a file's bytes do not depend on which
files shared its batch. The local engine runs ``workers`` lanes (threads), each taking one batch
at a time from decoding to writing with its share of torch's threads (on 2 cores: one each).

Modules: :mod:`~segue.protect.jobs` (options, one job per input, reading),
:mod:`~segue.protect.delta` (the generator, resizing, paste-back), :mod:`~segue.protect.protector`
(:class:`Protector`: one batch's work, the L-inf check), :mod:`~segue.protect.pipeline` (the local
engine's lanes), :mod:`~segue.protect.report` (``report.json``); the metrics are :mod:`segue.quality`'s.
"""

from segue.protect.delta import _fit  # noqa: F401  (segue.protect._fit, as before the split)
from segue.protect.delta import (add_deltas, frames_tensor, generator_deltas, generator_size, paste, perturb,
                                 protect_images, resize_all, to_work_size, union)
from segue.protect.jobs import (DEFAULT_PNG_LEVEL, DEFAULT_SSIM_EVERY, Job, ProtectOptions, load_job, plan_jobs,
                                prepare_run)
from segue.protect.pipeline import finish_and_write, protect_batch, protect_folder, settle_process
from segue.protect.protector import Protector
from segue.protect.report import build_report, report_error, summarize
from segue.quality import SSIM_MAX_PIXELS, quality_metrics

__all__ = ["DEFAULT_PNG_LEVEL", "DEFAULT_SSIM_EVERY", "SSIM_MAX_PIXELS", "Job", "ProtectOptions", "Protector", "add_deltas",
           "build_report", "finish_and_write", "frames_tensor", "generator_deltas", "generator_size", "load_job", "paste", "perturb",
           "plan_jobs", "prepare_run", "protect_batch", "protect_folder", "protect_images", "quality_metrics", "report_error",
           "resize_all", "settle_process", "summarize", "to_work_size", "union"]
