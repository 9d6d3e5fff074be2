import io
import json
import os
import stat
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_photo_folder, tree_digest
from segue.generator import Generator, GeneratorConfig
from segue.protect import ProtectOptions, protect_folder


@pytest.fixture
def generator():
    torch.manual_seed(0)
    return Generator(GeneratorConfig(width=16, image_size=32)).eval()


def test_mirrors_tree_keeps_names_and_never_touches_input(photo_folder, tmp_path, generator):
    (photo_folder / "person1" / "nested").mkdir()
    Image.new("RGB", (30, 30), "gray").save(photo_folder / "person1" / "nested" / "deep.png")
    before = tree_digest(photo_folder)
    out = tmp_path / "out"
    report = protect_folder(generator, photo_folder, out, progress=False)
    assert tree_digest(photo_folder) == before
    written = {str(p.relative_to(out)) for p in out.rglob("*.png")}
    assert written == {k for k in before}
    assert report["summary"]["protected"] == len(before)
    assert json.loads((out / "report.json").read_text())["summary"]["errors"] == 0


@pytest.mark.parametrize("work_size", [None, 0])
def test_eps_bound_holds_after_png_round_trip(photo_folder, tmp_path, generator, work_size):
    out = tmp_path / "out"
    report = protect_folder(generator, photo_folder, out, ProtectOptions(work_size=work_size), progress=False)
    eps255 = round(generator.eps * 255)
    for src in photo_folder.rglob("*.png"):
        a = np.asarray(Image.open(src).convert("RGB"), dtype=np.int16)
        b = np.asarray(Image.open(out / src.relative_to(photo_folder)).convert("RGB"), dtype=np.int16)
        assert a.shape == b.shape
        diff = np.abs(a - b).max()
        assert 0 < diff <= eps255 + 1
    assert report["summary"]["linf_max"] <= eps255 + 1
    assert all(r["psnr"] > 25 for r in report["files"])


def test_jpeg_keeps_its_format_with_a_warning_unless_png(tmp_path, generator):
    src = make_photo_folder(tmp_path / "in", identities=1, per_identity=2, suffix=".jpg")
    with pytest.warns(UserWarning, match="lossy"):
        report = protect_folder(generator, src, tmp_path / "keep", progress=False)
    assert sorted(p.name for p in (tmp_path / "keep" / "person0").iterdir()) == ["img0.jpg", "img1.jpg"]
    assert Image.open(tmp_path / "keep" / "person0" / "img0.jpg").format == "JPEG"
    assert all(r["linf"] > 0 for r in report["files"])  # measured on the decoded JPEG the user gets
    protect_folder(generator, src, tmp_path / "png", ProtectOptions(output_format="png"), progress=False)
    assert sorted(p.name for p in (tmp_path / "png" / "person0").iterdir()) == ["img0.png", "img1.png"]


def test_bad_file_gets_one_error_and_run_goes_on(photo_folder, tmp_path, generator):
    (photo_folder / "person0" / "broken.jpg").write_bytes(b"not an image at all")
    (photo_folder / "person0" / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    report = protect_folder(generator, photo_folder, out, progress=False)
    bad = {e["input"]: e["error"] for e in report["errors"]}
    assert set(bad) == {"person0/broken.jpg", "person0/empty.png"}
    assert all("\n" not in msg and msg for msg in bad.values())
    assert report["summary"]["protected"] == 12
    assert not list(out.rglob("*.part")) and not (out / "person0" / "broken.png").exists()


def test_flat_folder_is_one_person(tmp_path, generator):
    """A folder without subfolders is one person: side label 0, or --label's."""
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (20, 24), "white").save(flat / "me.png")
    Image.new("RGB", (20, 24), "black").save(flat / "me2.png")
    report = protect_folder(generator, flat, tmp_path / "o1", progress=False)
    assert report["errors"] == [] and report["summary"]["protected"] == 2
    assert [r["label"] for r in report["files"]] == [0, 0] and (tmp_path / "o1" / "me2.png").exists()
    report = protect_folder(generator, flat, tmp_path / "o2", ProtectOptions(label=3), progress=False)
    assert report["files"][0]["label"] == 3 and (tmp_path / "o2" / "me.png").exists()


def test_top_level_files_of_a_tree_are_one_more_person(photo_folder, tmp_path, generator):
    """person0..2/ are labels 0..2; files directly in IN are the next identity, 3."""
    Image.new("RGB", (20, 24), "white").save(photo_folder / "loose.png")
    report = protect_folder(generator, photo_folder, tmp_path / "out", progress=False)
    labels = {r["input"]: r["label"] for r in report["files"]}
    assert report["errors"] == [] and labels["loose.png"] == 3 and labels["person2/img0.png"] == 2
    assert (tmp_path / "out" / "loose.png").exists()


