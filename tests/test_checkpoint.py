import torch
from safetensors import safe_open

from segue.checkpoint import load_generator, read_metadata, save_generator
from segue.generator import Generator, GeneratorConfig


def test_safetensors_round_trip(tmp_path):
    torch.manual_seed(1)
    g = Generator(GeneratorConfig(width=16, eps=4 / 255, image_size=32)).eval()
    path = save_generator(g, tmp_path / "g.safetensors", {"seed": 1, "classes": ["a", "b"]})
    loaded, prov = load_generator(path)
    x = torch.rand(2, 3, 32, 32)
    s = torch.tensor([0, 1])
    assert torch.equal(g(x, s), loaded(x, s))
    assert loaded.config == g.config
    assert prov == {"seed": 1, "classes": ["a", "b"]}
    assert read_metadata(path)["generator"]["eps"] == 4 / 255
    assert (tmp_path / "g.json").exists()
    with safe_open(str(path), framework="pt") as f:  # a real safetensors file, not a pickle
        assert set(f.keys()) == set(g.state_dict())


def test_shipped_generator_loads():
    g, prov = load_generator()
    assert g.config.image_size == 112
    assert prov["image_size"] == 112
    x = torch.rand(1, 3, 112, 112)
    assert g(x, torch.tensor([0])).abs().max() <= g.eps + 1e-7


def test_shipped_generators_load_by_name():
    """--weights default|robust|robust_rem ship in the package; robust is the two-band one (issue 6)."""
    import pytest

    from segue.checkpoint import SHIPPED, weights_path

    default, _ = load_generator("default")
    robust, prov = load_generator("robust")
    assert weights_path("shipped") == weights_path(None) == weights_path("default")
    assert set(SHIPPED) == {"default", "robust", "robust_rem"}
    assert robust.config.low_band > 1 and default.config.low_band == 0
    assert robust.eps == default.eps == 8 / 255 and prov["train_config"]["distortion"]["jpeg_p"] > 0
    x = torch.rand(2, 3, 112, 112)
    d = robust(x, torch.tensor([0, 1]))
    assert d.abs().max() <= robust.eps + 1e-7
    rem, prov = load_generator("robust_rem")  # a larger L-inf, held to PSNR >= 30.2 dB per image
    assert rem.eps == 18 / 255 and prov["train_config"]["distortion"]["adv_rho"] == 4 / 255
    d = rem(x, torch.tensor([0, 1]))
    assert d.abs().max() <= rem.eps + 1e-7 and d.abs().max() > 8 / 255
    assert (-20 * torch.log10(d.flatten(1).pow(2).mean(1).sqrt())).min() >= 30.2 - 1e-3
    with pytest.raises(KeyError, match="robust"):
        from segue.checkpoint import default_weights_path

        default_weights_path("nope")


def test_overrides_change_only_the_config_and_are_recorded(tmp_path):
    """A benchmark can try a weight-free option (here a PSNR floor) on trained weights:
    same parameters, new config, the change noted in the provenance."""
    torch.manual_seed(2)
    g = Generator(GeneratorConfig(width=16, image_size=32)).eval()
    path = save_generator(g, tmp_path / "g.safetensors", {"seed": 2})
    loaded, prov = load_generator(path, overrides={"psnr_floor": 40.0})
    assert loaded.config.psnr_floor == 40.0 and loaded.eps == g.eps
    assert prov == {"seed": 2, "config_overrides": {"psnr_floor": 40.0}}
    x, s = torch.rand(1, 3, 32, 32), torch.tensor([1])
    with torch.no_grad():
        free, capped = g(x, s), loaded(x, s)
    assert capped.pow(2).mean().sqrt() <= 10 ** (-40 / 20) + 1e-7 < free.pow(2).mean().sqrt()
    assert torch.allclose(capped / capped.norm(), free / free.norm(), atol=1e-6)  # the same delta, scaled down


