"""Recipes (configs/recipes/*.yaml, segue.recipes, segue rebuild): each shipped generator's chain of
training stages is what its committed weights were made with, and the whole chain runs end to end."""

import json
from pathlib import Path

import pytest
import torch

from conftest import make_photo_folder
from segue.recipes import load_recipe, rebuild, stage_config
from segue.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CHAIN = ["webface10_112",  # default
         "robust_s4", "robust_2band_s4", "robust_2band_s4_long", "robust_2band_blocks", "robust_2band_fdist",  # robust
         "robust_2band_split", "robust_2band_split2", "robust_2band_psnr18s2", "robust_2band_rem",
         "robust_2band_rem_long"]  # robust_rem
# init_generator values in the provenance that name a shipped generator, not a file: the one shipped when the
# stage ran (docs/experiments/robustness.md: the block fine-tune's "--init robust" were robust_2band_s4_long's bytes).
SHIPPED_THEN = {"shipped": "webface10_112", "robust": "robust_2band_s4_long"}


def _as_json(obj):
    return json.loads(json.dumps(obj))


def test_recipes_chain_the_shipped_generators():
    for name, n, ships in (("default", 1, "webface10_112"), ("robust", 6, "webface10_112_robust"),
                           ("robust_rem", 11, "webface10_112_robust_rem")):
        recipe, stages = load_recipe(name)
        assert [s.name for s in stages] == CHAIN[:n]
        assert recipe["ships"] == f"{ships}.safetensors"
        assert stages[-1].recorded["provenance"] == f"src/segue/weights/{ships}.json"


def test_the_celeba234_recipe_is_what_its_committed_weights_were_trained_with():
    """One stage on the CelebA234 train people (a named set, not a folder), recorded like the others; its
    weights are an experiment's (not shipped)."""
    recipe, (stage,) = load_recipe("celeba234")
    rec = stage.recorded
    assert "ships" not in recipe and recipe["data"] == "celeba234:train"
    assert (ROOT / recipe["weights"]).is_file() and rec["provenance"] == recipe["weights"].replace(".safetensors", ".json")
    prov = json.loads((ROOT / rec["provenance"]).read_text())["provenance"]
    cfg = TrainConfig.from_dict(stage_config(stage, None))
    cfg.generator.image_size = cfg.image_size
    assert _as_json(cfg.to_dict()) == _as_json(TrainConfig.from_dict(prov["train_config"]).to_dict())
    assert stage.epochs == rec["epochs_run"] == prov["epochs_run"] and rec["train_seconds"] == prov["train_seconds"]
    assert prov["train_data"] == "celeba234:train" and len(prov["classes"]) == 164 and rec["device"] == prov["device"]


@pytest.mark.parametrize("index", range(len(CHAIN)), ids=CHAIN)
def test_each_stage_is_what_its_committed_weights_were_trained_with(index):
    """The stage's config with its recorded budget and start is the provenance's train_config exactly;
    its epochs are the epochs those weights ran; it starts from the previous stage."""
    stage = load_recipe("robust_rem")[1][index]
    rec = stage.recorded
    prov = json.loads((ROOT / rec["provenance"]).read_text())["provenance"]
    cfg = TrainConfig.from_dict(stage_config(stage, rec["init_generator"], time_budget=True))
    cfg.generator.image_size = cfg.image_size
    assert _as_json(cfg.to_dict()) == _as_json(TrainConfig.from_dict(prov["train_config"]).to_dict())
    assert stage.epochs == rec["epochs_run"] == prov["epochs_run"]
    assert rec["train_seconds"] == prov["train_seconds"]
    if "device" in prov:
        assert rec["device"] == prov["device"]
    init = rec["init_generator"]
    if index == 0:
        assert init is None
    else:
        assert SHIPPED_THEN.get(init, Path(str(init)).stem) == CHAIN[index - 1]


@pytest.fixture
def faces(tmp_path):
    return make_photo_folder(tmp_path / "faces", identities=3, per_identity=4, size=(32, 32))


def test_rebuild_runs_every_stage_of_robust_rem_on_a_tiny_scale(tmp_path, faces):
    """segue rebuild robust_rem --tiny: all 11 stages in order, each from the previous one's weights,
    each writing its config, weights and results.json; the last one loads as a robust_rem-shaped generator.
    Run again, every stage is kept; with another scale the folder is refused."""
    from segue.checkpoint import load_generator

    out = tmp_path / "out"
    rows = rebuild("robust_rem", out, device="cpu", data=faces, tiny=True)
    assert [r["name"] for r in rows] == CHAIN and not any(r["kept"] for r in rows)
    previous = None
    for row in rows:
        results = json.loads(Path(row["results"]).read_text())
        assert results["epochs_run"] == 1 and results["image_size"] == 32
        assert results["train_config"]["init_generator"] == previous
        assert (out / f"{row['name']}.config.yaml").is_file() and Path(row["weights"]).is_file()
        previous = str(Path(row["weights"]).resolve())
    summary = json.loads((out / "robust_rem.recipe.json").read_text())
    assert [s["name"] for s in summary["stages"]] == CHAIN and summary["tiny"] is True

    g, prov = load_generator(rows[-1]["weights"])
    shipped, _ = load_generator("robust_rem")
    assert g.config.width == 16 and g.config.image_size == 32
    for key in ("eps", "low_band", "low_band_luma", "low_band_blocks", "low_band_eps", "psnr_floor", "psnr_fine_only"):
        assert getattr(g.config, key) == getattr(shipped.config, key), key
    assert prov["train_config"]["distortion"]["adv_rho"] == 4 / 255
    with torch.no_grad():
        assert g(torch.rand(2, 3, 32, 32), torch.tensor([0, 2])).abs().max() <= g.eps + 1e-7

    again = rebuild("robust_rem", out, device="cpu", data=faces, tiny=True)
    assert all(r["kept"] for r in again)
    with pytest.raises(ValueError, match="another config"):
        rebuild("default", out, device="cpu", data=faces)  # the full-size default stage would overwrite a tiny one


def test_rebuild_command_dry_run_and_unknown_recipe(tmp_path, faces, capsys):
    from segue.cli import main

    out = tmp_path / "dry"
    assert main(["rebuild", "robust", "-o", str(out), "--data", str(faces), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert err.count("segue train ") == 6 and "--config" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.config.yaml" for n in CHAIN[:6])
    cfg = TrainConfig.from_dict(__import__("yaml").safe_load((out / "robust_s4.config.yaml").read_text()))
    assert (cfg.epochs, cfg.max_seconds, cfg.generator.smooth) == (11, None, 4)
    assert cfg.init_generator == str((out / "webface10_112.safetensors").resolve())
    assert main(["rebuild", "nope", "-o", str(out)]) == 2
    assert "known: celeba234, default, robust, robust_rem" in capsys.readouterr().err