def _pillow_rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_cmyk_jpeg_is_protected_relative_to_pillows_rgb_reading(tmp_path, generator):
    """A CMYK JPEG comes back as an RGB JPEG within eps + the JPEG tolerance of Pillow's RGB reading of it
    (chroma subsampling used to move detailed colour by up to 254/255)."""
    src = tmp_path / "in" / "p"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 40, 4), dtype=np.uint8), "CMYK").save(src / "scan.jpg", quality=95)
    with pytest.warns(UserWarning, match="lossy"):
        report = protect_folder(generator, tmp_path / "in", tmp_path / "out", progress=False)
    out = tmp_path / "out" / "p" / "scan.jpg"
    assert Image.open(out).mode == "RGB" and Image.open(out).format == "JPEG"
    linf = np.abs(_pillow_rgb(out) - _pillow_rgb(src / "scan.jpg")).max()
    assert 0 < linf <= round(generator.eps * 255) + 32 and report["files"][0]["linf"] == linf


def test_palette_grey_alpha_and_16_bit_are_protected_relative_to_their_reading(tmp_path, generator):
    """P -> RGB, LA -> LA (alpha exact), I;16 -> L scaled by 1/257 (as viewers show it; Pillow's own
    RGB conversion clips it at 255), all within eps."""
    src = tmp_path / "in" / "p"
    src.mkdir(parents=True)
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (30, 26, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("P").save(src / "pal.png")
    Image.fromarray(np.dstack([rgb[..., 0], rgb[..., 1]]), "LA").save(src / "la.png")
    bright = rng.integers(0, 65536, (30, 26)).astype(np.uint16)
    Image.fromarray(bright).save(src / "bright16.png")
    Image.fromarray(bright // 300).save(src / "dark16.png")  # every value below 256: still 16-bit
    report = protect_folder(generator, tmp_path / "in", tmp_path / "out", progress=False)
    assert report["errors"] == []
    out = tmp_path / "out" / "p"
    eps255 = round(generator.eps * 255)
    assert Image.open(out / "pal.png").mode == "RGB"
    assert 0 < np.abs(_pillow_rgb(out / "pal.png") - _pillow_rgb(src / "pal.png")).max() <= eps255
    la = Image.open(out / "la.png")
    assert la.mode == "LA" and np.array_equal(np.asarray(la)[..., 1], rgb[..., 1])
    assert 0 < np.abs(_pillow_rgb(out / "la.png") - _pillow_rgb(src / "la.png")).max() <= eps255
    for name, values in (("bright16.png", bright), ("dark16.png", bright // 300)):
        grey = Image.open(out / name)
        expected = np.round(values / 257.0)
        assert grey.mode == "L" and 0 < np.abs(np.asarray(grey, dtype=np.int16) - expected).max() <= eps255, name


@pytest.mark.parametrize("name,mode", [("noise.webp", "RGB"), ("alpha.webp", "RGBA"), ("noise.png", "RGB"),
                                       ("alpha.png", "RGBA"), ("noise.tif", "RGB"), ("alpha.tif", "RGBA"),
                                       ("noise.bmp", "RGB"), ("grey.bmp", "L"), ("noise.ppm", "RGB")])
def test_lossless_inputs_are_written_losslessly(tmp_path, generator, name, mode):
    """A lossless WebP stays lossless WebP (it was re-encoded lossy at q95: L-inf 218 on noise); PNG, TIFF,
    BMP and PPM are exact too: every written pixel within eps, alpha unchanged."""
    src = tmp_path / "in" / "p"
    src.mkdir(parents=True)
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (36, 28, len(mode)), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(src / name, lossless=True)
    report = protect_folder(generator, tmp_path / "in", tmp_path / "out", progress=False)
    out = tmp_path / "out" / "p" / name
    assert report["errors"] == []
    if name.endswith(".webp"):
        assert b"VP8L" in out.read_bytes()[:64] and b"VP8 " not in out.read_bytes()[:64]
    assert 0 < np.abs(_pillow_rgb(out) - _pillow_rgb(src / name)).max() <= round(generator.eps * 255)
    if "A" in mode:
        assert np.array_equal(np.asarray(Image.open(out))[..., 3], pixels[..., 3])


def test_lossy_webp_stays_lossy(tmp_path, generator):
    src = tmp_path / "in" / "p"
    src.mkdir(parents=True)
    Image.new("RGB", (30, 30), (120, 80, 60)).save(src / "photo.webp", quality=80)
    with pytest.warns(UserWarning, match="lossy"):
        protect_folder(generator, tmp_path / "in", tmp_path / "out", progress=False)
    assert b"VP8 " in (tmp_path / "out" / "p" / "photo.webp").read_bytes()[:64]


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_outputs_get_the_inputs_permissions(tmp_path, generator, mode):
    """Outputs were 0600 (a renamed temporary file); now the input's mode (less the umask, as cp does)."""
    src = make_photo_folder(tmp_path / "in", identities=1, per_identity=1)
    (src / "person0" / "img0.png").chmod(mode)
    old = os.umask(0o022)
    try:
        protect_folder(generator, src, tmp_path / "out", progress=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out" / "person0" / "img0.png").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "out" / "report.json").stat().st_mode) == 0o644


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_output_beyond_eps_is_an_error_and_not_kept(tmp_path, generator, monkeypatch, suffix):
    """A broken delta (40/255, eps is 8) must not reach the user: one error line, no file."""
    src = make_photo_folder(tmp_path / "in", identities=1, per_identity=2, suffix=suffix)
    monkeypatch.setattr("segue.protect.Protector.perturb", lambda self, items: [
        (np.clip(photo.rgb.astype(np.int16) + 40, 0, 255).astype(np.uint8), None) for _, photo in items])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = protect_folder(generator, src, tmp_path / "out", progress=False)
    assert report["summary"]["protected"] == 0 and len(report["errors"]) == 2
    assert all("L-inf" in e["error"] and "\n" not in e["error"] for e in report["errors"])
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == ["report.json"]


def test_overwrite_redoes_existing_outputs(photo_folder, tmp_path, generator):
    out = tmp_path / "out"
    protect_folder(generator, photo_folder, out, progress=False)
    again = protect_folder(generator, photo_folder, out, ProtectOptions(overwrite=True), progress=False)
    assert again["summary"]["protected"] == 12 and again["skipped_existing"] == []


def test_rerun_skips_existing_outputs(photo_folder, tmp_path, generator):
    out = tmp_path / "out"
    protect_folder(generator, photo_folder, out, progress=False)
    again = protect_folder(generator, photo_folder, out, progress=False)
    assert again["summary"]["protected"] == 0 and len(again["skipped_existing"]) == 12


def test_output_inside_input_is_refused(photo_folder, generator):
    with pytest.raises(ValueError):
        protect_folder(generator, photo_folder, photo_folder / "out", progress=False)


def test_grey_and_alpha_keep_their_mode(tmp_path, generator):
    src = tmp_path / "in" / "p"
    src.mkdir(parents=True)
    Image.fromarray(np.full((24, 24), 120, np.uint8), "L").save(src / "grey.png")
    Image.fromarray(np.full((24, 24, 4), 100, np.uint8), "RGBA").save(src / "rgba.png")
    protect_folder(generator, tmp_path / "in", tmp_path / "out", progress=False)
    assert Image.open(tmp_path / "out" / "p" / "grey.png").mode == "L"
    rgba = Image.open(tmp_path / "out" / "p" / "rgba.png")
    assert rgba.mode == "RGBA" and np.asarray(rgba)[..., 3].min() == 100


def test_ssim_is_measured_on_every_nth_photo_of_the_plan(photo_folder, tmp_path, generator):
    """photos 1, 1+N, ... of IN in natural order get an SSIM, the others null; PSNR and L-inf on every one."""
    report = protect_folder(generator, photo_folder, tmp_path / "o5", ProtectOptions(ssim_every=5), progress=False)
    rows = report["files"]  # 12 photos in natural order: person0/img0 .. person2/img3
    assert [r["ssim"] is not None for r in rows] == [i % 5 == 0 for i in range(12)]
    assert all(r["psnr"] is not None and r["linf"] > 0 for r in rows)
    s = report["summary"]
    assert s["ssim_photos"] == 3 and s["ssim_mean"] == round(float(np.mean([r["ssim"] for r in rows[::5]])), 4)
    every = protect_folder(generator, photo_folder, tmp_path / "o1", ProtectOptions(ssim_every=1), progress=False)
    assert every["summary"]["ssim_photos"] == 12 and [r["ssim"] for r in every["files"]][::5] == [r["ssim"] for r in rows[::5]]
    none = protect_folder(generator, photo_folder, tmp_path / "o0", ProtectOptions(ssim_every=0), progress=False)
    assert none["summary"]["ssim_photos"] == 0 and none["summary"]["ssim_mean"] is None
    # the sample is the plan's, not the run's: photos already done keep their place in it
    (tmp_path / "o5" / "person0" / "img1.png").unlink()
    again = protect_folder(generator, photo_folder, tmp_path / "o5", ProtectOptions(ssim_every=5), progress=False)
    assert [r["input"] for r in again["files"]] == ["person0/img1.png"] and again["files"][0]["ssim"] is None


def test_lanes_write_the_same_bytes_and_leave_torch_threads_as_they_were(photo_folder, tmp_path, generator):
    threads = torch.get_num_threads()
    protect_folder(generator, photo_folder, tmp_path / "one", ProtectOptions(workers=1, batch_size=4), progress=False)
    protect_folder(generator, photo_folder, tmp_path / "three", ProtectOptions(workers=3, batch_size=4), progress=False)
    one, three = (tree_digest(tmp_path / d) for d in ("one", "three"))
    one.pop("report.json"), three.pop("report.json")
    assert one == three and len(one) == 12 and torch.get_num_threads() == threads


def test_png_bytes_round_trip_every_mode_with_metadata():
    from segue.imageio import png_bytes

    rng = np.random.default_rng(0)
    exif = Image.Exif()
    exif[0x010F] = "SegueCam"
    for shape, mode in [((30, 26, 3), "RGB"), ((30, 26, 4), "RGBA"), ((30, 26), "L"), ((30, 26, 2), "LA"), ((1, 1, 3), "RGB")]:
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        for level in (0, 1, 9):
            im = Image.open(io.BytesIO(png_bytes(pixels, level, icc_profile=b"icc" * 50, exif=exif.tobytes())))
            im.load()
            assert im.format == "PNG" and im.mode == mode and np.array_equal(np.asarray(im), pixels)
            assert im.info["icc_profile"] == b"icc" * 50 and im.getexif()[0x010F] == "SegueCam"


def test_generator_input_is_resized_as_the_training_photos_were():
    """8-bit bilinear with antialiasing: Pillow's BILINEAR, which segue.data.read_rgb used for training."""
    from segue.protect import to_work_size

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (57, 57, 3), dtype=np.uint8)
    photos = [np.asarray(Image.fromarray(base).resize((224, 224), Image.BICUBIC)), rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)]
    x = to_work_size(photos, 112)
    pil = np.stack([np.asarray(Image.fromarray(p).resize((112, 112), Image.BILINEAR)) for p in photos])
    assert x.shape == (2, 3, 112, 112) and x.is_contiguous()
    assert torch.equal((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1), torch.from_numpy(pil))


def test_quality_metrics_have_one_definition_and_image_quality_is_unchanged():
    """segue.benchmark.sets.image_quality (committed benchmark results) and protect's per-photo metrics."""
    import math
    import statistics

    import kornia.metrics

    from segue.benchmark.sets import image_quality
    from segue.quality import diff_stats, quality_metrics

    torch.manual_seed(0)
    clean = torch.rand(70, 3, 24, 24)
    protected = ((clean + (torch.rand_like(clean) - 0.5) * 16 / 255).clamp(0, 1) * 255).round() / 255
    protected[3] = clean[3]  # an unchanged image: infinite PSNR, left out of the mean
    psnrs, ssims = [], []  # image_quality as it was written before segue.quality
    for start in range(0, 70, 64):
        a, b = clean[start : start + 64], protected[start : start + 64]
        psnrs += [10 * math.log10(1 / m) for m in ((a - b) ** 2).flatten(1).mean(1).tolist() if m > 0]
        ssims += kornia.metrics.ssim(a, b, 11).flatten(1).mean(1).tolist()
    from segue.visibility import visibility_terms

    haar, _, de95 = visibility_terms(clean, protected)  # the visibility every written file is held to, as medians
    assert image_quality(clean, protected) == {
        "psnr_mean": round(statistics.mean(psnrs), 3), "ssim_mean": round(statistics.mean(ssims), 5),
        "linf_max_255": int(((clean - protected).abs().max() * 255).round().item()),
        "haarpsi_median": round(statistics.median(haar.tolist()), 4),
        "delta_e_p95_median": round(statistics.median(de95.tolist()), 3),
        "lpips": "skipped (no offline LPIPS backbone weights)"}
    a8 = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    b8 = np.clip(a8.astype(np.int16) + np.random.default_rng(2).integers(-9, 10, a8.shape), 0, 255).astype(np.uint8)
    diff = a8.astype(np.int64) - b8
    assert diff_stats(a8, b8) == (int(np.abs(diff).max()), int((diff**2).sum()))
    black, white = np.zeros((1500, 1000, 3), np.uint8), np.full((1500, 1000, 3), 255, np.uint8)
    assert diff_stats(black, white) == diff_stats(white, black) == (255, 1500 * 1000 * 3 * 255**2)  # no overflow
    m = quality_metrics(a8, b8)
    assert m["linf"] == np.abs(diff).max() and m["psnr"] == round(10 * math.log10(1 / ((diff**2).mean() / 255**2)), 3)
    assert m["ssim"] == round(float(kornia.metrics.ssim(torch.from_numpy(a8).permute(2, 0, 1)[None].float() / 255,
                                                        torch.from_numpy(b8).permute(2, 0, 1)[None].float() / 255, 11).mean()), 5)
