"""Real-world photos: every bad input gets its own error, every good one its output, IN is
never modified, interrupted runs resume cleanly, faces in large photos are found and only
they change, and the Ray engine writes the same bytes as the local one."""

from __future__ import annotations

import contextlib
import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from conftest import tree_digest
from segue.checkpoint import load_generator, save_generator
from segue.data import orl_root
from segue.generator import Generator, GeneratorConfig
from segue.imageio import PART_PREFIX
from segue.protect import ProtectOptions, protect_folder

EXIF_ORIENTATION, EXIF_MAKE, EXIF_GPS = 0x0112, 0x010F, 0x8825


@pytest.fixture
def generator() -> Generator:
    torch.manual_seed(0)
    return Generator(GeneratorConfig(width=16, image_size=32)).eval()


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 190, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(base).resize((w, h), Image.BILINEAR))


def _exif(orientation: int | None = None, gps: bool = False) -> Image.Exif:
    exif = Image.Exif()
    exif[EXIF_MAKE] = "SegueCam"
    if orientation:
        exif[EXIF_ORIENTATION] = orientation
    if gps:
        exif.get_ifd(EXIF_GPS).update({1: "N", 2: (52.0, 31.0, 12.0)})
    return exif


GOOD = ["rgb.jpg", "rgb.png", "rgb.webp", "rotated.jpg", "gps.jpg", "grey.png", "rgba.png", "palette.png",
        "cmyk.jpg", "deep16.png", "icc.png"]
BAD = {  # file -> a word its one-line error must contain
    "empty.jpg": "empty",
    "truncated.jpg": "truncated",
    "text.png": "not an image",
    "bomb.png": "too large",
    "float.tif": "unsupported image mode",
    "animated.webp": "animated",
    "locked.jpg": "permission",
}


def make_corpus(root: pathlib.Path) -> pathlib.Path:
    """Good photos in every format and mode people have, and every kind of bad file."""
    d = root / "alice"
    d.mkdir(parents=True)
    rgb = _noise(48, 40)
    Image.fromarray(rgb).save(d / "rgb.jpg", quality=95)
    Image.fromarray(rgb).save(d / "rgb.png")
    Image.fromarray(rgb).save(d / "rgb.webp", quality=95)
    Image.fromarray(_noise(40, 60, 1)).save(d / "rotated.jpg", exif=_exif(orientation=6))  # shown as 40 wide, 60 high
    Image.fromarray(rgb).save(d / "gps.jpg", exif=_exif(gps=True))
    Image.fromarray(rgb[..., 0]).save(d / "grey.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 77, np.uint8)])).save(d / "rgba.png")
    Image.fromarray(rgb).convert("P").save(d / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(d / "deep16.png")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rgb).save(d / "icc.png", icc_profile=srgb)
    (d / "empty.jpg").write_bytes(b"")
    (d / "truncated.jpg").write_bytes((d / "rgb.jpg").read_bytes()[:400])
    (d / "text.png").write_text("this is a text file with an image extension\n")
    Image.new("L", (6000, 6000)).save(d / "bomb.png")  # 36 MP of zeros: a few kB on disk
    Image.fromarray(np.ones((20, 20), np.float32)).save(d / "float.tif")
    frames = [Image.fromarray(_noise(32, 32, s)) for s in range(3)]
    frames[0].save(d / "animated.webp", save_all=True, append_images=frames[1:], duration=100)
    (d / "locked.jpg").write_bytes((d / "rgb.jpg").read_bytes())
    return root


@contextlib.contextmanager
def locked_file():
    """Tests run as root, where chmod 000 is still readable: make 'locked.jpg' unreadable instead."""
    real = pathlib.Path.read_bytes

    def read_bytes(self):
        if self.name == "locked.jpg":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pathlib.Path, "read_bytes", read_bytes)
        yield


def test_every_bad_file_gets_its_error_every_good_file_its_output(tmp_path, generator):
    src = make_corpus(tmp_path / "in")
    before = tree_digest(src)
    out = tmp_path / "out"
    with pytest.warns(UserWarning, match="lossy"), locked_file():
        report = protect_folder(generator, src, out, ProtectOptions(max_pixels=20_000_000), progress=False)
    assert tree_digest(src) == before  # IN is byte-identical
    errors = {e["input"].split("/")[-1]: e["error"] for e in report["errors"]}
    assert set(errors) == set(BAD)
    for name, word in BAD.items():
        assert word in errors[name].lower() and "\n" not in errors[name], (name, errors[name])
        assert not (out / "alice" / name).exists()
    assert json.loads((out / "report.json").read_text())["errors"] == report["errors"]
    assert sorted(p.name for p in (out / "alice").iterdir()) == sorted(GOOD)
    rows = {r["input"].split("/")[-1]: r for r in report["files"]}
    assert all(rows[n]["status"] == "protected" and rows[n]["linf"] > 0 for n in GOOD)
    assert not list(out.rglob(f"{PART_PREFIX}*"))

    def opened(name):
        return Image.open(out / "alice" / name)

    assert opened("rgb.jpg").format == "JPEG" and opened("rgb.webp").format == "WEBP"
    assert opened("rotated.jpg").size == (40, 60)  # EXIF orientation applied, pixels upright
    assert opened("grey.png").mode == "L" and opened("rgba.png").mode == "RGBA"
    assert np.asarray(opened("rgba.png"))[..., 3].min() == 77
    assert opened("deep16.png").mode == "L" and "16-bit" in rows["deep16.png"]["notes"][0]
    assert opened("cmyk.jpg").mode == "RGB" and "CMYK" in rows["cmyk.jpg"]["notes"][0]
    assert opened("palette.png").mode == "RGB"
    assert opened("icc.png").info.get("icc_profile") == Image.open(src / "alice" / "icc.png").info["icc_profile"]
    for name in ("rotated.jpg", "gps.jpg"):  # privacy tool: no EXIF at all by default
        assert len(opened(name).getexif()) == 0


