"""The perturbation generator G(x, code) -> delta of the paper's Fig. 1.

encoder -> concat(broadcast side-information code) -> conv back to C channels
-> 4 ResNet blocks -> decoder -> tanh, scaled to the L-inf budget eps.

Normalisation is GroupNorm(1, C), not InstanceNorm: the code enters as a spatially constant
map, so after a convolution it is a per-channel constant offset - exactly what InstanceNorm
subtracts. With InstanceNorm the generator provably ignores the side information (we
measured a 4e-8 difference between codes). BatchNorm keeps the offset but makes G's output
in training (batch statistics) differ from its output at protection time (running
statistics): the surrogate then learns one perturbation while G optimises another, and
training did not converge in our runs. GroupNorm(1, C) normalises each sample over all
channels, so per-channel code offsets survive and train and eval outputs are identical.

Scaling ``tanh`` by eps (instead of clipping a free output) keeps ||delta||_inf <= eps by
construction and keeps gradients alive at the boundary. Inputs of any size work: the image
is reflect-padded to a multiple of 4 (two stride-2 stages) and the output cropped back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segue.side_info import CODE_BITS, label_to_code


@dataclass
class GeneratorConfig:
    """Everything needed to rebuild a generator; stored next to its weights."""

    width: int = 32
    code_bits: int = CODE_BITS
    res_blocks: int = 4
    eps: float = 8 / 255
    in_channels: int = 3
    image_size: int | None = None  # the working resolution G was trained at (protect resizes to it)
    norm: str = "group"  # "group" (GroupNorm(1, C), batch-independent) or "batch"
    smooth: int = 1  # low-pass delta over smooth x smooth blocks (1 = off); see Generator.forward
    luma: bool = False  # one delta for all channels (brightness only): survives grayscale and chroma subsampling
    low_band: int = 0  # two-band delta: add a second part low-passed over low_band x low_band blocks (0 = off)
    low_band_luma: bool = False  # that second part as brightness only (see luma)
    low_band_blocks: bool = False  # that second part constant over grid-aligned blocks (JPEG's 8x8 grid), see _band
    low_band_eps: float = 0.0  # >0: the coarse band's own L-inf share of eps (the fine band gets the rest); 0: shared
    psnr_floor: float = 0.0  # >0: scale each image's delta down to at most this PSNR's RMS (dB); 0: L-inf only
    psnr_fine_only: bool = False  # with low_band_eps: meet psnr_floor by scaling the fine band alone, the coarse one kept whole
    code_blocks_eps: float = 0.0  # >0: add a fixed +-this brightness pattern per side label, constant over code_blocks blocks
    code_blocks: int = 8  # that pattern's block size (8: JPEG's own 8x8 grid at the working resolution)

    def __post_init__(self) -> None:
        # A split that leaves the fine band no budget, or one with no coarse band to split to,
        # would silently train something else than asked for.
        if self.low_band_eps and not (self.low_band and 0 < self.low_band_eps < self.eps):
            raise ValueError(f"low_band_eps {self.low_band_eps} needs low_band > 0 and 0 < low_band_eps < eps {self.eps}")
        if self.psnr_fine_only and not self.low_band_eps:
            raise ValueError("psnr_fine_only needs a fine band with its own tanh (low_band_eps)")
        if self.code_blocks_eps < 0 or self.code_blocks < 1:
            raise ValueError(f"code_blocks_eps {self.code_blocks_eps} must be >= 0 and code_blocks {self.code_blocks} >= 1")

    @property
    def out_channels(self) -> int:
        """The decoder's outputs: one set of C channels per band."""
        return self.in_channels * (2 if self.low_band else 1)

    def to_dict(self) -> dict:
        return asdict(self)


