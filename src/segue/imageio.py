"""Reading and writing photos safely: EXIF orientation, modes, metadata, atomic writes.

Protection must never lose or half-write a photo: every output goes to a temporary file in
the destination folder and is renamed into place only when complete; temporary files a
killed run left behind are recognisable by name and removed by the next run.

Decoding is by content, never by extension, and every way a file can be unusable ends in one
:class:`BadImage` with a one-line reason a person can act on.

The format policy lives here too: what a decoded photo is compared against (Pillow's RGB
reading; 16-bit grey scaled by 1/257, as viewers show it), which outputs are lossless (PNG,
TIFF, BMP, PPM, and WebP when the input was lossless WebP or any other lossless format) and
how lossy ones are encoded (JPEG without chroma subsampling, which would average delta's colour
over 2x2 blocks and move detailed colour by up to 254/255), and how far a lossy encoder may
move a pixel beyond eps (:func:`encoder_tolerance`).

One module (~340 lines, a third of them docstrings): reading and writing share that policy, and
split apart they could disagree on what a file's "own format" is.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import warnings
import zlib
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
# How far (/255) JPEG and lossy WebP at quality >= 95 may move a pixel beyond eps. Measured at q95: uniform noise
# moves by 20/255 as 4:4:4 JPEG (by 212 with chroma subsampling), a face crop plus +-8 noise by 20 (JPEG) and 24
# (WebP). Lower qualities scale it like libjpeg's quantiser (see encoder_tolerance): q85 x3, q75 x5, q50 x10.
LOSSY_TOLERANCE_255 = 32
_ORIENTATION = 0x0112
_UMASK = os.umask(0o022)  # read once, at import (setting it is the only way to read it, and threads race on that)
os.umask(_UMASK)


class BadImage(ValueError):
    """A file that cannot be protected, with a one-line reason a person can act on.

    Raised by :func:`read_photo` for every way a file can be unusable (not an image, truncated,
    too large, animated, ...); ``segue protect`` reports it per file and goes on.

    Examples:
        >>> try:
        ...     read_photo(b"not an image")
        ... except BadImage as exc:
        ...     print(type(exc).__name__)
        BadImage
    """


@dataclass
class Photo:
    """A decoded, upright photo: RGB pixels as uint8 ``(H,W,3)``, plus what is needed to write it back.

    Args:
        rgb: ``(H,W,3)`` uint8, EXIF orientation applied.
        mode: the mode family written back: ``"RGB"``, ``"RGBA"``, ``"L"`` or ``"LA"``.
        alpha: the alpha channel ``(H,W)`` uint8, if any (kept as is).
        format: Pillow's format name of the input (``"JPEG"``, ``"PNG"``, ...).
        icc_profile: the colour profile, written back.
        exif: kept only when asked (orientation reset: the pixels are already upright).
        notes: conversions a person should know about (CMYK, 16-bit, palette, ...).
        raw: the file's bytes, for copying a photo through unchanged.
        lossless: the input's own encoding (a lossless WebP is written back lossless).

    Shape:
        ``tensor()`` -> ``(3,H,W)`` float in [0, 1].

    Examples:
        >>> import io
        >>> import numpy as np
        >>> from PIL import Image
        >>> buf = io.BytesIO()
        >>> Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(buf, "PNG")
        >>> photo = read_photo(buf.getvalue())
        >>> photo.rgb.shape, photo.format, photo.tensor().shape, photo.output_is_lossy("PNG")
        ((4, 6, 3), 'PNG', torch.Size([3, 4, 6]), False)
    """

    rgb: np.ndarray
    mode: str  # the mode family written back: "RGB", "RGBA", "L" or "LA"
    alpha: np.ndarray | None
    format: str | None
    icc_profile: bytes | None
    exif: bytes | None = None  # kept only when asked (orientation reset: pixels are already upright)
    notes: list[str] = field(default_factory=list)  # conversions a person should know about
    raw: bytes | None = None  # the file's bytes, for copying a photo through unchanged
    lossless: bool = True  # the input's own encoding: a lossless WebP is written back lossless

    def output_is_lossy(self, fmt: str) -> bool:
        """JPEG always; WebP unless the input itself was lossless (lossless inputs stay lossless)."""
        return fmt == "JPEG" or (fmt == "WEBP" and not self.lossless)

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
        # 16-bit grey is scaled by 1/257 whatever its values (a dark photo stays dark; Pillow's own RGB
        # conversion clips at 255 instead); 32-bit "I" has no known range, so values up to 255 are taken as 8-bit
        arr = np.asarray(im, dtype=np.float64)
        scale = 257.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 1.0
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
            if keep_exif:  # the copy's EXIF, as written back (a TIFF's own tags are not EXIF)
                im = ImageOps.exif_transpose(im)
            else:  # in place: no copy of an upright photo
                ImageOps.exif_transpose(im, in_place=True)
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
            rgb = np.array(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)  # one writable copy
    except BadImage:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImage(f"image too large (decompression bomb guard): {exc}".splitlines()[0]) from None
    except UnidentifiedImageError:
        raise BadImage("not an image (content is not a format Pillow can read)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadImage(f"corrupt or truncated image data: {msg}") from None
    lossless = fmt not in ("JPEG", "MPO", "WEBP") or (fmt == "WEBP" and webp_is_lossless(raw))
    return Photo(rgb=rgb, mode=mode, alpha=alpha, format=fmt, icc_profile=icc, exif=exif, notes=notes, raw=raw,
                 lossless=lossless)


def webp_is_lossless(raw: bytes) -> bool:
    """Whether a WebP's pixels are a VP8L (lossless) chunk rather than VP8 (lossy); Pillow does not say.

    RIFF layout: "RIFF", size, "WEBP", then chunks (fourcc, little-endian size, data padded to even);
    an extended file (VP8X) has metadata/alpha chunks before the one holding the pixels.
    """
    pos = 12
    while pos + 8 <= len(raw):
        fourcc, size = raw[pos : pos + 4], int.from_bytes(raw[pos + 4 : pos + 8], "little")
        if fourcc in (b"VP8L", b"VP8 "):
            return fourcc == b"VP8L"
        pos += 8 + size + (size & 1)
    return False


def encoder_tolerance(quality: int) -> int:
    """How far (/255) a lossy encoder at ``quality`` may move a pixel beyond eps: ``LOSSY_TOLERANCE_255`` at
    q >= 95, scaled like libjpeg's quantisation tables (x(200-2q)/10 from q50 up, x500/q below)."""
    scale = max(200 - 2 * quality, 10) if quality >= 50 else 5000 / max(quality, 1)
    return math.ceil(LOSSY_TOLERANCE_255 * scale / 10)


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
               exif: bytes | None = None, lossless: bool = False, png_level: int | None = None) -> None:
    """Encode ``image`` as ``fmt`` to a path or file object (high quality for lossy formats).

    Metadata is written only when passed: a fresh image carries no EXIF, GPS or XMP. JPEG is
    written 4:4:4 (chroma subsampling would blur delta's colour and, on detailed colour, move
    pixels far beyond eps); WebP keeps the RGB under transparent pixels (``exact``) and is
    lossless when ``lossless``; PNG is written at zlib level ``png_level`` (Pillow's 6 if None).
    """
    kwargs: dict = {}
    if icc_profile:
        kwargs["icc_profile"] = icc_profile
    if exif and fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        kwargs["exif"] = exif
    if fmt == "JPEG":
        kwargs.update(quality=quality, subsampling=0)
    elif fmt == "WEBP":
        kwargs.update({"lossless": True} if lossless else {"quality": quality}, exact=True)
    elif fmt == "PNG" and png_level is not None:
        kwargs["compress_level"] = png_level
    if fmt == "JPEG" and image.mode in ("RGBA", "LA"):
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    image.save(target, format=fmt, **kwargs)


