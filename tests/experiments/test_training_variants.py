"""experiments/training_variants.py and experiments/train.py: the training options that left the
package, the experiment configs (checked against the committed weights they made) and the recipe sweep."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # experiments/ is a folder of the repository, not part of the installed package

import pytest  # noqa: E402
import torch  # noqa: E402

from experiments.generator_variants import VariantGeneratorConfig, load_variant
from experiments.training_variants import VariantTrainConfig, VariantTrainer, train_variant
from segue.distortion import DistortionConfig
from segue.runtime import load_config_file, merge_config

CPU = torch.device("cpu")


def tiny_variant_config(**overrides) -> VariantTrainConfig:
    """The tests' tiny config (32 px, width 16, 2-step PGD), interleaved as the package's default once was."""
    base = dict(image_size=32, epochs=2, batch_size=8, schedule="interleaved",
                generator=VariantGeneratorConfig(width=16), distortion=DistortionConfig(pgd_steps=2), seed=0)
    base.update(overrides)
    return VariantTrainConfig(**base)


def test_interleaved_schedule_steps_f_then_g_every_batch(tiny_data):
    cfg = tiny_variant_config(epochs=2, surrogate_steps=2, stop_loss=0.0)
    _, _, history = train_variant(tiny_data, tiny_data.labels, 4, cfg, CPU)
    assert [r["stage"] for r in history] == ["interleaved"] * 2
    assert {"protected_loss", "distorted_loss", "delta_l2"} <= set(history[0])
    with pytest.raises(ValueError, match="schedule"):
        VariantTrainer(tiny_variant_config(schedule="nope"), 4, CPU)


def test_fixed_seed_is_deterministic_with_the_variants(tiny_data):
    cfg = tiny_variant_config(epochs=1, carrier_swap=0.5, surrogate_mode_for_generator="train")
    g1, _, h1 = train_variant(tiny_data, tiny_data.labels, 4, cfg, CPU)
    g2, _, h2 = train_variant(tiny_data, tiny_data.labels, 4, cfg, CPU)
    for (k, a), b in zip(g1.state_dict().items(), g2.state_dict().values()):
        assert torch.equal(a, b), k
    assert [dict(r, seconds=0) for r in h1] == [dict(r, seconds=0) for r in h2]


def test_carrier_swap_adds_delta_to_other_photos():
    torch.manual_seed(0)
    trainer = VariantTrainer(tiny_variant_config(carrier_swap=1.0), 3, CPU)
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 8, 8) / 10
    carried = trainer.carrier(x)
    assert sorted(carried[:, 0, 0, 0].tolist()) == sorted(x[:, 0, 0, 0].tolist())  # a permutation of the batch
    assert torch.equal(VariantTrainer(tiny_variant_config(), 3, CPU).carrier(x), x)  # off: x itself


def test_bn_recalibration_makes_the_eval_mode_surrogate_usable(tiny_data):
    # 4 batches per surrogate pass: f's running statistics are mostly their initial values and
    # f in eval mode is at chance (ln 4 = 1.39); recomputing them must bring its loss down.
    plain = tiny_variant_config(schedule="paper", epochs=1, stop_loss=0.0)
    recal = tiny_variant_config(schedule="paper", epochs=1, stop_loss=0.0, recalibrate_bn=True)
    _, _, h_plain = train_variant(tiny_data, tiny_data.labels, 4, plain, CPU)
    _, _, h_recal = train_variant(tiny_data, tiny_data.labels, 4, recal, CPU)
    assert h_recal[0]["protected_loss"] < h_plain[0]["protected_loss"] - 0.1, (h_plain, h_recal)


def test_code_bits_target_gives_a_bit_reading_surrogate(tiny_data):
    cfg = tiny_variant_config(epochs=1, side_target="code_bits")
    generator, surrogate, history = train_variant(tiny_data, tiny_data.labels, 4, cfg, CPU)
    assert surrogate.fc.out_features == 16
    assert 0 < history[0]["protected_loss"] < 2  # binary cross-entropy per bit, ~0.69 untrained
    with pytest.raises(ValueError, match="side_target"):
        train_variant(tiny_data, tiny_data.labels, 4, tiny_variant_config(side_target="nope"), CPU)


def test_variant_config_round_trips_and_keeps_every_option():
    cfg = tiny_variant_config(carrier_swap=0.5, generator=VariantGeneratorConfig(width=16, luma=True, norm="batch"))
    assert VariantTrainConfig.from_dict(cfg.to_dict()) == cfg


# Each experiment config and the committed weights it made (their provenance's train_config; the
# command line set epochs / max_seconds / init_generator for all but the luma one).
EXPERIMENTS = {
    "robust_luma_112": "robust_luma_112",
    "robust_jpeg_112": "robust_2band_jpeg",
    "robust_fdist_q10_112": "robust_2band_fdist_q10",
    "robust_eps11_112": "robust_2band_eps11",
    "robust_psnr13_112": "robust_2band_psnr13",
    "robust_split44_112": "robust_2band_split44",
    "robust_split71_112": "robust_2band_split71",
}


@pytest.mark.parametrize("config, weights", sorted(EXPERIMENTS.items()))
def test_experiment_configs_are_what_their_committed_weights_were_trained_with(config, weights):
    meta = json.loads((ROOT / "benchmarks/results/robust_gpu" / f"{weights}.json").read_text())
    recorded = VariantTrainConfig.from_dict(meta["provenance"]["train_config"]).to_dict()
    ours = VariantTrainConfig.from_dict(load_config_file(ROOT / "experiments/configs" / f"{config}.yaml")).to_dict()
    ours["generator"]["image_size"] = ours["image_size"]
    cli_set = ("epochs", "max_seconds", "init_generator") if config != "robust_luma_112" else ()
    for key in cli_set:
        ours[key] = recorded[key]
    assert json.loads(json.dumps(ours)) == json.loads(json.dumps(recorded))


@pytest.mark.parametrize("grid", ["tiny_smoke", "gpu_sweep"])
def test_recipe_sweep_runs_are_variant_configs(grid):
    """experiments/recipe_sweep.py's runs (interleaved, code_bits, f in train mode) load as VariantTrainConfig."""
    import yaml

    spec = yaml.safe_load((ROOT / "benchmarks/grids" / f"{grid}.yaml").read_text())  # its base: is repo-relative
    base = load_config_file(ROOT / spec["base"])
    for run in spec["runs"]:
        VariantTrainConfig.from_dict(merge_config(base, run.get("overrides", {})))


def test_experiments_train_writes_weights_only_the_variants_load(tiny_data, tmp_path, capsys):
    """python -m experiments.train with the luma experiment at 32 px: the weights and results.json are written,
    load_variant reads them, the package refuses them by name."""
    from experiments.train import main
    from segue.checkpoint import load_generator

    folder = Path(tiny_data.paths[0]).parents[1]
    cfg = tmp_path / "luma_tiny.yaml"
    cfg.write_text(f"base: {ROOT / 'experiments/configs/robust_luma_112.yaml'}\nimage_size: 32\nbatch_size: 8\n"
                   "init_generator: null\ngenerator: {width: 16}\n")
    out = tmp_path / "luma.safetensors"
    assert main([str(folder), "--config", str(cfg), "--epochs", "1", "-o", str(out), "--device", "cpu"]) == 0
    results = json.loads((tmp_path / "luma.results.json").read_text())
    assert results["epochs_run"] == 1 and results["train_config"]["generator"]["luma"] is True
    g, _ = load_variant(out)
    assert (g.config.smooth, g.config.luma, g.config.width) == (4, True, 16)
    with pytest.raises(ValueError, match="experiments/generator_variants.py"):
        load_generator(out)
