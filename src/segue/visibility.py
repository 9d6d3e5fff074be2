"""How visible a protection is: HaarPSI and the CIEDE2000 colour difference, and a budget on both.

PSNR and SSIM did not see what people see in a protected face: at the same 30 dB the per-photo
cloak painted coloured swirls that anyone noticed, the 8/255 generator nothing (docs/gallery.md).
Two measures that need no downloaded weights do see it:

- **HaarPSI** (Reisenhofer et al., *A Haar wavelet-based perceptual similarity index*, 2018):
  1 = identical; structure and texture changes, the embossed patterns that grey perturbations
  leave. Written here in torch, as piq's ``haarpsi`` defines it (tests/test_visibility.py holds
  the two equal): piq imports torchvision, a second of start-up on every ``segue protect``.
- **CIEDE2000** (Sharma et al., 2005) per pixel on kornia's CIE Lab (sRGB, D65), between the two
  images each seen through a 3x3 box blur (the eye does not resolve colour pixel by pixel, as in
  S-CIELAB): its mean, and its 95th percentile, where a colour blotch shows and fine noise, which
  the blur averages away, does not. Checked against colour-science's ``delta_E_CIE2000`` in the tests.

A third measure is reported, not budgeted: **shading**, the 95th percentile of the change in CIE L*
between 1 and 4 px (a difference of Gaussians, :data:`SHADING_BAND`). HaarPSI's constant hides new
low-contrast structure on flat skin, and the darker eye sockets and deeper brows the perceptual cloak
draws there were seen by eye but not by the two measures above; this band leaves out the generator's
fine grid and any smooth tint (docs/visibility.md, where it is measured against the eye). Held to the
generator's on each photo, the cloak protected nobody on ORL people 0-19 (docs/attacks.md), so it is
reported for every file and is no bar.

:class:`VisibilityBudget` is the promise a protection declares, checked on the written file as
eps is (:class:`segue.protect.Protector`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

HAARPSI_C, HAARPSI_ALPHA, HAARPSI_SCALES = 30.0, 4.2, 3
MIN_SIDE = 2 ** (HAARPSI_SCALES + 1)  # HaarPSI's largest Haar filter; smaller images are not measured
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.5959, -0.2746, -0.3213], [0.2115, -0.5227, 0.3112]])


def _haar_kernels(scale: int) -> torch.Tensor:
    """``(2,1,k,k)``: the horizontal and vertical Haar filters of ``scale`` (k = 2^(scale+1))."""
    k = 2 ** (scale + 1)
    h = torch.full((k, k), 1.0 / k)
    h[k // 2:] *= -1
    return torch.stack([h, h.T])[:, None]


def _similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (2 * a * b + HAARPSI_C) / (a * a + b * b + HAARPSI_C)


def haar_features(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What HaarPSI compares of one ``(N,3,H,W)`` batch in [0,1]: ``|Haar coefficients|`` ``(N,6,h,w)``
    of the luminance at three scales, (horizontal, vertical) per scale, and ``|I|, |Q|`` ``(N,2,h,w)``,
    both after a 2x2 average (the viewing distance)."""
    if min(x.shape[-2:]) < MIN_SIDE:
        raise ValueError(f"HaarPSI needs images of at least {MIN_SIDE} px a side, got {tuple(x.shape[-2:])}")
    yiq = torch.einsum("ck,nkhw->nchw", _YIQ.to(x), x * 255)
    pad = max(yiq.shape[2] % 2, yiq.shape[3] % 2)
    yiq = F.avg_pool2d(F.pad(yiq, [0, pad, 0, pad]), 2)
    coeffs = []
    for scale in range(HAARPSI_SCALES):
        k = 2 ** (scale + 1)
        coeffs.append(F.conv2d(F.pad(yiq[:, :1], [k // 2 - 1, k // 2] * 2), _haar_kernels(scale).to(x)))
    return torch.cat(coeffs, 1).abs(), F.avg_pool2d(F.pad(yiq[:, 1:], [0, 1, 0, 1]), 2, stride=1).abs()


def haarpsi_of(fx: tuple[torch.Tensor, torch.Tensor], fy: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """HaarPSI ``(N,)`` from two batches' :func:`haar_features`."""
    (cx, iqx), (cy, iqy) = fx, fy
    weights = torch.maximum(cx[:, 4:], cy[:, 4:])
    sims = [_similarity(cx[:, (o, o + 2)], cy[:, (o, o + 2)]).mean(1, keepdim=True) for o in range(2)]
    weights = torch.cat([weights, weights.mean(1, keepdim=True)], 1)
    sims.append(_similarity(iqx, iqy).mean(1, keepdim=True))
    sim = torch.cat(sims, 1)
    tiny = torch.finfo(sim.dtype).eps
    score = (((sim * HAARPSI_ALPHA).sigmoid() * weights).sum((1, 2, 3)) + tiny) / (weights.sum((1, 2, 3)) + tiny)
    return (torch.logit(score) / HAARPSI_ALPHA) ** 2


def haarpsi(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """HaarPSI of each pair of two ``(N,3,H,W)`` RGB batches in [0,1] -> ``(N,)``; 1 = identical.

    Luminance: Haar coefficients at three scales after a 2x2 average (the viewing distance), the
    two finest compared, the coarsest as weights; chroma (I, Q of YIQ) compared after a 2x2
    average. ``H, W >= 16``.

    Examples:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> [round(v, 4) for v in haarpsi(x, x).tolist()]
        [1.0, 1.0]
        >>> bool(haarpsi(x, (x + 0.05 * torch.randn_like(x)).clamp(0, 1))[0] < 0.99)
        True
    """
    return haarpsi_of(haar_features(x), haar_features(y))


def ciede2000(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """CIEDE2000 colour difference of two ``(N,3,H,W)`` CIE Lab tensors -> ``(N,H,W)`` (kL = kC = kH = 1).

    Examples:
        >>> lab = torch.tensor([50.0, 2.6772, -79.7751]).view(1, 3, 1, 1)
        >>> ref = torch.tensor([50.0, 0.0, -82.7485]).view(1, 3, 1, 1)
        >>> round(float(ciede2000(lab, ref)), 4)  # Sharma et al.'s test pair 1
        2.0425
    """
    L1, a1, b1 = lab1.unbind(1)
    L2, a2, b2 = lab2.unbind(1)
    c_bar = (torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2
    g = 0.5 * (1 - torch.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = a1 * (1 + g), a2 * (1 + g)
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p = torch.atan2(b1, a1p) % (2 * math.pi)
    h2p = torch.atan2(b2, a2p) % (2 * math.pi)
    both = (c1p * c2p) != 0
    dh = h2p - h1p
    dh = torch.where(dh > math.pi, dh - 2 * math.pi, torch.where(dh < -math.pi, dh + 2 * math.pi, dh))
    dh = torch.where(both, dh, torch.zeros_like(dh))
    dL, dC = L2 - L1, c2p - c1p
    dH = 2 * torch.sqrt(c1p * c2p) * torch.sin(dh / 2)
    L_bar, cp_bar = (L1 + L2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = torch.where((h1p - h2p).abs() > math.pi, torch.where(h_sum < 2 * math.pi, h_sum + 2 * math.pi,
                                                                   h_sum - 2 * math.pi), h_sum) / 2
    h_bar = torch.where(both, h_bar, h_sum)
    t = (1 - 0.17 * torch.cos(h_bar - math.radians(30)) + 0.24 * torch.cos(2 * h_bar)
         + 0.32 * torch.cos(3 * h_bar + math.radians(6)) - 0.20 * torch.cos(4 * h_bar - math.radians(63)))
    s_l = 1 + 0.015 * (L_bar - 50) ** 2 / torch.sqrt(20 + (L_bar - 50) ** 2)
    s_c, s_h = 1 + 0.045 * cp_bar, 1 + 0.015 * cp_bar * t
    d_theta = math.radians(30) * torch.exp(-(((torch.rad2deg(h_bar) - 275) / 25) ** 2))
    r_t = -2 * torch.sqrt(cp_bar**7 / (cp_bar**7 + 25.0**7)) * torch.sin(2 * d_theta)
    return torch.sqrt((dL / s_l) ** 2 + (dC / s_c) ** 2 + (dH / s_h) ** 2 + r_t * (dC / s_c) * (dH / s_h))


def delta_e_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel CIEDE2000 between two ``(N,3,H,W)`` sRGB batches in [0,1] -> ``(N,H,W)``."""
    import kornia.color  # kornia is imported by torch users anyway; this keeps segue.visibility light

    return ciede2000(kornia.color.rgb_to_lab(x), kornia.color.rgb_to_lab(y))


def blur3(x: torch.Tensor) -> torch.Tensor:
    """A 3x3 box blur of ``(N,C,H,W)`` (edges: the mean of the pixels that exist)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def blurred_lab(x: torch.Tensor) -> torch.Tensor:
    """``(N,3,H,W)`` CIE Lab of the 3x3-blurred sRGB batch: what CIEDE2000 p95 and the shading compare."""
    import kornia.color

    return kornia.color.rgb_to_lab(blur3(x.float()))


@dataclass(frozen=True)
class Reference:
    """What :func:`visibility_terms` needs of the original photos, computed once: the projection of the
    perceptual cloak measures the same originals against ~100 candidates each (``Reference.of(x)``,
    then :meth:`terms`; ``select(idx)`` for a subset)."""

    haar: tuple[torch.Tensor, torch.Tensor] | None  # None below MIN_SIDE
    lab: torch.Tensor  # CIE Lab of the 3x3-blurred photos

    @classmethod
    def of(cls, x: torch.Tensor) -> "Reference":
        x = x.float()
        return cls(haar_features(x) if min(x.shape[-2:]) >= MIN_SIDE else None, blurred_lab(x))

    def select(self, idx: torch.Tensor) -> "Reference":
        return Reference(None if self.haar is None else (self.haar[0][idx], self.haar[1][idx]), self.lab[idx])

    def terms(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`visibility_terms` of the reference photos and ``y``."""
        return self.measure(y)[:3]

    def measure(self, y: torch.Tensor, shading: bool = False) -> tuple[torch.Tensor, ...]:
        """HaarPSI, CIEDE2000 mean and p95 of the reference photos and ``y``, and with ``shading`` their
        :func:`shading_of` too, from the one Lab conversion of ``y``."""
        y = y.float()
        lab_y = blurred_lab(y)
        de = ciede2000(self.lab, lab_y).flatten(1)
        hp = haarpsi_of(self.haar, haar_features(y)) if self.haar is not None else torch.full((len(y),), float("nan"))
        out = (hp, de.mean(1), torch.quantile(de, 0.95, dim=1))
        return out + (shading_of(self.lab[:, :1], lab_y[:, :1]),) if shading else out


def visibility_terms(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(N,)`` HaarPSI (NaN below ``MIN_SIDE``), CIEDE2000 mean and 95th percentile between the
    3x3-blurred images, of two ``(N,3,H,W)`` batches in [0,1]: what a file is measured with, as tensors
    (the perceptual cloak projects on them at every step, through a :class:`Reference`)."""
    return Reference.of(x).terms(y)


#: The band of :func:`shading_p95`, Gaussian sigmas in px: finer than the first is a fine grid such as
#: the generator's, coarser than the second a smooth tint.
SHADING_BAND = (1.0, 4.0)


def lightness(x: torch.Tensor) -> torch.Tensor:
    """``(N,1,H,W)`` CIE L* of the 3x3-blurred ``(N,3,H,W)`` sRGB batch (as :class:`Reference` keeps it)."""
    return blurred_lab(x)[:, :1]


def shading_of(l_x: torch.Tensor, l_y: torch.Tensor) -> torch.Tensor:
    """``(N,)`` the 95th percentile of ``|DoG(l_y - l_x)|`` over :data:`SHADING_BAND`, of two
    :func:`lightness` maps; NaN for images too small for the coarser Gaussian."""
    import kornia.filters

    k = 2 * round(3 * SHADING_BAND[1]) + 1
    if min(l_x.shape[-2:]) < k:
        return torch.full((len(l_x),), float("nan"))
    d = l_y - l_x
    blur = [kornia.filters.gaussian_blur2d(d, (2 * round(3 * s) + 1,) * 2, (s, s), border_type="reflect")
            for s in SHADING_BAND]
    return torch.quantile((blur[0] - blur[1]).abs().flatten(1), 0.95, dim=1)


def shading_p95(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(N,)`` mid-scale lightness change of ``y`` against ``x`` (:func:`shading_of`), in L* units."""
    return shading_of(lightness(x), lightness(y))


def visibility(x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """HaarPSI, the mean and 95th percentile of CIEDE2000 between the 3x3-blurred images
    (:func:`visibility_terms`) and the shading (:func:`shading_p95`, reported, no bar) of each pair of two
    ``(N,3,H,W)`` batches in [0,1], rounded, one dict per pair (None: too small to measure).

    Examples:
        >>> x = torch.rand(1, 3, 32, 32)
        >>> visibility(x, x)
        [{'haarpsi': 1.0, 'delta_e_mean': 0.0, 'delta_e_p95': 0.0, 'shading_p95': 0.0}]
    """
    return [{"haarpsi": round(float(h), 4) if h == h else None, "delta_e_mean": round(float(m), 3),
             "delta_e_p95": round(float(p), 3), "shading_p95": round(float(sh), 3) if sh == sh else None}
            for h, m, p, sh in zip(*Reference.of(x).measure(y, shading=True))]


def visibility_uint8(before: np.ndarray, after: np.ndarray) -> dict:
    """:func:`visibility` of two ``(H,W,3)`` uint8 images (a written file against its input)."""
    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].float() / 255

    return visibility(tensor(before), tensor(after))[0]


@dataclass(frozen=True)
class VisibilityBudget:
    """The most visible a written file may be: HaarPSI at least ``haarpsi_min``, CIEDE2000 p95
    at most ``delta_e_p95_max``. A protection declares one; a file beyond it is not written.

    Examples:
        >>> budget = VisibilityBudget(haarpsi_min=0.9, delta_e_p95_max=5.0)
        >>> budget.violations({"haarpsi": 0.95, "delta_e_mean": 1.0, "delta_e_p95": 6.2})
        ['CIEDE2000 p95 6.2 > 5.0']
        >>> budget.violations({"haarpsi": None, "delta_e_mean": 0.5, "delta_e_p95": 1.0})
        []
    """

    haarpsi_min: float
    delta_e_p95_max: float

    def violations(self, measured: dict) -> list[str]:
        """What ``measured`` (:func:`visibility`'s dict) breaks, in words; ``[]`` when within."""
        out = []
        if measured.get("haarpsi") is not None and measured["haarpsi"] < self.haarpsi_min:
            out.append(f"HaarPSI {measured['haarpsi']} < {self.haarpsi_min}")
        if measured["delta_e_p95"] > self.delta_e_p95_max:
            out.append(f"CIEDE2000 p95 {measured['delta_e_p95']} > {self.delta_e_p95_max}")
        return out

    def to_dict(self) -> dict:
        return asdict(self)


#: The bar every protection is held to: the default 8/255 generator's visibility, per written file.
#: Its worst file on validation photos (CelebA234 validation people, WebFace10 train, ORL; PNG
#: output: docs/visibility.md) rounded outward: HaarPSI 0.862 -> 0.85, CIEDE2000 p95 6.62 -> 7.0.
GENERATOR_VISIBILITY = VisibilityBudget(haarpsi_min=0.85, delta_e_p95_max=7.0)
#: What a protection that is *visible* declares (the cloak, ``robust``, ``robust_rem``): their worst
#: files on the same photos (HaarPSI 0.55, CIEDE2000 p95 13.4) rounded outward. Such a protection
#: is labelled visible wherever it is named (``segue list``, the CLI, the web page).
VISIBLE = VisibilityBudget(haarpsi_min=0.50, delta_e_p95_max=15.0)
#: Measures every file and refuses none: for the benchmarks and the gallery, which show what lies beyond.
UNLIMITED = VisibilityBudget(haarpsi_min=0.0, delta_e_p95_max=float("inf"))
#: The budgets by name (``segue protect --visibility-budget``).
BUDGETS = {"generator": GENERATOR_VISIBILITY, "visible": VISIBLE}


def budget_of(protection) -> VisibilityBudget:
    """The budget a protection declares (its ``visibility_budget``), else :data:`GENERATOR_VISIBILITY`."""
    return getattr(protection, "visibility_budget", None) or GENERATOR_VISIBILITY