_PNG_COLOR_TYPES = {"L": (0, 1), "LA": (4, 2), "RGB": (2, 3), "RGBA": (6, 4)}  # mode: (colour type, channels)
_PNG_MODES_BY_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + tag + data + zlib.crc32(data, zlib.crc32(tag)).to_bytes(4, "big")


def png_bytes(pixels: np.ndarray, level: int = 1, icc_profile: bytes | None = None, exif: bytes | None = None) -> bytes:
    """An 8-bit PNG of ``(H,W)`` or ``(H,W,C)`` uint8 pixels (grey, grey+alpha, RGB, RGBA).

    Every row is Sub-filtered (each byte minus the same channel of the pixel to its left, mod 256)
    and the rows are one zlib stream at ``level``. Pillow instead tries all five PNG filters on
    every row and keeps the best: on a 224-px photo carrying delta that takes 3.6 ms at level 1 for
    71 KiB (23 ms for 62 KiB at its default level 6), these rows 1.9 ms for 78 KiB, and they decode
    faster (1.3 vs 1.6 ms). The ICC profile and EXIF go in ``iCCP`` and ``eXIf`` chunks, as Pillow
    writes them.
    """
    h, w = pixels.shape[:2]
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    color_type = _PNG_COLOR_TYPES[_PNG_MODES_BY_CHANNELS[channels]][0]
    row = pixels.reshape(h, w * channels)
    rows = np.empty((h, 1 + w * channels), np.uint8)
    rows[:, 0] = 1  # filter type 1: Sub
    rows[:, 1 : 1 + channels] = row[:, :channels]
    np.subtract(row[:, channels:], row[:, :-channels], out=rows[:, 1 + channels :])  # uint8: mod 256
    out = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, color_type, 0, 0, 0]))]
    if icc_profile:
        out.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        out.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    out += [_png_chunk(b"IDAT", zlib.compress(rows, level)), _png_chunk(b"IEND", b"")]
    return b"".join(out)


def encode_bytes(photo: Photo, rgb: np.ndarray, fmt: str, quality: int = 95, png_level: int | None = None) -> bytes:
    """The output file's bytes: one function, so every engine writes identical files.

    PNG with a ``png_level`` is written by :func:`png_bytes` (zlib at that level); without one,
    by Pillow at its default level.
    """
    if fmt == "PNG" and png_level is not None:
        if photo.mode == "RGB" and photo.alpha is None:  # the common case: no PIL image needed
            return png_bytes(rgb, png_level, photo.icc_profile, photo.exif)
        image = encode(photo, rgb)
        if image.mode in _PNG_COLOR_TYPES:
            return png_bytes(np.asarray(image), png_level, photo.icc_profile, photo.exif)
    buf = io.BytesIO()
    save_image(encode(photo, rgb), buf, fmt, photo.icc_profile, quality, photo.exif, not photo.output_is_lossy(fmt),
               png_level)
    return buf.getvalue()


def write_atomic(data: bytes, path: Path, like: Path | None = None) -> None:
    """Write to a temp file next to ``path`` and rename; a crash or Ctrl-C leaves no partial file.

    The temp file is created 0600; the result gets ``like``'s permissions (an output gets its
    input's), or a new file's, both less the umask as ``cp`` does.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = like.stat().st_mode & 0o777 if like is not None else 0o666  # no setuid/sticky bits
    except OSError:  # the input vanished meanwhile: a new file's permissions
        mode = 0o666
    fd, tmp = tempfile.mkstemp(prefix=f"{PART_PREFIX}{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, mode & ~_UMASK)
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
