import pytest
import torch
import torch.nn.functional as F

from segue.generator import Generator, GeneratorConfig
from segue.side_info import label_to_code


@pytest.mark.parametrize("hw", [(37, 53), (112, 112), (64, 48), (9, 11)])
def test_output_has_input_size_and_respects_eps(hw):
    g = Generator(GeneratorConfig(width=16)).eval()
    x = torch.rand(2, 3, *hw)
    delta = g(x, torch.tensor([0, 5]))
    assert delta.shape == x.shape
    assert delta.abs().max() <= g.eps + 1e-7
    protected = g.protect(x, torch.tensor([0, 5]))
    assert protected.min() >= 0 and protected.max() <= 1


@pytest.mark.parametrize("train_mode", [True, False])
def test_side_information_changes_the_perturbation(train_mode):
    # Regression: with InstanceNorm the code was erased (difference ~1e-8). Mixed codes in a
    # batch, as in training; the difference must be a sizeable part of delta itself.
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(width=16)).train(train_mode)
    x = torch.rand(1, 3, 32, 32).expand(4, -1, -1, -1)
    delta = g(x, torch.tensor([1, 2, 3, 4]))
    diff = (delta[0] - delta[1]).abs().mean()
    assert diff > 0.05 * delta.abs().mean()


def test_label_code_is_binary_and_unique():
    codes = label_to_code(torch.arange(40))
    assert codes.shape == (40, 16)
    assert set(codes.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(c.tolist()) for c in codes}) == 40
    with pytest.raises(ValueError):
        label_to_code(torch.tensor([2**16]))


def test_runs_on_cpu_explicitly():
    """On an explicit CPU device G gives a real delta: on the CPU, finite, not vanishing, within eps, the
    same on a second call, and (where a GPU exists) the same as on the GPU up to float error."""
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(width=16)).to("cpu").eval()
    x, y = torch.rand(2, 3, 20, 20, device="cpu"), torch.tensor([3, 3])
    with torch.no_grad():
        out, again = g(x, y), g(x, y)
    assert out.device.type == "cpu" and out.shape == x.shape and torch.isfinite(out).all()
    assert 0.1 * g.eps < out.abs().max() <= g.eps + 1e-7 and torch.equal(out, again)
    assert not torch.allclose(out[0], out[1])  # two different photos get two different deltas
    if torch.cuda.is_available():
        with torch.no_grad():
            on_gpu = g.to("cuda")(x.to("cuda"), y.to("cuda")).cpu()
        assert torch.allclose(out, on_gpu, atol=1e-4)


def test_parameter_count_is_small():
    assert 50_000 < sum(p.numel() for p in Generator().parameters()) < 200_000


def _lost_by_downscaling(d: torch.Tensor) -> float:
    """Relative energy of ``d`` that a 2x down/up-scale removes."""
    small = F.interpolate(d, scale_factor=0.5, mode="bilinear", antialias=True)
    back = F.interpolate(small, size=d.shape[-2:], mode="bilinear")
    return ((back - d).norm() / d.norm()).item()


@pytest.mark.parametrize("hw", [(64, 64), (50, 70)])
def test_smooth_delta_survives_downscaling(hw):
    """smooth=s keeps delta below 1/s of Nyquist: a 2x down/up-scale keeps most of it, unlike the default."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, *hw)
    kept = {}
    for smooth in (1, 2, 4):
        g = Generator(GeneratorConfig(smooth=smooth)).eval()
        with torch.no_grad():
            d = g(x, torch.tensor([0, 1]))
        assert d.shape == x.shape and d.abs().max() <= g.eps + 1e-7
        kept[smooth] = _lost_by_downscaling(d)
    assert kept[4] < kept[2] < 0.7 * kept[1], kept


def test_two_band_delta_is_a_fine_plus_a_coarse_part():
    """low_band: the decoder gives one set of channels per band; the coarse band alone survives
    downscaling like a smooth generator (and is brightness-only with low_band_luma)."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    labels = torch.tensor([0, 1])
    g = Generator(GeneratorConfig(width=16, low_band=4, low_band_luma=True)).eval()
    last = g.decoder[-1]
    assert last.out_channels == 6
    w, b = last.weight.detach().clone(), last.bias.detach().clone()
    parts = {}
    with torch.no_grad():
        both = g(x, labels)
        for name, off in (("coarse", slice(0, 3)), ("fine", slice(3, 6))):
            last.weight.copy_(w), last.bias.copy_(b)
            last.weight[off], last.bias[off] = 0, 0
            parts[name] = g(x, labels)
    assert both.shape == x.shape and both.abs().max() <= g.eps + 1e-7
    assert not torch.allclose(parts["coarse"], both) and not torch.allclose(parts["fine"], both)
    assert torch.allclose(parts["coarse"][:, 0], parts["coarse"][:, 2])  # luma: one value for all channels
    assert not torch.allclose(parts["fine"][:, 0], parts["fine"][:, 2])
    assert _lost_by_downscaling(parts["coarse"]) < 0.5 * _lost_by_downscaling(parts["fine"])


