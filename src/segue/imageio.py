"""Reading and writing photos safely: EXIF orientation, modes, metadata, atomic writes.

Protection must never lose or half-write a photo: every output goes to a temporary file in
the destination folder and is renamed into place only when complete; temporary files a
killed run left behind are recognisable by name and removed by the next run.

Decoding is by content, never by extension, and every way a file can be unusable ends in one
:class:`BadImage` with a one-line reason a person can act on.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

LOSSY_FORMATS = {"JPEG", "WEBP"}
SAVE_FORMAT_BY_SUFFIX = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
                         ".tif": "TIFF", ".tiff": "TIFF", ".pgm": "PPM", ".ppm": "PPM"}
DEFAULT_MAX_PIXELS = 100_000_000  # a decompression-bomb guard; 12-MP phone photos are far below it
PART_PREFIX = ".segue-tmp-"  # temporary outputs: ".segue-tmp-<name>.<random>.part"
_ORIENTATION = 0x0112


class BadImage(ValueError):
    """A file that cannot be protected, with a one-line reason."""


@dataclass
class Photo:
    """A decoded, upright photo: RGB pixels as uint8 ``(H,W,3)``, plus what is needed to write it back."""

    rgb: np.ndarray
    mode: str  # the mode family written back: "RGB", "RGBA", "L" or "LA"
    alpha: np.ndarray | None
    format: str | None
    icc_profile: bytes | None
    exif: bytes | None = None  # kept only when asked (orientation reset: pixels are already upright)
    notes: list[str] = field(default_factory=list)  # conversions a person should know about
    raw: bytes | None = None  # the file's bytes, for copying a photo through unchanged

    def tensor(self) -> torch.Tensor:
        return torch.from_numpy(self.rgb).permute(2, 0, 1).float() / 255


def _eight_bit(im: Image.Image, notes: list[str]) -> Image.Image:
    """Bring any Pillow mode to RGB/RGBA/L/LA, or refuse with a reason."""
    mode = im.mode
    if mode in ("RGB", "RGBA", "L", "LA"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        notes.append(f"palette image written as {'RGBA' if has_alpha else 'RGB'}")
        return im.convert("RGBA" if has_alpha else "RGB")
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im, dtype=np.float64)
        scale = 257.0 if arr.max(initial=0) > 255 else 1.0
        notes.append(f"{'16' if mode.startswith('I;16') else '32'}-bit grey written as 8-bit")
        return Image.fromarray(np.clip(np.round(arr / scale), 0, 255).astype(np.uint8), "L")
    if mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"):
        target = "RGBA" if mode == "RGBa" else ("LA" if mode == "La" else "RGB")
        if mode == "CMYK":
            notes.append("CMYK written as RGB (its colour profile dropped)")
        return im.convert(target)
    raise BadImage(f"unsupported image mode {mode!r} (e.g. 32-bit float); convert it to 8-bit RGB first")


def read_photo(source: str | Path | bytes | io.BytesIO, max_pixels: int = DEFAULT_MAX_PIXELS,
               keep_exif: bool = False) -> Photo:
    """Decode by content with EXIF orientation applied; grey stays grey and alpha is kept aside.

    Raises :class:`BadImage` (one line) for anything that cannot be protected.
    """
    try:
        if isinstance(source, (str, Path)):
            raw = Path(source).read_bytes()
        else:
            raw = source if isinstance(source, bytes) else source.getvalue()
    except PermissionError:
        raise BadImage("permission denied: cannot read the file") from None
    except IsADirectoryError:
        raise BadImage("is a directory, not an image") from None
    except FileNotFoundError:
        raise BadImage("file vanished or is a broken link") from None
    if not raw:
        raise BadImage("empty file (0 bytes)")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit is checked below
            im = Image.open(io.BytesIO(raw))
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise BadImage(f"image too large: {w}x{h} = {w * h} pixels, limit {max_pixels} (--max-pixels)")
            if getattr(im, "n_frames", 1) > 1:
                raise BadImage(f"animated or multi-page image ({im.n_frames} frames): not supported")
            fmt = im.format
            icc = im.info.get("icc_profile")
            im.load()
            im = ImageOps.exif_transpose(im)
            exif = None
            if keep_exif:
                tags = im.getexif()
                if len(tags):
                    tags[_ORIENTATION] = 1
                    exif = tags.tobytes()
            if im.mode == "CMYK":
                icc = None
            im = _eight_bit(im, notes)
            mode = im.mode
            alpha = np.asarray(im.getchannel("A")).copy() if "A" in im.getbands() else None
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage(f"image too large (decompression bomb guard): {exc}".splitlines()[0]) from None
    except UnidentifiedImageError:
        raise BadImage("not an image (content is not a format Pillow can read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadImage(f"corrupt or truncated image data: {msg}") from None
    return Photo(rgb=rgb, mode=mode, alpha=alpha, format=fmt, icc_profile=icc, exif=exif, notes=notes, raw=raw)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(3,H,W)`` float in [0,1] -> ``(H,W,3)`` uint8, rounding to nearest."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def encode(photo: Photo, rgb: np.ndarray) -> Image.Image:
    """Rebuild a PIL image in the photo's own mode family (grey, RGB or RGBA)."""
    im = Image.fromarray(rgb, "RGB")
    if photo.mode in ("L", "LA"):
        im = im.convert("L")
    if photo.alpha is not None:
        im = im.convert("RGBA") if im.mode == "RGB" else im.convert("LA")
        im.putalpha(Image.fromarray(photo.alpha))
    return im


def save_image(image: Image.Image, target, fmt: str, icc_profile: bytes | None = None, quality: int = 95,
               exif: bytes | None = None) -> None:
    """Encode ``image`` as ``fmt`` to a path or file object (high quality for lossy formats).

    Metadata is written only when passed: a fresh image carries no EXIF, GPS or XMP.
    """
    kwargs: dict = {}
    if icc_profile:
        kwargs["icc_profile"] = icc_profile
    if exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        kwargs["exif"] = exif
    if fmt in LOSSY_FORMATS:
        kwargs["quality"] = quality
    if fmt == "JPEG" and image.mode in ("RGBA", "LA"):
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    image.save(target, format=fmt, **kwargs)


def encode_bytes(photo: Photo, rgb: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    """The output file's bytes: one function, so every engine writes identical files."""
    buf = io.BytesIO()
    save_image(encode(photo, rgb), buf, fmt, photo.icc_profile, quality, photo.exif)
    return buf.getvalue()


def write_atomic(data: bytes, path: Path) -> None:
    """Write to a temp file next to ``path`` and rename; a crash or Ctrl-C leaves no partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{PART_PREFIX}{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_parts(root: Path) -> int:
    """Delete temporary files a killed run left under ``root``; returns how many."""
    n = 0
    for p in root.rglob(f"{PART_PREFIX}*.part") if root.is_dir() else []:
        p.unlink(missing_ok=True)
        n += 1
    return n
