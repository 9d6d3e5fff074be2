"""FastAPI app: ``POST /api/protect`` (one photo), ``POST /api/protect-zip`` (many photos),
``GET /api/health`` and the single page at ``/``.

Uploads are handled in memory and never written to disk. Content is checked by decoding,
not by file extension: an upload Pillow cannot identify is 415, one it identifies but
cannot decode (truncated, corrupt) is 422, one over the byte or pixel limit is 413.
"""

from __future__ import annotations

import importlib.util
import io
import threading
import zipfile
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from torch import nn

from segue.checkpoint import load_generator
from segue.generator import Generator
from segue.imageio import BadImage, Photo, read_photo
from segue.protect import Job, ProtectOptions, Protector
from segue.visibility import GENERATOR_VISIBILITY

#: What the page says the loaded protection stops and does not stop (docs/attacks.md), first thing on screen.
LIMITS = {
    "generator": "Limits: this protection does NOT stop pretrained face recognisers (services that enrol you from "
                 "photos); it only hinders a network trained from scratch on photos of the people it was trained on.",
    "cloak": "Limits: the cloak is visible (swirls on the skin) and does NOT stop a network trained from scratch on "
             "your photos; it stops the pretrained recognisers measured (dlib, FaceNet), at about a second a face.",
    "cloak-faint": "Limits: at this strength the cloak is as visible as the generator by its numbers, yet some "
                   "faces show faint shading at 2x (a furrowed brow, darker eyes), and it is weak: dlib still recognised "
                   "most of the people measured; it does NOT stop a network trained from scratch on your photos "
                   "(segue serve --strength visible is strong, and visible).",
}
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
SUFFIXES = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}


class PhotoProtector:
    """Decode, check limits, protect and re-encode one upload; shared by both endpoints.

    The per-photo work is :class:`segue.protect.Protector`, as in ``segue protect``: face
    crops are perturbed whole, large photos only around the faces found (whole frame if dlib
    is not installed).
    """

    def __init__(self, generator: Generator, max_bytes: int, max_pixels: int):
        self.max_bytes, self.max_pixels = max_bytes, max_pixels
        region = "auto" if importlib.util.find_spec("dlib") else "full"
        self.protector = Protector(generator, ProtectOptions(region=region, batch_size=1, max_pixels=max_pixels,
                                                             visibility_every=1))  # every upload: the page shows it
        self.lock = threading.Lock()  # one forward pass at a time: CPU-bound anyway

    def decode(self, data: bytes) -> Photo:
        if len(data) > self.max_bytes:
            raise HTTPException(413, f"file is larger than {self.max_bytes} bytes")
        try:
            with Image.open(io.BytesIO(data)) as probe:
                pixels = probe.size[0] * probe.size[1]
        except UnidentifiedImageError:
            raise HTTPException(415, "not an image Pillow can read (checked by content, not by extension)") from None
        if pixels > self.max_pixels:
            raise HTTPException(413, f"image has {pixels} pixels; the limit is {self.max_pixels}")
        try:
            return read_photo(data, self.max_pixels)
        except BadImage as exc:  # truncated / corrupt data behind a valid header
            raise HTTPException(422, f"image could not be decoded: {exc}") from None

    def protect(self, data: bytes, label: int, output: str) -> tuple[bytes, str, dict]:
        """Protected image bytes, its format name, and the report row (metrics, status)."""
        photo = self.decode(data)
        fmt = "PNG" if output == "png" or photo.format not in MEDIA_TYPES else photo.format
        job = Job(Path("upload"), Path(f"upload.{SUFFIXES[fmt]}"), "upload", label)
        with self.lock:
            (out, boxes), = self.protector.perturb([(job, photo)])
        try:
            data, row = self.protector.finish(job, photo, out, boxes)
        except BadImage as exc:  # the encoded result failed the L-inf check
            raise HTTPException(422, f"image could not be protected: {exc}") from None
        return data, fmt, row


def create_app(weights: str | Path | None = None, max_bytes: int = 20 * 2**20, max_pixels: int = 40_000_000,
               generator: Generator | nn.Module | None = None) -> FastAPI:
    """Build the app around a generator (default: the shipped WebFace10 weights) or anything with
    its call, such as :class:`segue.protect.cloaker.Cloaker` (``segue serve --cloak``)."""
    if generator is None:
        generator, _ = load_generator(weights, "cpu")
    protection = generator.describe() if hasattr(generator, "describe") else {"method": "generator"}
    protector = PhotoProtector(generator.eval(), max_bytes, max_pixels)
    app = FastAPI(title="segue", description="Protect face photos from face-recognition training, locally.")

    @app.exception_handler(HTTPException)
    async def json_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail, "status": exc.status_code}, status_code=exc.status_code)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (resources.files("segue.serve") / "static" / "index.html").read_text()

    @app.get("/api/health")
    def health() -> dict:
        """Liveness plus what the loaded protection does, and what it does not stop."""
        cfg = generator.config
        budget = protector.protector.visibility_budget
        key = "cloak-faint" if protection["method"] == "cloak" and budget == GENERATOR_VISIBILITY else protection["method"]
        return {"status": "ok", "eps_255": round(generator.eps * 255, 3), "image_size": cfg.image_size,
                "protection": protection["method"], "limits": LIMITS[key], "visibility_budget": budget.to_dict(),
                "max_bytes": max_bytes, "max_pixels": max_pixels}

    @app.post("/api/protect", responses={200: {"content": {"image/png": {}}}, 413: {}, 415: {}, 422: {}})
    def protect(file: UploadFile = File(...), label: int = Form(0, ge=0, lt=2**16),
                output: str = Form("png", pattern="^(png|original)$")) -> Response:
        """Protect one photo; the response is the image, metrics are in ``X-Segue-*`` headers."""
        data, fmt, q = protector.protect(file.file.read(max_bytes + 1), label, output)
        vis = q.get("visibility") or {}
        headers = {"X-Segue-PSNR": str(q["psnr"]), "X-Segue-SSIM": str(q["ssim"]), "X-Segue-Linf": str(q["linf"]),
                   "X-Segue-HaarPSI": str(vis.get("haarpsi")), "X-Segue-DeltaE-P95": str(vis.get("delta_e_p95")),
                   "X-Segue-Shading-P95": str(vis.get("shading_p95")),
                   "X-Segue-Status": q["status"], "X-Segue-Faces": str(q["faces"])}
        return Response(data, media_type=MEDIA_TYPES[fmt], headers=headers)

    @app.post("/api/protect-zip", responses={200: {"content": {"application/zip": {}}}})
    def protect_zip(files: list[UploadFile] = File(...), label: int = Form(0, ge=0, lt=2**16),
                    output: str = Form("png", pattern="^(png|original)$")) -> Response:
        """Protect several photos and return them as one zip (same stems)."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for f in files:
                data, fmt, _ = protector.protect(f.file.read(max_bytes + 1), label, output)
                stem = Path(f.filename or "photo").stem
                zf.writestr(f"{stem}.{'jpg' if fmt == 'JPEG' else fmt.lower()}", data)
        return Response(buf.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="protected.zip"'})

    return app
