"""The Python API: protect photos in memory or on disk with a shipped or trained generator.

Exported at the top level (``segue.protect_images``, ``segue.protect_folder``,
``segue.load_generator``); the command line is a thin layer over the same calls.
"""

from __future__ import annotations

from pathlib import Path

import torch

from segue.checkpoint import load_generator
from segue.generator import Generator


def _generator(weights: str | Path | Generator | None, device: str | torch.device) -> Generator:
    """A generator, a weights file, or a protection's name (:mod:`segue.protections`: a shipped generator
    or a cloak strength, which comes with a generator's call)."""
    if isinstance(weights, Generator):
        return weights.to(device).eval()
    if isinstance(weights, str) and not weights.endswith(".safetensors"):
        from segue.protections import PROTECTIONS, create_protection

        if weights in PROTECTIONS:
            return create_protection(weights, device)
    return load_generator(weights, device)[0]


def protect_images(images: torch.Tensor, labels: torch.Tensor | list[int] | int | None = None,
                   weights: str | Path | Generator | None = "default", device: str = "cpu",
                   batch_size: int = 64) -> torch.Tensor:
    """Protected copies of in-memory face crops (one generator forward pass per batch).

    Args:
        images: face crops in [0, 1].
        labels: each photo's person (side information): a tensor/list of ints, one int for all,
            or None for person 0. Photos of one person must share a label.
        weights: a protection's name (``segue list protections``: a shipped generator, or a cloak
            strength such as ``"low"``), a ``.safetensors`` path or a Generator.
        device: ``"cpu"`` or ``"cuda"``.

    Shape:
        ``(N, 3, H, W)`` -> ``(N, 3, H, W)``, 8-bit quantised, ``|out - images| <= eps``.

    Examples:
        >>> import torch, segue
        >>> faces = torch.rand(2, 3, 112, 112)
        >>> protected = segue.protect_images(faces, labels=[0, 0], weights="default")
        >>> protected.shape, bool((protected - faces).abs().max() <= 8 / 255 + 1 / 255)
        (torch.Size([2, 3, 112, 112]), True)
    """
    from segue.protect import protect_images as _protect

    generator = _generator(weights, device)
    if labels is None or isinstance(labels, int):
        labels = torch.full((len(images),), labels or 0, dtype=torch.long)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    with torch.no_grad():
        return _protect(generator, images.to(device), labels.to(device), batch_size).cpu()


def protect_folder(in_dir: str | Path, out_dir: str | Path, weights: str | Path | Generator | None = "default",
                   device: str = "cpu", progress: bool = False, **options) -> dict:
    """Protect every photo under ``in_dir`` into ``out_dir`` (what ``segue protect`` does); returns the report.

    Args:
        in_dir: a folder of photos (one person) or one subfolder per person; never modified.
        out_dir: mirrors ``in_dir``: same names, formats and modes; ``report.json`` inside.
        weights: as in :func:`protect_images`.
        options: :class:`segue.protect.ProtectOptions` fields (``label``, ``output_format``, ``region``, ...).

    Examples:
        >>> import tempfile, pathlib, numpy as np, segue
        >>> from PIL import Image
        >>> src, dst = pathlib.Path(tempfile.mkdtemp()), pathlib.Path(tempfile.mkdtemp()) / "out"
        >>> Image.fromarray(np.random.default_rng(0).integers(60, 200, (112, 112, 3), np.uint8)).save(src / "me.png")
        >>> report = segue.protect_folder(src, dst)
        >>> report["summary"]["protected"], (dst / "me.png").exists()
        (1, True)
    """
    from segue.protect import ProtectOptions
    from segue.protect import protect_folder as _protect_folder

    return _protect_folder(_generator(weights, device), in_dir, out_dir, ProtectOptions(**options), progress=progress)


__all__ = ["load_generator", "protect_folder", "protect_images"]