def _kept_by_jpeg(x: torch.Tensor, delta: torch.Tensor, quality: int) -> float:
    """How faithfully a real (PIL) JPEG re-encode passes delta on: correlation of the change it leaves with delta."""
    from segue.countermeasures import create_countermeasure, to_8bit

    jpeg = create_countermeasure("jpeg", quality=quality)
    d = to_8bit(x + delta) - to_8bit(x)
    left = jpeg.apply(x + d) - jpeg.apply(x)
    return float((left * d).sum() / (left.norm() * d.norm()))


def test_block_band_is_jpeg_dc_and_survives_jpeg_q10():
    """low_band_blocks: the coarse band is constant over grid-aligned 8x8 blocks (JPEG's DC), so
    JPEG q10 keeps more of it than of the same band upsampled smoothly."""
    from segue.generator import _band

    torch.manual_seed(0)
    x = torch.rand(4, 3, 48, 48)
    for blocks in (False, True):
        g = Generator(GeneratorConfig(width=16, low_band=8, low_band_luma=True, low_band_blocks=blocks)).eval()
        with torch.no_grad():
            g.decoder[-1].weight[:3], g.decoder[-1].bias[:3] = 0, 0  # coarse band only
            d = g(x, torch.arange(4))
        assert d.abs().max() <= g.eps + 1e-7 and torch.allclose(d[:, 0], d[:, 2])
        tiles = d.unflatten(2, (6, 8)).unflatten(4, (6, 8))  # (n, c, 6, 8, 6, 8): 8x8 tiles
        spread = (tiles.amax(dim=(3, 5)) - tiles.amin(dim=(3, 5))).max()
        assert (spread < 1e-7) == blocks, spread
    # JPEG q10 on smooth photos, with a saturated, spatially varying band as trained generators give
    photos = 0.2 + 0.6 * F.interpolate(torch.rand(4, 3, 5, 5), size=(48, 48), mode="bilinear", align_corners=False)
    field = torch.randn(4, 3, 48, 48) * 30
    kept = {blocks: _kept_by_jpeg(photos, 8 / 255 * torch.tanh(_band(field, 8, True, blocks)), quality=10)
            for blocks in (False, True)}
    assert kept[True] > 0.75 and kept[True] > kept[False] + 0.08, kept  # measured 0.81 vs 0.68


