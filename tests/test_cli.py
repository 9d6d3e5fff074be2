import json

import pytest

from conftest import make_photo_folder, tree_digest
from segue.cli import main


def test_train_protect_evaluate_end_to_end(tmp_path, capsys):
    data = make_photo_folder(tmp_path / "train", identities=3, per_identity=4, size=(32, 32))
    test = make_photo_folder(tmp_path / "test", identities=3, per_identity=2, size=(32, 32), seed=1)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("image_size: 32\nbatch_size: 8\nschedule: interleaved\ngenerator: {width: 16}\ndistortion: {pgd_steps: 1}\n")
    weights = tmp_path / "g.safetensors"
    assert main(["train", str(data), "-o", str(weights), "--config", str(cfg), "--epochs", "1", "--device", "cpu"]) == 0
    results = json.loads((tmp_path / "g.results.json").read_text())
    assert results["image_size"] == 32 and results["train_config"]["epochs"] == 1 and "torch" in results["versions"]

    before = tree_digest(data)
    out = tmp_path / "protected"
    assert main(["protect", str(data), "-o", str(out), "--weights", str(weights), "--device", "cpu", "-q"]) == 0
    assert tree_digest(data) == before
    assert len(list(out.rglob("*.png"))) == 12 and (out / "report.json").exists()

    res = tmp_path / "results.json"
    assert main(["evaluate", "--train", str(out), "--test", str(test), "--epochs", "1", "--image-size", "32",
                 "--device", "cpu", "-o", str(res)]) == 0
    r = json.loads(res.read_text())
    assert len(r["history"]) == 1 and 0 <= r["peak_acc"] <= 1 and r["victim"]["model"] == "resnet18"


def test_train_flags_shape_the_generator(tmp_path):
    """--smooth/--low-band/--low-band-luma/--low-band-blocks/--low-band-eps reach the saved generator's config;
    a store_true flag left out keeps the config file's value."""
    from segue.checkpoint import load_generator

    data = make_photo_folder(tmp_path / "train", identities=2, per_identity=2, size=(32, 32))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("image_size: 32\nbatch_size: 4\ngenerator: {width: 16, low_band_luma: true}\n"
                   "distortion: {pgd_steps: 0}\n")
    weights = tmp_path / "g.safetensors"
    assert main(["train", str(data), "-o", str(weights), "--config", str(cfg), "--epochs", "1", "--device", "cpu",
                 "--smooth", "2", "--low-band", "8", "--low-band-blocks", "--low-band-eps", "5"]) == 0
    g, _ = load_generator(weights)
    assert (g.config.smooth, g.config.low_band, g.config.low_band_luma, g.config.low_band_blocks) == (2, 8, True, True)
    assert g.config.low_band_eps == pytest.approx(5 / 255)


def test_missing_input_is_a_one_line_error(tmp_path, capsys):
    assert main(["protect", str(tmp_path / "nope"), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("segue protect: error:")
