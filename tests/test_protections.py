"""One registry of protections (segue.protections): generators and cloak strengths behind one name."""

import pytest
import torch

from conftest import make_photo_folder, tree_digest
from segue.cli import main
from segue.protect.presets import list_strengths
from segue.protections import create_protection, list_protections, protection_card
from segue.shipped import list_weights

FIELDS = {"kind", "visibility", "haarpsi_median", "delta_e_p95_median", "seconds_per_photo", "stops", "does_not_stop",
          "results"}


def test_every_generator_and_strength_has_one_card_with_the_same_fields():
    assert list_protections(kind="generator") == list_weights()
    assert list_protections(kind="cloak") == list_strengths()
    assert sorted(list_weights() + list_strengths()) == list_protections()
    for name in list_protections():
        card = protection_card(name)
        assert set(card) == FIELDS, name
        assert card["visibility"] in ("invisible", "faint", "visible")
        assert 0 < card["haarpsi_median"] <= 1 and card["delta_e_p95_median"] > 0 and card["seconds_per_photo"] > 0
    # a generator is one forward pass, a cloak a second a photo; each says what it does not stop
    assert protection_card("default")["seconds_per_photo"] < 0.1 < protection_card("low")["seconds_per_photo"]
    assert "from scratch" in protection_card("low")["does_not_stop"]
    assert "dlib" in protection_card("default")["does_not_stop"]


def test_segue_list_protections_prints_each_card(capsys):
    assert main(["list", "protections"]) == 0
    out = capsys.readouterr().out
    for name in list_protections():
        assert f"  {name} " in out
    assert out.count("does not stop:") == len(list_protections()) and out.count("(median per file)") == len(list_protections())


def test_protect_by_protection_name_is_the_same_as_by_weights(tmp_path, capsys):
    data = make_photo_folder(tmp_path / "in", identities=1, per_identity=2, size=(48, 48))
    by_name, by_weights = tmp_path / "a", tmp_path / "b"
    assert main(["protect", str(data), "-o", str(by_name), "--protection", "robust", "--device", "cpu", "-q"]) == 0
    assert main(["protect", str(data), "-o", str(by_weights), "--weights", "robust", "--device", "cpu", "-q"]) == 0
    digest = lambda root: {k: v for k, v in tree_digest(root).items() if not k.endswith("report.json")}  # noqa: E731
    assert digest(by_name) == digest(by_weights)
    capsys.readouterr()
    assert main(["protect", str(data), "-o", str(tmp_path / "c"), "--protection", "nope", "-q"]) == 2
    assert main(["protect", str(data), "-o", str(tmp_path / "c"), "--protection", "low", "--weights", "default",
                 "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unknown protection 'nope'" in err[0] and "not with --weights" in err[1]
    assert not (tmp_path / "c").exists()


def test_the_api_takes_a_cloak_strength_by_name():
    """``protect_images(weights="low")``: the cloak, with its visibility budget, behind the generator's call."""
    import segue
    from segue.data import load_orl
    from segue.visibility import GENERATOR_VISIBILITY

    pytest.importorskip("cv2")
    assert create_protection("low").visibility_budget is GENERATOR_VISIBILITY
    faces = load_orl(112, 8, 1)[0].images[:1]
    out = segue.protect_images(faces, labels=0, weights="low")
    assert out.shape == faces.shape and not torch.equal(out, faces)
    assert (out - faces).abs().max() <= 16 / 255 + 1e-6


def test_each_strength_card_carries_the_numbers_of_its_results_file():
    """A card is a measurement: its medians, seconds and dlib accuracies are those of the committed run."""
    import json
    from pathlib import Path

    from segue.protect.presets import RESULTS_FILES, strength_tags

    for name in list_strengths():
        rows = json.loads((Path(__file__).resolve().parent.parent / RESULTS_FILES[name]).read_text())["rows"]
        row, tags = rows["cloak" if name == "visible" else f"strength:{name}"], strength_tags(name)
        assert tags["haarpsi_median"] == round(row["haarpsi_median"], 3), name
        assert tags["delta_e_p95_median"] == round(row["delta_e_p95_median"], 2), name
        assert tags["seconds_per_photo"] == round(row["seconds_per_photo"], 1), name
        linear, knn = row["attacks"]["dlib-linear"], row["attacks"]["dlib-knn"]
        assert tags["measured"].startswith(f"dlib-linear / 1-NN {100 * linear['everyone']:.1f} / {100 * knn['everyone']:.1f} % "
                                           f"(each alone {100 * linear['alone']:.1f} / {100 * knn['alone']:.1f}"), name
