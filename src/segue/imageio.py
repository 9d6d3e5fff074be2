"""Reading and writing photos safely: EXIF orientation, modes, atomic writes.

Protection must never lose or half-write a photo: every output goes to a temporary file in
the destination folder and is renamed into place only when complete.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

LOSSY_FORMATS = {"JPEG", "WEBP"}
SAVE_FORMAT_BY_SUFFIX = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
                         ".tif": "TIFF", ".tiff": "TIFF", ".pgm": "PPM", ".ppm": "PPM"}


@dataclass
class Photo:
    """A decoded photo: RGB pixels as uint8 ``(H,W,3)``, plus what is needed to write it back."""

    rgb: np.ndarray
    mode: str
    alpha: np.ndarray | None
    format: str | None
    icc_profile: bytes | None

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.rgb).permute(2, 0, 1).float() / 255


def read_photo(path: str | Path) -> Photo:
    """Decode with EXIF orientation applied; grey stays grey and alpha is kept aside."""
    with Image.open(path) as im:
        fmt = im.format
        im.load()
        im = ImageOps.exif_transpose(im)
        icc = im.info.get("icc_profile")
        mode = im.mode
        alpha = np.asarray(im.getchannel("A")).copy() if "A" in im.getbands() else None
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    return Photo(rgb=rgb, mode=mode, alpha=alpha, format=fmt, icc_profile=icc)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(3,H,W)`` float in [0,1] -> ``(H,W,3)`` uint8, rounding to nearest."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def encode(photo: Photo, rgb: np.ndarray) -> Image.Image:
    """Rebuild a PIL image in the photo's own mode family (grey, RGB or RGBA)."""
    im = Image.fromarray(rgb, "RGB")
    if photo.mode in ("L", "LA", "I", "I;16", "1"):
        im = im.convert("L")
    if photo.alpha is not None:
        im = im.convert("RGBA") if im.mode == "RGB" else im.convert("LA")
        im.putalpha(Image.fromarray(photo.alpha))
    return im


def save_image(image: Image.Image, target, fmt: str, icc_profile: bytes | None = None, quality: int = 95) -> None:
    """Encode ``image`` as ``fmt`` to a path or file object (high quality for lossy formats)."""
    kwargs: dict = {}
    if icc_profile:
        kwargs["icc_profile"] = icc_profile
    if fmt in LOSSY_FORMATS:
        kwargs["quality"] = quality
    if fmt == "JPEG" and image.mode in ("RGBA", "LA"):
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    image.save(target, format=fmt, **kwargs)


def write_atomic(image: Image.Image, path: Path, fmt: str, icc_profile: bytes | None = None, quality: int = 95) -> None:
    """Save to a temp file next to ``path`` and rename; a crash or Ctrl-C leaves no partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        save_image(image, tmp, fmt, icc_profile, quality)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