def test_low_band_eps_gives_each_band_its_own_budget():
    """low_band_eps: the coarse band reaches its own share and the fine band the rest, so delta
    stays within eps and the coarse band cannot be crowded out by the fine one."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    config = GeneratorConfig(width=16, low_band=8, low_band_luma=True, low_band_blocks=True, low_band_eps=5 / 255)
    g = Generator(config).eval()
    with torch.no_grad():
        last = g.decoder[-1]
        last.weight.zero_()
        last.bias[:3], last.bias[3:] = 50.0, -50.0  # both bands saturated, with opposite signs
        d = g(x, torch.arange(2))
    assert torch.allclose(d, torch.full_like(d, (3 - 5) / 255), atol=1e-6)  # fine +3/255, coarse -5/255
    with torch.no_grad():
        last.bias[3:] = 50.0
        assert torch.allclose(g(x, torch.arange(2)), torch.full_like(d, 8 / 255), atol=1e-6)  # never above eps
    shared = Generator(GeneratorConfig(width=16, low_band=8, low_band_luma=True, low_band_blocks=True)).eval()
    shared.load_state_dict(g.state_dict())
    with torch.no_grad():
        shared.decoder[-1].bias[3:] = -50.0
        assert shared(x, torch.arange(2)).abs().max() < 1e-6  # one tanh over the sum: the bands cancel


def test_psnr_floor_caps_each_images_rms_and_leaves_smaller_deltas_alone():
    """psnr_floor: a saturated delta at a large eps is scaled down to exactly the floor's RMS (so
    every protected image keeps PSNR >= floor, clipping can only help), while a delta already
    within it is returned unchanged and the L-inf budget still holds."""
    torch.manual_seed(0)
    x = torch.rand(3, 3, 32, 32) * 0.5 + 0.25  # away from 0 and 1: no clipping
    config = GeneratorConfig(width=16, eps=13 / 255, low_band=8, low_band_luma=True, low_band_blocks=True,
                             low_band_eps=5 / 255, psnr_floor=30.0)
    g = Generator(config).eval()
    free = Generator(GeneratorConfig(**{**config.to_dict(), "psnr_floor": 0.0})).eval()
    with torch.no_grad():
        g.decoder[-1].weight.zero_()
        g.decoder[-1].bias.fill_(50.0)  # delta 13/255 everywhere: PSNR 25.8 dB uncapped
        free.load_state_dict(g.state_dict())
        assert torch.allclose(free(x, torch.arange(3)), torch.full_like(x, 13 / 255), atol=1e-6)
        protected = g.protect(x, torch.arange(3))
        mse = (protected - x).pow(2).flatten(1).mean(1)
        assert torch.allclose(10 * torch.log10(1 / mse), torch.full((3,), 30.0), atol=1e-3)
        g.decoder[-1].bias.fill_(0.01)  # a small delta: already above the floor
        free.load_state_dict(g.state_dict())
        small = g(x, torch.arange(3))
        assert small.abs().max() < 1 / 255 and torch.equal(small, free(x, torch.arange(3)))
    assert g(x, torch.arange(3)).abs().max() <= 13 / 255 + 1e-7


def test_psnr_fine_only_keeps_the_block_band_whole():
    """psnr_fine_only: the fine band alone gives way to the PSNR floor, the block band keeps its
    whole share (what JPEG q10 needs), and the total still meets the floor exactly; without it
    both bands shrink together."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 0.5 + 0.25
    config = GeneratorConfig(width=16, eps=18 / 255, low_band=8, low_band_luma=True, low_band_blocks=True,
                             low_band_eps=5 / 255, psnr_floor=30.0, psnr_fine_only=True)
    g = Generator(config).eval()
    free = Generator(GeneratorConfig(**{**config.to_dict(), "psnr_floor": 0.0})).eval()
    whole = Generator(GeneratorConfig(**{**config.to_dict(), "psnr_fine_only": False})).eval()
    with torch.no_grad():
        last = g.decoder[-1]
        last.weight[:3] *= 200  # a fine band with structure, near +-13/255
        last.weight[3:].zero_()
        last.bias[3:] = 50.0  # block band +5/255 everywhere
        free.load_state_dict(g.state_dict())
        whole.load_state_dict(g.state_dict())
        fine = free(x, torch.arange(2)) - 5 / 255
        assert fine.abs().mean() > 8 / 255  # uncapped: far over PSNR 30 dB
        for gen, kept in ((g, 5 / 255), (whole, None)):
            d = gen(x, torch.arange(2))
            assert torch.allclose(10 * torch.log10(1 / d.pow(2).flatten(1).mean(1)), torch.full((2,), 30.0), atol=1e-3)
            if kept is not None:  # d = s * fine + the whole block band, one s per image
                s = ((d - kept) / fine).flatten(1).median(1).values.view(-1, 1, 1, 1)
                assert torch.allclose(d, s * fine + kept, atol=1e-6) and (s < 1).all()
            else:  # d = t * (fine + block): the block band shrinks by the same t
                t = (d / (fine + 5 / 255)).flatten(1).median(1).values.view(-1, 1, 1, 1)
                assert torch.allclose(d, t * (fine + 5 / 255), atol=1e-6) and (t < 1).all()
    with pytest.raises(ValueError, match="psnr_fine_only"):
        GeneratorConfig(low_band=8, psnr_floor=30.0, psnr_fine_only=True)  # one shared tanh: no fine band to scale alone