def test_keep_exif_keeps_tags_but_resets_orientation(tmp_path, generator):
    src = make_corpus(tmp_path / "in")
    out = tmp_path / "out"
    with pytest.warns(UserWarning):
        protect_folder(generator, src, out, ProtectOptions(keep_exif=True, max_pixels=20_000_000), progress=False)
    rotated = Image.open(out / "alice" / "rotated.jpg")
    assert rotated.size == (40, 60) and rotated.getexif()[EXIF_ORIENTATION] == 1
    assert rotated.getexif()[EXIF_MAKE] == "SegueCam"
    assert Image.open(out / "alice" / "gps.jpg").getexif().get_ifd(EXIF_GPS)


def _face_photo(path: pathlib.Path, orientation: int | None = None) -> None:
    """A 3000x2000 photo with one ORL face (upscaled) pasted at (1200, 500)."""
    face = Image.open(sorted(orl_root().rglob("*.pgm"))[0]).convert("RGB").resize((460, 560), Image.BICUBIC)
    photo = Image.fromarray(_noise(2000, 3000, 3))
    photo.paste(face, (1200, 500))
    if orientation:  # store it rotated, with the EXIF tag that turns it upright again
        photo = photo.transpose(Image.Transpose.ROTATE_90)
        photo.save(path, exif=_exif(orientation=orientation))
    else:
        photo.save(path)


def test_large_photo_changes_only_around_the_face(tmp_path):
    pytest.importorskip("dlib")
    generator, _ = load_generator(None, "cpu")  # the shipped one
    (tmp_path / "in" / "bob").mkdir(parents=True)
    _face_photo(tmp_path / "in" / "bob" / "party.png", orientation=6)  # ROTATE_90 + tag 6 = upright
    Image.fromarray(_noise(2000, 3000, 4)).save(tmp_path / "in" / "bob" / "landscape.png")
    before = tree_digest(tmp_path / "in")
    report = protect_folder(generator, tmp_path / "in", tmp_path / "out", progress=False)
    assert tree_digest(tmp_path / "in") == before
    row = {r["input"]: r for r in report["files"]}["bob/party.png"]
    assert row["status"] == "protected" and row["faces"] == 1
    x0, y0, x1, y1 = row["boxes"][0]
    assert x0 < 1200 + 230 < x1 and y0 < 500 + 280 < y1  # around the pasted face's centre
    original = np.asarray(Image.open(tmp_path / "in" / "bob" / "party.png").transpose(Image.Transpose.ROTATE_270)
                          .convert("RGB"), dtype=np.int16)
    out = Image.open(tmp_path / "out" / "bob" / "party.png")
    assert out.size == (3000, 2000)  # same size, upright
    diff = np.abs(np.asarray(out.convert("RGB"), dtype=np.int16) - original).max(axis=2)
    inside = np.zeros(diff.shape, bool)
    inside[y0:y1, x0:x1] = True
    assert diff[~inside].max() == 0  # nothing changes away from the face
    assert 0 < diff[inside].max() <= round(generator.eps * 255) + 1
    assert (diff[inside] > 0).mean() > 0.3  # and the face region really is perturbed
    # a big photo without a face is copied through byte for byte and reported
    assert report["no_face"] == ["bob/landscape.png"]
    assert (tmp_path / "out" / "bob" / "landscape.png").read_bytes() == (tmp_path / "in" / "bob" / "landscape.png").read_bytes()
    # --full-image perturbs the whole frame instead
    full = protect_folder(generator, tmp_path / "in", tmp_path / "full", ProtectOptions(region="full"), progress=False)
    assert full["summary"]["protected"] == 2 and full["no_face"] == []


def _tiny_weights(tmp_path: pathlib.Path, generator: Generator) -> pathlib.Path:
    return save_generator(generator, tmp_path / "tiny.safetensors", {"image_size": 32})


