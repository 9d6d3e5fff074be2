"""experiments/generator_variants.py: BatchNorm, a brightness-only fine band, a fixed side-label
pattern - and with every option at its default, exactly the package's generator."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # experiments/ is a folder of the repository, not part of the installed package

import pytest  # noqa: E402
import torch  # noqa: E402

from experiments.generator_variants import VariantGenerator, VariantGeneratorConfig, code_block_pattern, load_variant
from segue.checkpoint import load_generator, save_generator
from segue.generator import Generator, GeneratorConfig

LUMA_WEIGHTS = ROOT / "benchmarks/results/robust_gpu/robust_luma_112.safetensors"  # committed: the luma experiment


def test_defaults_are_the_package_generator():
    """Same layers, same weights, same delta; a variant two-band generator too."""
    torch.manual_seed(0)
    x, s = torch.rand(2, 3, 40, 36), torch.tensor([0, 3])
    for kw in ({"width": 16}, {"width": 16, "low_band": 8, "low_band_luma": True, "low_band_blocks": True,
                               "low_band_eps": 5 / 255, "eps": 18 / 255, "psnr_floor": 30.0, "psnr_fine_only": True}):
        g = Generator(GeneratorConfig(**kw)).eval()
        v = VariantGenerator(VariantGeneratorConfig(**kw)).eval()
        v.load_state_dict(g.state_dict())
        with torch.no_grad():
            assert torch.equal(g(x, s), v(x, s))


def test_shipped_weights_load_as_variants_with_the_same_output():
    x, s = torch.rand(1, 3, 112, 112), torch.tensor([2])
    for name in ("default", "robust", "robust_rem"):
        g, prov = load_generator(name)
        v, vprov = load_variant(name)
        assert prov == vprov
        with torch.no_grad():
            assert torch.equal(g(x, s), v(x, s)), name


def test_batch_norm_variant_has_batch_norm_layers():
    g = VariantGenerator(VariantGeneratorConfig(width=16, norm="batch")).eval()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in g.modules())
    x = torch.rand(2, 3, 32, 32)
    assert g(x, torch.tensor([0, 1])).abs().max() <= g.eps + 1e-7
    with pytest.raises(ValueError, match="norm"):
        VariantGeneratorConfig(norm="instance")


def test_committed_luma_experiment_loads_as_a_variant():
    """robust_luma_112 (smooth 4, luma): the package refuses it (test_checkpoint), load_variant reads it;
    its delta is the same in every channel."""
    g, prov = load_variant(LUMA_WEIGHTS)
    assert (g.config.smooth, g.config.luma) == (4, True) and prov["train_config"]["init_generator"] == "shipped"
    with torch.no_grad():
        d = g(torch.rand(1, 3, 112, 112), torch.tensor([1]))
    assert torch.allclose(d[:, 0], d[:, 2]) and d.abs().max() <= g.eps + 1e-7


def test_a_luma_single_band_starts_the_brightness_coarse_band(tmp_path):
    """init_state with the variants' loader: a luma smooth-4 start fills a two-band generator's
    brightness-only 4x4 band (its shape), so the first delta is the start's."""
    from segue.training import init_state

    torch.manual_seed(5)
    start = VariantGenerator(VariantGeneratorConfig(width=16, smooth=4, luma=True))
    with torch.no_grad():
        start.decoder[-1].bias.normal_()
    path = save_generator(start, tmp_path / "luma.safetensors")
    config = VariantGeneratorConfig(width=16, low_band=4, low_band_luma=True)
    two = VariantGenerator(config)
    two.load_state_dict(init_state(str(path), config, load=load_variant))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(two(x, torch.tensor([0, 1])), start(x, torch.tensor([0, 1])), atol=1e-6)
    with pytest.raises(ValueError, match="neither band"):
        init_state(str(path), VariantGeneratorConfig(width=16, low_band=4), load=load_variant)


