"""The perturbation generator G(x, code) -> delta of the paper's Fig. 1.

encoder -> concat(broadcast side-information code) -> conv back to C channels
-> 4 ResNet blocks -> decoder -> tanh, scaled to the L-inf budget eps.

Normalisation is GroupNorm(1, C), not InstanceNorm: the code enters as a spatially constant
map, so after a convolution it is a per-channel constant offset - exactly what InstanceNorm
subtracts. With InstanceNorm the generator provably ignores the side information (we
measured a 4e-8 difference between codes). BatchNorm keeps the offset but makes G's output
in training (batch statistics) differ from its output at protection time (running
statistics): the surrogate then learns one perturbation while G optimises another, and
training did not converge in our runs (that variant: ``experiments/generator_variants.py``).
GroupNorm(1, C) normalises each sample over all channels, so per-channel code offsets survive
and train and eval outputs are identical.

Scaling ``tanh`` by eps (instead of clipping a free output) keeps ||delta||_inf <= eps by
construction and keeps gradients alive at the boundary. Inputs of any size work: the image
is reflect-padded to a multiple of 4 (two stride-2 stages) and the output cropped back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from segue.quality import rms_cap, within_psnr
from segue.side_info import CODE_BITS, label_to_code


@dataclass
class GeneratorConfig:
    """Everything needed to rebuild a generator; stored next to its weights.

    Only what a shipped generator (or a recipe stage that makes one, configs/recipes/) uses; the
    options that lost (BatchNorm, a brightness-only single band, a fixed side-label pattern) are in
    ``experiments/generator_variants.py``, and ``segue.checkpoint`` drops them from old weights files
    where they are at the value every shipped generator had.

    Args:
        width: channels after the encoder (32; the tests use 16).
        code_bits: bits of the side label's binary code (16: up to 65,536 people).
        res_blocks: ResNet blocks after the code is fused in (4, as the paper).
        eps: L-inf budget of delta, in [0, 1] units (8/255).
        in_channels: 3 (RGB).
        image_size: the size G was trained at; ``segue protect`` runs G at it (None: any size).
        smooth: low-pass the delta over ``smooth`` x ``smooth`` blocks (1 = off).
        low_band, low_band_luma, low_band_blocks, low_band_eps: the two-band delta of the robust
            generators (a coarse band summed with the fine one; 0 = off).
        psnr_floor, psnr_fine_only: scale each image's delta down to at least this PSNR in dB
            (``robust_rem``: 30), optionally the fine band only.

    Examples:
        >>> cfg = GeneratorConfig(eps=16 / 255, psnr_floor=30.0)
        >>> round(cfg.eps * 255), cfg.width, cfg.code_bits
        (16, 32, 16)
    """

    # Fields that decide the layers: a generator can only start from weights with the same ones.
    LAYER_FIELDS: ClassVar[tuple[str, ...]] = ("width", "code_bits", "res_blocks", "in_channels")

    width: int = 32
    code_bits: int = CODE_BITS
    res_blocks: int = 4
    eps: float = 8 / 255
    in_channels: int = 3
    image_size: int | None = None  # the working resolution G was trained at (protect resizes to it)
    smooth: int = 1  # low-pass delta over smooth x smooth blocks (1 = off; 4: the first stage of the robust recipe)
    low_band: int = 0  # two-band delta: add a second part low-passed over low_band x low_band blocks (0 = off)
    low_band_luma: bool = False  # that second part as brightness only: survives grayscale and chroma subsampling
    low_band_blocks: bool = False  # that second part constant over grid-aligned blocks (JPEG's 8x8 grid), see _band
    low_band_eps: float = 0.0  # >0: the coarse band's own L-inf share of eps (the fine band gets the rest); 0: shared
    psnr_floor: float = 0.0  # >0: scale each image's delta down to at most this PSNR's RMS (dB); 0: L-inf only
    psnr_fine_only: bool = False  # with low_band_eps: meet psnr_floor by scaling the fine band alone, the coarse one kept whole

    def __post_init__(self) -> None:
        # A split that leaves the fine band no budget, or one with no coarse band to split to,
        # would silently train something else than asked for.
        if self.low_band_eps and not (self.low_band and 0 < self.low_band_eps < self.eps):
            raise ValueError(f"low_band_eps {self.low_band_eps} needs low_band > 0 and 0 < low_band_eps < eps {self.eps}")
        if self.psnr_fine_only and not self.low_band_eps:
            raise ValueError("psnr_fine_only needs a fine band with its own tanh (low_band_eps)")

    @property
    def out_channels(self) -> int:
        """The decoder's outputs: one set of C channels per band."""
        return self.in_channels * (2 if self.low_band else 1)

    def fine_band_shape(self) -> tuple[int, bool]:
        """(low-pass block size, brightness-only) of the first band: what a single-band start must match."""
        return self.smooth, False

    def coarse_band_shape(self) -> tuple[int, bool]:
        """The same for the second band (``low_band``)."""
        return self.low_band, self.low_band_luma

    def to_dict(self) -> dict:
        return asdict(self)