def _many_photos(root: pathlib.Path, n: int) -> pathlib.Path:
    (root / "p").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(_noise(64, 64, i)).save(root / "p" / f"img{i:03d}.png")
    return root


def _run_protect(src, out, weights, *extra) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "segue.cli", "protect", str(src), "-o", str(out), "--weights", str(weights),
           "--batch-size", "1", "--workers", "1", "-q", *extra]
    # a shell that runs pytest in the background ignores SIGINT, and Python then keeps it ignored in the child
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_outputs(out: pathlib.Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while len(list(out.rglob("img*.png"))) < n:
        assert proc.poll() is None, "protect finished before it could be interrupted"
        assert time.time() - t0 < timeout
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_resumes_without_duplicates_or_partial_files(tmp_path, generator, sig):
    src = _many_photos(tmp_path / "in", 300)
    weights = _tiny_weights(tmp_path, generator)
    out = tmp_path / "out"
    proc = _run_protect(src, out, weights)
    _wait_for_outputs(out, 5, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "interrupted" in err
        assert json.loads((out / "report.json").read_text())["interrupted"] is True
        assert not list(out.rglob(f"{PART_PREFIX}*"))  # Ctrl-C itself leaves nothing partial
    first = {p.name for p in out.rglob("img*.png")}
    assert 5 <= len(first) < 300
    for p in out.rglob("img*.png"):  # whatever exists is a complete image
        Image.open(p).load()
    if sig == signal.SIGKILL:  # a kill mid-write leaves a temporary file: the rerun must clear it
        (out / "p" / f"{PART_PREFIX}img299.png.x1y2.part").write_bytes(b"half a png")
    rerun = _run_protect(src, out, weights)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["protected"] + len(report["skipped_existing"]) == 300
    assert set(report["skipped_existing"]) == {f"p/{n}" for n in first}
    assert sorted(p.name for p in (out / "p").iterdir()) == [f"img{i:03d}.png" for i in range(300)]
    assert not list(out.rglob(f"{PART_PREFIX}*"))


def test_ray_engine_writes_the_same_bytes_as_the_local_engine(tmp_path, generator):
    pytest.importorskip("ray")
    from segue.cli import main

    src = _many_photos(tmp_path / "in", 9)
    Image.fromarray(_noise(50, 37, 99)[..., 0]).save(src / "p" / "grey.jpg", quality=95)
    (src / "p" / "broken.png").write_bytes(b"\x89PNG not really")
    weights = _tiny_weights(tmp_path, generator)
    local_gen, _ = load_generator(weights, "cpu")
    with pytest.warns(UserWarning):
        local = protect_folder(local_gen, src, tmp_path / "local", ProtectOptions(batch_size=4), progress=False)
    assert main(["protect", str(src), "-o", str(tmp_path / "ray"), "--weights", str(weights), "--batch-size", "4",
                 "--engine", "ray", "--ray-cpus", "2", "--device", "cpu", "-q"]) == 1  # 1: broken.png
    remote = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert remote["engine"] == "ray" and local["summary"]["protected"] == remote["summary"]["protected"] == 10
    assert [e["input"] for e in remote["errors"]] == ["p/broken.png"]
    local_files = {k: v for k, v in tree_digest(tmp_path / "local").items() if k != "report.json"}
    ray_files = {k: v for k, v in tree_digest(tmp_path / "ray").items() if k != "report.json"}
    assert local_files == ray_files and len(local_files) == 10


def test_cli_protect_options_reach_the_output(tmp_path, generator):
    from segue.cli import main

    src = tmp_path / "in" / "p"
    src.mkdir(parents=True)
    Image.fromarray(_noise(600, 800, 5)).save(src / "big.jpg", exif=_exif(gps=True))
    weights = _tiny_weights(tmp_path, generator)
    assert main(["protect", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", str(weights),
                 "--full-image", "--format", "png", "--keep-exif", "--ssim-every", "0", "--png-level", "9", "-q"]) == 0
    out = Image.open(tmp_path / "out" / "p" / "big.png")
    assert out.size == (800, 600) and out.getexif()[EXIF_MAKE] == "SegueCam"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    row = report["files"][0]
    assert row["region"] == "full" and row["status"] == "protected"
    assert row["ssim"] is None and report["summary"]["ssim_photos"] == 0 and row["psnr"] > 25


def test_an_images_delta_does_not_depend_on_its_batch_neighbours():
    """The generator runs on fixed-size (padded) chunks: engines that batch differently agree bit for bit."""
    from segue.protect import generator_deltas

    generator, _ = load_generator(None, "cpu")
    torch.manual_seed(0)
    x, y = torch.rand(8, 3, 112, 112), torch.randint(0, 10, (8,))
    with torch.inference_mode():
        full = generator_deltas(generator, x, y, batch_size=8)
        parts = torch.cat([generator_deltas(generator, x[i : i + 3], y[i : i + 3], batch_size=8) for i in range(0, 8, 3)])
    assert torch.equal(full, parts)