def test_overrides_try_a_side_label_pattern_on_trained_weights(tmp_path):
    """The benchmark's generator_overrides: {code_blocks_eps: ...} (robust_gpu grid), through load_variant."""
    torch.manual_seed(2)
    g = Generator(GeneratorConfig(width=16, image_size=32)).eval()
    path = save_generator(g, tmp_path / "g.safetensors", {"seed": 2})
    loaded, prov = load_variant(path, overrides={"code_blocks_eps": 3 / 255})
    assert loaded.config.code_blocks_eps == 3 / 255 and loaded.eps == g.eps + 3 / 255
    assert prov == {"seed": 2, "config_overrides": {"code_blocks_eps": 3 / 255}}
    x, s = torch.rand(1, 3, 32, 32), torch.tensor([1])
    assert torch.allclose((loaded(x, s) - g(x, s)).abs(), torch.full_like(x, 3 / 255), atol=1e-6)


def test_luma_delta_survives_grayscale_exactly():
    """luma=True: the same delta in every channel, so converting to grey keeps all of it."""
    from segue.countermeasures import create_countermeasure

    torch.manual_seed(0)
    x = torch.rand(2, 3, 40, 40) * 0.8 + 0.1  # away from 0/1: no clipping
    grey = create_countermeasure("grayscale")
    for luma in (False, True):
        g = VariantGenerator(VariantGeneratorConfig(luma=luma)).eval()
        with torch.no_grad():
            d = g(x, torch.tensor([0, 1]))
        kept = grey.apply(x + d) - grey.apply(x)
        if luma:
            assert torch.allclose(d[:, 0], d[:, 1]) and (kept - d).abs().max() <= 1.01 / 255  # 8-bit rounding
        else:
            assert (kept - d).abs().max() > 2 / 255


def test_code_blocks_add_a_fixed_jpeg_grid_pattern_per_side_label():
    """code_blocks_eps: the same +-b/255 brightness pattern for a label in every call, constant
    over 8x8 blocks from the top-left, different between labels; with a PSNR floor G's part alone
    gives way and the pattern stays whole; eps reports the whole L-inf bound."""
    torch.manual_seed(0)
    x = torch.rand(4, 3, 40, 36) * 0.5 + 0.25
    labels = torch.tensor([0, 0, 1, 2])
    base = VariantGeneratorConfig(width=16, eps=8 / 255)
    g0 = VariantGenerator(base).eval()
    config = VariantGeneratorConfig(**{**base.to_dict(), "code_blocks_eps": 5 / 255})
    g = VariantGenerator(config).eval()
    g.load_state_dict(g0.state_dict())
    assert g.eps == pytest.approx(13 / 255)
    with torch.no_grad():
        pattern = g(x, labels) - g0(x, labels)
    assert pattern.abs().max() <= 5 / 255 + 1e-6 and torch.allclose(pattern.abs(), torch.full_like(pattern, 5 / 255), atol=1e-6)
    assert torch.allclose(pattern[:, 0], pattern[:, 2], atol=1e-6)  # brightness only
    signs = code_block_pattern(labels, (40, 36), 8)  # exact +-1, (N,1,H,W)
    assert torch.allclose(pattern, 5 / 255 * signs.expand_as(pattern), atol=1e-6)
    blocks = signs[..., :40, :32].unfold(2, 8, 8).unfold(3, 8, 8)  # (N,1,5,4,8,8)
    assert (blocks == blocks[..., :1, :1]).all()  # constant over each 8x8 block, from the top-left
    assert torch.allclose(pattern[0], pattern[1]) and not torch.allclose(pattern[0], pattern[2])
    assert not torch.allclose(pattern[2], pattern[3])
    assert torch.equal(code_block_pattern(torch.tensor([1]), (40, 36), 8)[0], signs[2])  # seeded by the label alone
    capped = VariantGenerator(VariantGeneratorConfig(**{**config.to_dict(), "eps": 13 / 255, "psnr_floor": 30.0})).eval()
    with torch.no_grad():
        capped.decoder[-1].weight.zero_()
        capped.decoder[-1].bias.fill_(50.0)  # G's part +13/255 everywhere: far under 30 dB with the pattern
        d = capped(x, labels)
    assert torch.allclose(10 * torch.log10(1 / d.pow(2).flatten(1).mean(1)), torch.full((4,), 30.0), atol=1e-3)
    s = (d - pattern).mean((1, 2, 3)) / (13 / 255)
    assert torch.allclose(d, s[:, None, None, None] * 13 / 255 + pattern, atol=1e-6) and (s < 1).all()
