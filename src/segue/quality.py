"""Image quality metrics, one definition for every caller: PSNR, SSIM and L-inf.

Two representations, the same metrics:

- 8-bit photos (``(H,W,3)`` uint8 arrays): what ``segue protect`` measures between an input and
  its decoded output file (:func:`quality_metrics`);
- float sets (``(N,C,H,W)`` tensors in [0,1]): what the benchmark measures between a clean and a
  protected training set (:func:`set_quality`, behind :func:`segue.benchmark.sets.image_quality`).

PSNR is in dB over the whole image (``10 log10(1 / MSE)``, pixels in [0,1]); SSIM is kornia's
(Gaussian 11x11 window, sigma 1.5, reflect padding, mean over pixels and channels); L-inf is in
/255 steps.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import torch

SSIM_WINDOW = 11
SSIM_MAX_PIXELS = 4_000_000  # SSIM of larger regions is skipped (reported as null): it costs more than protecting
_CHUNK = 1 << 20  # elements per step of diff_stats: a 12-MP photo is measured without a 36M-element temporary


def rms_cap(psnr_floor: float) -> float:
    """The largest RMS of a delta (in [0,1] units) that keeps PSNR >= ``psnr_floor`` dB."""
    return 10 ** (-psnr_floor / 20)


def rms(delta: torch.Tensor) -> torch.Tensor:
    """``(N,)``: the RMS of each image's ``(N,C,H,W)`` delta."""
    return delta.pow(2).mean((1, 2, 3)).add(1e-12).sqrt()


def within_rms(delta: torch.Tensor, radius: float | torch.Tensor) -> torch.Tensor:
    """Each image's ``(N,C,H,W)`` delta scaled down (never up) to RMS <= ``radius`` (a number or ``(N,)``)."""
    return delta * (radius / rms(delta)).clamp(max=1.0)[:, None, None, None]


def within_psnr(delta: torch.Tensor, psnr_floor: float) -> torch.Tensor:
    """Each image's ``(N,C,H,W)`` delta scaled down (never up) to PSNR >= ``psnr_floor``."""
    return within_rms(delta, rms_cap(psnr_floor))


def psnr(mse: float) -> float:
    """PSNR in dB of a mean squared error over pixels in [0,1] (``inf`` for identical images)."""
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


def diff_stats(before: np.ndarray, after: np.ndarray) -> tuple[int, int]:
    """L-inf (in /255 steps) and the sum of squared differences of two uint8 arrays of one shape.

    Exact integers, in chunks of uint8 (``|a - b| = max(a, b) - min(a, b)``, no signed copy of
    the image): the L-inf check of every written file costs a fraction of its decoding.
    """
    a, b = before.reshape(-1), after.reshape(-1)
    linf, sse = 0, 0
    for start in range(0, len(a), _CHUNK):
        x, y = a[start : start + _CHUNK], b[start : start + _CHUNK]
        d = np.maximum(x, y)
        d -= np.minimum(x, y)
        if len(d):
            linf = max(linf, int(d.max()))
            sse += int(np.square(d, dtype=np.uint16).sum(dtype=np.uint64))  # 255^2 fits 16 bits
    return linf, sse


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of each image of two ``(N,C,H,W)`` batches in [0,1] (kornia, 11x11 Gaussian window)."""
    import kornia.metrics  # imported on first use: protect measures SSIM on a sample of photos

    return kornia.metrics.ssim(a, b, SSIM_WINDOW).flatten(1).mean(1)


def ssim_uint8(before: np.ndarray, after: np.ndarray) -> float | None:
    """SSIM of two ``(H,W,3)`` uint8 images (5 decimals); ``None`` if smaller than the window or over
    ``SSIM_MAX_PIXELS``."""
    h, w = before.shape[:2]
    if min(h, w) < SSIM_WINDOW or h * w > SSIM_MAX_PIXELS:
        return None
    # contiguous NCHW: kornia's SSIM is 3x slower on the permuted view
    a = torch.from_numpy(np.ascontiguousarray(before.transpose(2, 0, 1)))[None].float() / 255
    b = torch.from_numpy(np.ascontiguousarray(after.transpose(2, 0, 1)))[None].float() / 255
    return round(float(ssim(a, b)[0]), 5)


def quality_metrics(before: np.ndarray, after: np.ndarray, region=None, with_ssim: bool = True) -> dict:
    """PSNR (dB), SSIM and L-inf (/255) of an 8-bit photo and its changed copy, over ``region``
    ``(x0, y0, x1, y1)`` (default: the whole image); SSIM is ``None`` unless ``with_ssim``.

    Pixels outside ``region`` are taken to be unchanged: PSNR is still that of the whole image.
    """
    h, w = before.shape[:2]
    x0, y0, x1, y1 = region or (0, 0, w, h)
    a, b = before[y0:y1, x0:x1], after[y0:y1, x0:x1]
    linf, sse = diff_stats(a, b)
    return {"psnr": round(psnr(sse / (h * w * 3) / 255**2), 3), "ssim": ssim_uint8(a, b) if with_ssim else None,
            "linf": linf}


def set_quality(clean: torch.Tensor, protected: torch.Tensor, batch: int = 64) -> dict:
    """Mean PSNR (dB, finite images only) and SSIM, max L-inf in /255 steps, and the median HaarPSI and
    CIEDE2000 p95 (:func:`segue.visibility.visibility_terms`, the measure a written file is held to) of
    two ``(N,C,H,W)`` sets in [0,1]."""
    from segue.visibility import visibility_terms

    psnrs, ssims, haar, de95 = [], [], [], []
    for start in range(0, len(clean), batch):
        a, b = clean[start : start + batch], protected[start : start + batch]
        mse = ((a - b) ** 2).flatten(1).mean(1)
        psnrs += [psnr(m) for m in mse.tolist() if m > 0]
        if min(a.shape[-2:]) >= SSIM_WINDOW:
            ssims += ssim(a, b).tolist()
        if a.shape[1] == 3:
            hp, _, p95 = visibility_terms(a, b)
            haar += [h for h in hp.tolist() if h == h]
            de95 += p95.tolist()
    linf = int(((clean - protected).abs().max() * 255).round().item()) if len(clean) else 0
    return {
        "psnr_mean": round(statistics.mean(psnrs), 3) if psnrs else None,
        "ssim_mean": round(statistics.mean(ssims), 5) if ssims else None,
        "linf_max_255": linf,
        "haarpsi_median": round(statistics.median(haar), 4) if haar else None,
        "delta_e_p95_median": round(statistics.median(de95), 3) if de95 else None,
    }
