"""segue benchmark: a tiny grid end to end, resume, --only, and the CLI on an ImageFolder."""

import importlib.util
import json

import pytest
import torch
import yaml

from conftest import make_photo_folder
from segue import benchmark
from segue.cli import main
from segue.data import FaceSet


def tiny_data(n=12, size=32):
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 3
    images = (((torch.rand(n, 3, size, size, generator=gen) * 0.4 + labels.view(-1, 1, 1, 1) * 0.3) * 255).round() / 255).clamp(0, 1)
    return FaceSet(images, labels, ["a", "b", "c"])


def tiny_config(out):
    return {
        "name": "tiny", "data": {"train": "unused", "test": "unused", "image_size": 32}, "output": str(out),
        "cache": str(out.parent / "cache"),
        "device": "cpu", "victim": {"epochs": 1, "batch_size": 6},
        "methods": {"clean": {"name": "none"}, "random": {"name": "random", "eps_255": 8}},
        "countermeasures": {"none": [], "gray": ["grayscale"], "mixup": [{"name": "mixup", "alpha": 1.0}]},
        "grid": [{"methods": ["clean", "random"], "victims": ["resnet18"], "countermeasures": ["none"], "seeds": [0]},
                 {"methods": ["random"], "countermeasures": ["gray", "mixup"]}],
    }


def test_grid_runs_reports_and_resumes(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path / "out")
    data = (tiny_data(), tiny_data())
    ids = [c.id for c in benchmark.cells_of(cfg)]
    assert ids == ["clean|resnet18|none|0", "random|resnet18|none|0", "random|resnet18|gray|0", "random|resnet18|mixup|0"]

    first = benchmark.run_benchmark(cfg, only=["random|*|none|*"], data=data, log=lambda m: None)
    assert first["ran"] == ["random|resnet18|none|0"] and len(first["pending"]) == 0

    rest = benchmark.run_benchmark(cfg, data=data, log=lambda m: None)
    assert rest["skipped"] == ["random|resnet18|none|0"] and len(rest["ran"]) == 3

    out = tmp_path / "out"
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["cell"] for r in rows) == sorted(ids)
    for r in rows:  # one epoch, scored on the 12 test photos of 3 people
        assert len(r["history"]) == 1 and r["peak_acc"] == r["final_acc"] == r["history"][0]["test_acc"]
        assert abs(r["peak_acc"] * 12 - round(r["peak_acc"] * 12)) < 1e-3 and r["chance"] == round(1 / 3, 4)
    assert next(r for r in rows if r["countermeasure"] == "mixup")["countermeasures"] == ["mixup(alpha=1.0)"]
    methods = json.loads((out / "methods.json").read_text())
    assert methods["random"]["linf_max_255"] == 8 and methods["random"]["psnr_mean"] > 30
    assert methods["random"]["lpips"].startswith("skipped") and methods["clean"]["psnr_mean"] is None
    table = (out / "table.md").read_text()
    assert "Table I shape" in table and "Table IV shape" in table and "| random | resnet18 | mixup | 0 |" in table
    assert (tmp_path / "cache" / "random.safetensors").exists() and not (out / ".cache").exists()
    if importlib.util.find_spec("matplotlib"):  # plots need the bench extra
        assert (out / "curves.png").stat().st_size > 1000

    # a rerun trains nothing and regenerates nothing
    monkeypatch.setattr("segue.victim.train_victim", lambda *a, **k: pytest.fail("retrained a finished cell"))
    monkeypatch.setattr("segue.methods.create_method", lambda *a, **k: pytest.fail("regenerated a cached set"))
    again = benchmark.run_benchmark(cfg, data=data, log=lambda m: None)
    assert again["ran"] == [] and len(again["skipped"]) == 4
    assert len((out / "results.jsonl").read_text().splitlines()) == 4


def test_unknown_names_in_a_grid_fail_before_training(tmp_path):
    cfg = tiny_config(tmp_path / "out")
    cfg["grid"] = [{"methods": ["clean"], "countermeasures": ["nope"]}]
    with pytest.raises(KeyError, match="nope"):
        benchmark.cells_of(cfg)


def test_cli_benchmark_on_an_image_folder(tmp_path, capsys):
    train = make_photo_folder(tmp_path / "train", identities=2, per_identity=4, size=(32, 32))
    test = make_photo_folder(tmp_path / "test", identities=2, per_identity=2, size=(32, 32), seed=1)
    cfg = tmp_path / "grid.yaml"
    cfg.write_text(
        f"data: {{train: {train}, test: {test}, image_size: 32}}\noutput: {tmp_path / 'res'}\ndevice: cpu\n"
        f"cache: {tmp_path / 'cache'}\n"
        "victim: {epochs: 1, batch_size: 4}\nmethods: {lsp: {name: lsp}}\n"
        "countermeasures: {none: [], jpeg_q10: [{name: jpeg, quality: 10}]}\n"
        "grid: [{methods: [lsp], victims: [resnet18], countermeasures: [none, jpeg_q10], seeds: [0]}]\n")
    assert main(["benchmark", str(cfg), "--list"]) == 0
    assert capsys.readouterr().out.split() == ["pending", "lsp|resnet18|none|0", "pending", "lsp|resnet18|jpeg_q10|0"]
    assert main(["benchmark", str(cfg), "--max-cells", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ran"] == ["lsp|resnet18|none|0"] and summary["pending"] == 1
    assert main(["benchmark", str(cfg), "--deadline", "2000-01-01T00:00:00"]) == 0  # past deadline: starts nothing
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ran"] == []
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "cache" / "samples.png").exists()
    assert main(["benchmark", str(tmp_path / "missing.yaml")]) == 2


def test_only_runs_cells_in_the_patterns_order(tmp_path):
    """--only lists the most wanted cells first; a deadline then cuts the least wanted ones."""
    cells = benchmark.cells_of(tiny_config(tmp_path / "out"))
    picked = benchmark.select(cells, ["random|*|mixup|*,clean|*", "random|*"])
    assert [c.id for c in picked] == ["random|resnet18|mixup|0", "clean|resnet18|none|0",
                                      "random|resnet18|none|0", "random|resnet18|gray|0"]


def test_config_base_is_inherited_and_overridden(tmp_path):
    """``base:`` reuses another grid; mappings are overridden key by key, the rest replaced."""
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(tiny_config(tmp_path / "out_a")))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"base": "a.yaml", "output": str(tmp_path / "out_b"),
                                                     "methods": {"random": {"name": "random", "eps_255": 4}}}))
    a, b = benchmark.load_config(tmp_path / "a.yaml"), benchmark.load_config(tmp_path / "b.yaml")
    assert b["methods"]["random"]["eps_255"] == 4 and b["methods"]["clean"] == a["methods"]["clean"]
    assert b["grid"] == a["grid"] and b["output"].endswith("out_b") and "base" not in b


def test_deadline_hh_mm_means_the_next_such_time():
    """--deadline 00:10 given at 22:52 is tonight (read as today it had passed and every cell was skipped)."""
    from datetime import datetime, timezone

    parse_deadline = benchmark.parse_deadline
    now = datetime(2026, 11, 27, 22, 52, tzinfo=timezone.utc)
    assert parse_deadline("00:10", now) == datetime(2026, 11, 28, 0, 10, tzinfo=timezone.utc)
    assert parse_deadline("23:30", now) == datetime(2026, 11, 27, 23, 30, tzinfo=timezone.utc)
    assert parse_deadline("2026-11-28T00:45", now) == datetime(2026, 11, 28, 0, 45, tzinfo=timezone.utc)
    assert parse_deadline(None) is None
