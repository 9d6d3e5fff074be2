import json

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


def test_flat_folder_needs_label(tmp_path, generator):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (20, 24), "white").save(flat / "me.png")
    report = protect_folder(generator, flat, tmp_path / "o1", progress=False)
    assert report["summary"]["protected"] == 0 and "--label" in report["errors"][0]["error"]
    report = protect_folder(generator, flat, tmp_path / "o2", ProtectOptions(label=3), progress=False)
    assert report["files"][0]["label"] == 3 and (tmp_path / "o2" / "me.png").exists()


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