# sha256 of the float32 bytes of each shipped generator's delta for one fixed input, computed with the
# code before the experiment options moved out of the package (CPU, 1 thread, torch 2.14.1): the
# package must still give these generators bit for bit the same output.
SHIPPED_DELTA_SHA256 = {
    "default": "ab36ff942f3082f8e027b1ff28079642a1656261a7c370307529bda3813bd391",
    "robust": "39d9e93c5078ae27bb9e6221b61cc89e3733ea1f27e0ceeb14719316d2930c85",
    "robust_rem": "7f0473b4b68cdb209d456f45347b138f6a75270221477fce916755d89d3c11ec",
}
SHIPPED_DELTA_ABS_SUM = {"default": 1645.427413404736, "robust": 2144.675010965711, "robust_rem": 1721.3506409290094}


def test_shipped_generators_give_the_recorded_deltas_bit_for_bit():
    import hashlib
    import warnings

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = torch.rand(2, 3, 112, 112, generator=torch.Generator().manual_seed(20261128))
        for name, digest in SHIPPED_DELTA_SHA256.items():
            g, _ = load_generator(name)
            with torch.no_grad():
                d = g(x, torch.tensor([0, 7])).contiguous()
            # a change of the model shows here first (a tolerance, readable); the digest is the bit-for-bit check
            assert abs(float(d.double().abs().sum()) - SHIPPED_DELTA_ABS_SUM[name]) < 1e-3, name
            if hashlib.sha256(d.numpy().tobytes()).hexdigest() != digest:  # same weights and code, another CPU's kernels
                warnings.warn(f"{name}: delta within 1e-3 in sum but not bit for bit on this CPU", stacklevel=1)
    finally:
        torch.set_num_threads(threads)


def _with_generator_config(tmp_path, name: str, config: dict):
    """A weights file whose stored generator config is ``config`` (as files written by older versions)."""
    import json

    from safetensors.torch import save_file

    torch.manual_seed(4)
    g = Generator(GeneratorConfig(width=16, image_size=32)).eval()
    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, str(path),
              metadata={"generator": json.dumps(config), "provenance": json.dumps({"seed": 4})})
    return g, path


def test_old_weights_with_removed_fields_at_their_shipped_value_load(tmp_path):
    """Fields that moved to experiments/ (norm, luma, code_blocks_eps, code_blocks) are dropped where they
    are at the value every shipped generator had; the generator is the same."""
    import pytest

    from segue.checkpoint import REMOVED_GENERATOR_FIELDS

    base = GeneratorConfig(width=16, image_size=32).to_dict()
    g, path = _with_generator_config(tmp_path, "old.safetensors", {**base, **REMOVED_GENERATOR_FIELDS})
    loaded, prov = load_generator(path)
    assert loaded.config == g.config and prov == {"seed": 4}
    x, s = torch.rand(1, 3, 32, 32), torch.tensor([1])
    assert torch.equal(loaded(x, s), g(x, s))
    for key, value in (("norm", "batch"), ("luma", True), ("code_blocks_eps", 3 / 255)):
        _, path = _with_generator_config(tmp_path, f"{key}.safetensors", {**base, key: value})
        with pytest.raises(ValueError, match=f"{key}=.*experiments/generator_variants.py"):
            load_generator(path)
    with pytest.raises(ValueError, match="experiments/generator_variants.py"):
        load_generator(_with_generator_config(tmp_path, "o.safetensors", base)[1], overrides={"code_blocks_eps": 0.01})
    _, path = _with_generator_config(tmp_path, "unknown.safetensors", {**base, "widthh": 3})
    with pytest.raises(ValueError, match="unknown fields"):
        load_generator(path)


def test_a_committed_experiment_file_names_the_module_that_loads_it():
    """benchmarks/results/robust_gpu/robust_luma_112.safetensors (luma: true) is an experiment."""
    import pytest

    with pytest.raises(ValueError, match="luma=True.*experiments/generator_variants.py"):
        load_generator("benchmarks/results/robust_gpu/robust_luma_112.safetensors")
