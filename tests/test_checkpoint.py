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
    """A benchmark can try a weight-free option (here a side-label pattern) on trained weights:
    same parameters, new config, the change noted in the provenance."""
    torch.manual_seed(2)
    g = Generator(GeneratorConfig(width=16, image_size=32)).eval()
    path = save_generator(g, tmp_path / "g.safetensors", {"seed": 2})
    loaded, prov = load_generator(path, overrides={"code_blocks_eps": 3 / 255})
    assert loaded.config.code_blocks_eps == 3 / 255 and loaded.eps == g.eps + 3 / 255
    assert prov == {"seed": 2, "config_overrides": {"code_blocks_eps": 3 / 255}}
    x, s = torch.rand(1, 3, 32, 32), torch.tensor([1])
    assert torch.allclose((loaded(x, s) - g(x, s)).abs(), torch.full_like(x, 3 / 255), atol=1e-6)