def group_norm(channels: int) -> nn.Module:
    """GroupNorm(1, C): keeps the code's per-channel offset and is batch-independent (see above)."""
    return nn.GroupNorm(1, channels)


Norm = Callable[[int], nn.Module]


def _conv_block(cin: int, cout: int, kernel: int, norm: Norm, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, padding_mode="reflect" if stride == 1 else "zeros"),
        norm(cout),
        nn.ReLU(inplace=True),
    )


class ResBlock(nn.Module):
    """Two 3x3 convs with a skip: lets the code-conditioned features be refined, not replaced.

    Args:
        channels: feature channels (in = out).
        norm: the normalisation builder (``group_norm``).

    Shape:
        ``(N,C,H,W)`` -> ``(N,C,H,W)``.

    Examples:
        >>> import torch
        >>> ResBlock(8, group_norm)(torch.rand(2, 8, 5, 5)).shape
        torch.Size([2, 8, 5, 5])
    """

    def __init__(self, channels: int, norm: Norm):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
            norm(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
            norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _band(out: torch.Tensor, smooth: int, luma: bool, blocks: bool = False) -> torch.Tensor:
    """One band of delta before tanh: low-passed over ``smooth`` blocks and/or made brightness-only.

    Our extensions (issue 6). ``smooth`` keeps only frequencies below 1/smooth of Nyquist, so that
    delta survives downscaling by up to that factor (box average, then bilinear back up). ``luma``:
    grayscale weights sum to 1, so gray(x + d) = gray(x) + d for a d equal in every channel, and
    JPEG keeps brightness at a finer scale than colour. ``blocks``: repeat each average over its
    block instead of the smooth upsample; with ``smooth`` 8 (or 16) the blocks are JPEG's own
    8x8 blocks from the top-left, so all of that part is DC, the coefficient JPEG quantises
    least: a brightness-only part kept ~0.9 of itself through PIL JPEG q10 where a smooth one
    kept ~0.6 (correlation, 112 px WebFace10, see the README).
    """
    if smooth > 1:
        low = F.avg_pool2d(out, smooth, ceil_mode=True)
        if blocks:
            out = F.interpolate(low, scale_factor=smooth, mode="nearest")[..., : out.shape[-2], : out.shape[-1]]
        else:
            out = F.interpolate(low, size=out.shape[-2:], mode="bilinear", align_corners=False)
    if luma:
        out = out.mean(1, keepdim=True).expand_as(out)
    return out


class Generator(nn.Module):
    """Side-information guided perturbation generator (~100k parameters at width 32): paper Fig. 1.

    Encoder (three convolutions, /4) -> the side label's ``code_bits``-bit binary code concatenated at
    every position -> ``res_blocks`` ResNet blocks -> decoder (x4) -> ``eps * tanh``. One code for all
    of a person's photos is what makes the noise a per-person shortcut a classifier learns instead of
    the face; protecting is this one forward pass.

    Args:
        config: layer sizes and budget (:class:`GeneratorConfig`; default: the shipped generators').

    Shape:
        ``forward(x (N,3,H,W) in [0,1], side_labels (N,) int)`` -> delta ``(N,3,H,W)``,
        ``|delta| <= eps``; any H, W (padded to a multiple of 4 inside, cropped back).
        ``protect(x, side_labels)`` -> ``clip(x + delta, 0, 1)``, same shape.

    Examples:
        >>> import torch
        >>> g = Generator(GeneratorConfig(width=16)).eval()
        >>> x, people = torch.rand(2, 3, 30, 36), torch.tensor([0, 1])
        >>> delta = g(x, people)
        >>> delta.shape, bool(delta.abs().max() <= g.eps)
        (torch.Size([2, 3, 30, 36]), True)
        >>> g.protect(x, people).shape
        torch.Size([2, 3, 30, 36])
    """

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = config or GeneratorConfig()
        c, w, n = self.config.in_channels, self.config.width, self.norm_layer
        self.encoder = nn.Sequential(
            _conv_block(c, w // 4, 7, n),
            _conv_block(w // 4, w // 2, 3, n, stride=2),
            _conv_block(w // 2, w, 3, n, stride=2),
        )
        self.fuse = _conv_block(w + self.config.code_bits, w, 3, n)
        self.blocks = nn.Sequential(*[ResBlock(w, n) for _ in range(self.config.res_blocks)])
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(w, w // 2, 3, stride=2, padding=1, output_padding=1),
            n(w // 2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(w // 2, w // 4, 3, stride=2, padding=1, output_padding=1),
            n(w // 4),
            nn.ReLU(inplace=True),
            nn.Conv2d(w // 4, self.config.out_channels, 7, padding=3, padding_mode="reflect"),
        )

    def norm_layer(self, channels: int) -> nn.Module:
        """The normalisation after every convolution: GroupNorm(1, C), never InstanceNorm (see above)."""
        return group_norm(channels)

    @property
    def eps(self) -> float:
        """The L-inf bound of the whole delta."""
        return self.config.eps

    def forward(self, x: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        """Perturbation delta for images ``x`` in [0,1], shape exactly ``x.shape``."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        mode = "reflect" if min(h, w) > max(ph, pw) else "replicate"
        z = F.pad(x * 2 - 1, (0, pw, 0, ph), mode=mode) if (ph or pw) else x * 2 - 1
        feat = self.encoder(z)
        code = label_to_code(side_labels.to(x.device), self.config.code_bits).to(feat.dtype)
        code_map = code[:, :, None, None].expand(-1, -1, *feat.shape[-2:])
        feat = self.fuse(torch.cat([feat, code_map], dim=1))
        out = self.decoder(self.blocks(feat))
        c = self.config.in_channels
        delta = self.fine_band(out[:, :c])
        if self.config.low_band:
            # Our extension (issue 6): two bands summed before tanh. Each countermeasure removes a
            # different part of delta (downscale/blur/JPEG-10 the fine pixels, grayscale the colour),
            # so G gets a fine part and a coarse part and learns, through the distortion layer,
            # how to share the one L-inf budget between them.
            coarse = _band(out[:, c:], self.config.low_band, self.config.low_band_luma, self.config.low_band_blocks)
            if self.config.low_band_eps:
                # A fixed split (issue 6): with one shared tanh G left the coarse band small (it kept
                # ~0.3 of delta through JPEG q10); its own budget lets it use all of that share.
                fine_eps = self.config.eps - self.config.low_band_eps
                fine = fine_eps * torch.tanh(delta[..., :h, :w])
                coarse = self.config.low_band_eps * torch.tanh(coarse[..., :h, :w])
                if self.config.psnr_fine_only and self.config.psnr_floor:
                    fine = fine * self._fine_scale(fine, coarse)
                return self.finish(fine + coarse, side_labels)
            delta = delta + coarse
        return self.finish(self.config.eps * torch.tanh(delta[..., :h, :w]), side_labels)

    def fine_band(self, out: torch.Tensor) -> torch.Tensor:
        """The first band before tanh: the decoder's output, low-passed with ``smooth`` > 1."""
        return _band(out, self.config.smooth, False)

    def finish(self, delta: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        """The last step of every delta: meet the PSNR floor, if one is set."""
        return self._within_psnr(delta)

    def _fine_scale(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """Per image, the largest s <= 1 with rms(s * fine + coarse) <= the psnr_floor's RMS.

        Why (issue 6): a JPEG-robust block band needs its whole share, so the fine band alone
        gives way; s solves s^2 |f|^2 + 2 s <f,c> + |c|^2 = cap^2 (0 if the coarse band alone
        is over the cap, which _within_psnr then scales).
        """
        cap2 = self._rms_cap ** 2
        ff = fine.pow(2).mean((1, 2, 3)).add(1e-12)
        fc = (fine * coarse).mean((1, 2, 3))
        cc = coarse.pow(2).mean((1, 2, 3))
        s = (-fc + (fc.pow(2) - ff * (cc - cap2)).clamp(min=0).add(1e-12).sqrt()) / ff
        return s.clamp(0.0, 1.0)[:, None, None, None]

    @property
    def _rms_cap(self) -> float:
        """The largest RMS of delta (in [0,1] units) that keeps PSNR >= psnr_floor."""
        return rms_cap(self.config.psnr_floor)

    def _within_psnr(self, delta: torch.Tensor) -> torch.Tensor:
        """Scale each image's delta so its PSNR is at least ``psnr_floor`` (issue 6).

        Why: an L-inf budget alone let a larger-eps two-band G spend more than PSNR 30 dB allows;
        with the L2 cap in the forward pass G itself learns where to spend the RMS budget, and
        ``clip(x + delta)`` can only raise the PSNR further.
        """
        return within_psnr(delta, self.config.psnr_floor) if self.config.psnr_floor else delta

    def protect(self, x: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        """Protected image ``clip(x + G(x), 0, 1)``."""
        return (x + self(x, side_labels)).clamp(0, 1)
