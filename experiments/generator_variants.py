"""Generator options that lost, on top of ``segue.generator`` (see experiments/README.md).

* ``norm: "batch"`` - BatchNorm instead of GroupNorm(1, C). It keeps the code's per-channel offset,
  but G's output in training (batch statistics) differs from its output at protection time (running
  statistics); training did not converge in our runs (docs/paper-differences.md).
* ``luma: true`` - the first (fine) band the same in every colour channel (brightness only), so it
  survives grayscale exactly. As a single low-passed band (``smooth: 4``,
  experiments/configs/robust_luma_112.yaml) it was robust but weak: 39-46.5 % under none, grayscale,
  JPEG q10 and downscale x0.25 (benchmarks/results/robust_gpu, ``segue_robust_luma``).
* ``code_blocks_eps: b`` / ``code_blocks`` - a fixed +-b brightness pattern per side label, constant
  over ``code_blocks`` x ``code_blocks`` blocks (JPEG's 8x8 grid), added to G's delta; with
  ``psnr_floor`` G's part alone gives way. On the shipped robust weights it did not help under JPEG q10
  (39.5 % at +-5/255 capped to PSNR 30.2 dB, vs 33.5 % without; benchmarks/results/robust_gpu,
  ``segue_2band_fdist_cb5p`` / ``_cb3``; docs/experiments/robustness.md).

``load_variant`` reads any generator file, also one the package refuses (a non-default removed
field); ``VariantGenerator`` with every option at its default is the package's ``Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file
from torch import nn

from segue.checkpoint import read_weights
from segue.generator import Generator, GeneratorConfig, group_norm


@dataclass
class VariantGeneratorConfig(GeneratorConfig):
    """``GeneratorConfig`` plus the options that left the package (defaults: the package's generator)."""

    LAYER_FIELDS: ClassVar[tuple[str, ...]] = GeneratorConfig.LAYER_FIELDS + ("norm",)

    norm: str = "group"  # "group" (GroupNorm(1, C), batch-independent) or "batch"
    luma: bool = False  # one fine-band delta for all channels (brightness only)
    code_blocks_eps: float = 0.0  # >0: add a fixed +-this brightness pattern per side label, constant over code_blocks blocks
    code_blocks: int = 8  # that pattern's block size (8: JPEG's own 8x8 grid at the working resolution)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.norm not in ("group", "batch"):
            raise ValueError(f"unknown norm {self.norm!r}")
        if self.code_blocks_eps < 0 or self.code_blocks < 1:
            raise ValueError(f"code_blocks_eps {self.code_blocks_eps} must be >= 0 and code_blocks {self.code_blocks} >= 1")

    def fine_band_shape(self) -> tuple[int, bool]:
        return self.smooth, self.luma


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


class VariantGenerator(Generator):
    """The package's generator with the options of :class:`VariantGeneratorConfig`."""

    config: VariantGeneratorConfig

    def __init__(self, config: VariantGeneratorConfig | None = None):
        super().__init__(config or VariantGeneratorConfig())

    def norm_layer(self, channels: int) -> nn.Module:
        return nn.BatchNorm2d(channels) if self.config.norm == "batch" else group_norm(channels)

    @property
    def eps(self) -> float:
        """The L-inf bound of the whole delta: G's own budget plus the side-label pattern's, if any."""
        return self.config.eps + self.config.code_blocks_eps

    def fine_band(self, out: torch.Tensor) -> torch.Tensor:
        out = super().fine_band(out)
        return out.mean(1, keepdim=True).expand_as(out) if self.config.luma else out

    def finish(self, delta: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        """Add the side label's fixed block pattern (if configured), then meet the PSNR floor.

        Why (issue 6): every block band G learned stayed well under its share (8x8 brightness RMS
        3.3-3.7/255 of 5/255), and JPEG q10 only held where delta was mostly such a band. A pattern
        fixed per side label (an LSP-style class-wise shortcut, on JPEG's 8x8 grid, brightness only)
        uses its whole share by construction and needs no training. With a PSNR floor, G's part alone
        gives way (the pattern is kept whole), as psnr_fine_only does for a learned block band.
        """
        if not self.config.code_blocks_eps:
            return super().finish(delta, side_labels)
        pattern = code_block_pattern(side_labels, delta.shape[-2:], self.config.code_blocks).to(delta)
        pattern = self.config.code_blocks_eps * pattern.expand_as(delta)
        if self.config.psnr_floor:
            delta = delta * self._fine_scale(delta, pattern)
        return super().finish(delta + pattern, side_labels)


def load_variant(path: str | Path | None = None, device: str | torch.device = "cpu",
                 overrides: dict[str, Any] | None = None) -> tuple[VariantGenerator, dict[str, Any]]:
    """``segue.checkpoint.load_generator`` for any generator file (or shipped name), whatever its options."""
    path, config, provenance = read_weights(path, overrides)
    generator = VariantGenerator(VariantGeneratorConfig(**config))
    generator.load_state_dict(load_file(str(path), device="cpu"))
    return generator.to(device).eval(), provenance