def _norm(kind: str, channels: int) -> nn.Module:
    """A normalisation that keeps the code's per-channel offset (never InstanceNorm, see above)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(1, channels)
    raise ValueError(f"unknown norm {kind!r}")


def _conv_block(cin: int, cout: int, kernel: int, norm: str, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, padding_mode="reflect" if stride == 1 else "zeros"),
        _norm(norm, cout),
        nn.ReLU(inplace=True),
    )


class ResBlock(nn.Module):
    """Two 3x3 convs with a skip: lets the code-conditioned features be refined, not replaced."""

    def __init__(self, channels: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
            _norm(norm, channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, padding_mode="reflect"),
            _norm(norm, channels),
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


def code_block_pattern(side_labels: torch.Tensor, size: tuple[int, int], block: int) -> torch.Tensor:
    """A fixed +-1 pattern per side label, ``(N,1,H,W)``, constant over ``block`` x ``block`` blocks.

    Seeded by the label alone (not by G's weights or the data), so the same label gets the same
    pattern in every run and on every machine; blocks start at the top-left like JPEG's grid.
    """
    h, w = size
    gh, gw = -(-h // block), -(-w // block)
    labels, index = side_labels.cpu().unique(return_inverse=True)  # one draw per distinct label, not per image
    signs = torch.stack([torch.randint(0, 2, (1, gh, gw), generator=torch.Generator().manual_seed(0x5E6E + int(label)),
                                       dtype=torch.float32) * 2 - 1 for label in labels.tolist()])
    return signs[index].repeat_interleave(block, -2).repeat_interleave(block, -1)[..., :h, :w]


class Generator(nn.Module):
    """Side-information guided perturbation generator (~100k parameters at width 32)."""

    def __init__(self, config: GeneratorConfig | None = None):
        super().__init__()
        self.config = config or GeneratorConfig()
        c, w, n = self.config.in_channels, self.config.width, self.config.norm
        self.encoder = nn.Sequential(
            _conv_block(c, w // 4, 7, n),
            _conv_block(w // 4, w // 2, 3, n, stride=2),
            _conv_block(w // 2, w, 3, n, stride=2),
        )
        self.fuse = _conv_block(w + self.config.code_bits, w, 3, n)
        self.blocks = nn.Sequential(*[ResBlock(w, n) for _ in range(self.config.res_blocks)])
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(w, w // 2, 3, stride=2, padding=1, output_padding=1),
            _norm(n, w // 2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(w // 2, w // 4, 3, stride=2, padding=1, output_padding=1),
            _norm(n, w // 4),
            nn.ReLU(inplace=True),
            nn.Conv2d(w // 4, self.config.out_channels, 7, padding=3, padding_mode="reflect"),
        )

    @property
    def eps(self) -> float:
        """The L-inf bound of the whole delta: G's own budget plus the side-label pattern's, if any."""
        return self.config.eps + self.config.code_blocks_eps

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
        delta = _band(out[:, :c], self.config.smooth, self.config.luma)
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
                return self._with_code_blocks(fine + coarse, side_labels)
            delta = delta + coarse
        return self._with_code_blocks(self.config.eps * torch.tanh(delta[..., :h, :w]), side_labels)

    def _with_code_blocks(self, delta: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        """Add the side label's fixed block pattern (if configured), then meet the PSNR floor.

        Why (issue 6): every block band G learned stayed well under its share (8x8 brightness RMS
        3.3-3.7/255 of 5/255), and JPEG q10 only held where delta was mostly such a band. A pattern
        fixed per side label (an LSP-style class-wise shortcut, on JPEG's 8x8 grid, brightness only)
        uses its whole share by construction and needs no training, so it transfers to unseen
        people like the code does. With a PSNR floor, G's part alone gives way (the pattern is kept
        whole), as psnr_fine_only does for a learned block band. Measured (session 13): on the
        shipped robust weights it did not help under JPEG q10 (39.5 % at +-5/255); kept as an
        option and a negative result, see the README.
        """
        if not self.config.code_blocks_eps:
            return self._within_psnr(delta)
        pattern = code_block_pattern(side_labels, delta.shape[-2:], self.config.code_blocks).to(delta)
        pattern = self.config.code_blocks_eps * pattern.expand_as(delta)
        if self.config.psnr_floor:
            delta = delta * self._fine_scale(delta, pattern)
        return self._within_psnr(delta + pattern)

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
        return 10 ** (-self.config.psnr_floor / 20)

    def _within_psnr(self, delta: torch.Tensor) -> torch.Tensor:
        """Scale each image's delta so its PSNR is at least ``psnr_floor`` (issue 6).

        Why: an L-inf budget alone let a larger-eps two-band G spend more than PSNR 30 dB allows;
        with the L2 cap in the forward pass G itself learns where to spend the RMS budget, and
        ``clip(x + delta)`` can only raise the PSNR further.
        """
        if not self.config.psnr_floor:
            return delta
        rms = delta.pow(2).mean((1, 2, 3)).add(1e-12).sqrt()
        return delta * (self._rms_cap / rms).clamp(max=1.0)[:, None, None, None]

    def protect(self, x: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        """Protected image ``clip(x + G(x), 0, 1)``."""
        return (x + self(x, side_labels)).clamp(0, 1)
