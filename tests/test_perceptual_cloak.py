"""The cloak under a visibility bar: each photo no more visible than the default generator's delta on it
(less the strength's margin), and a wider margin buys a larger change."""

import torch
from conftest import TinyEmbedding

from segue.checkpoint import load_generator
from segue.methods.base import quantise
from segue.methods.perceptual_cloak import PerceptualCloak, largest_scale, local_contrast, shipped_protect
from segue.visibility import visibility_terms


def faces(n: int = 3, size: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(4)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    blob = torch.exp(-(xx**2 + yy**2) * 2)
    base = torch.stack([0.3 + 0.5 * blob, 0.25 + 0.4 * blob, 0.2 + 0.35 * blob])[None].repeat(n, 1, 1, 1)
    return ((base + 0.04 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1) * 255).round() / 255


def test_each_photo_stays_within_the_generators_visibility_and_margins_buy_change():
    x, labels = faces(), torch.zeros(3, dtype=torch.long)
    reference = load_generator("default")[0]
    h_ref, _, d_ref = visibility_terms(x, quantise(x, shipped_protect(reference, x, labels) - x, 1.0))
    changes = []
    for margin in (0.0, 0.1):
        cloak = PerceptualCloak(extractors=[TinyEmbedding()], steps=6, haarpsi_margin=margin, delta_e_margin=10 * margin,
                                chroma=0.3, texture=True, reference=reference).load()
        out = cloak.perturb(x, labels)
        h, _, d = visibility_terms(x, out)
        assert (h >= h_ref - margin - 1e-4).all() and (d <= d_ref + 10 * margin + 1e-4).all(), (h, h_ref, d, d_ref)
        assert (out - x).abs().max() <= 16 / 255 + 1e-6 and (out != x).any()
        changes.append(float((out - x).pow(2).mean()))
    assert changes[1] > changes[0]


def test_the_search_from_the_last_steps_scale_finds_bisections_grid_point_with_fewer_measures():
    g = torch.Generator().manual_seed(0)
    for trial in range(60):
        limit = torch.rand(24, generator=g) * 1.3  # within while the scale is at most the limit (some never beyond)
        measured = {"plain": 0, "guess": 0}

        def within(idx, scale, key):
            measured[key] += len(idx)
            return scale <= limit[idx]

        plain = largest_scale(lambda i, s: within(i, s, "plain"), 24)
        near = (limit + (torch.rand(24, generator=g) - 0.5) * 0.06).clamp(0, 1)  # last step's scale, a grid point off
        far = torch.rand(24, generator=g)
        assert torch.equal(plain, torch.where(limit >= 1, 1.0, (limit * 32).floor() / 32))
        assert torch.equal(largest_scale(lambda i, s: within(i, s, "guess"), 24, guess=near), plain)
        assert measured["guess"] < measured["plain"]
        assert torch.equal(largest_scale(lambda i, s: s <= limit[i], 24, guess=far), plain)


def test_local_contrast_is_low_on_flat_skin_and_high_on_edges():
    x = torch.full((1, 3, 32, 32), 0.6)
    x[..., 16:] = 0.2  # an edge down the middle
    mask = local_contrast(x)
    assert float(mask[..., 4, 4]) == 0.25 and float(mask[..., 4, 16]) == 1.0


def test_the_bar_is_the_generator_as_shipped_on_a_photo_of_another_size():
    """On a 224-px photo the bar is what `segue protect` writes with the default generator: its delta
    made at 112 px and resized onto the photo, not the generator run at 224 px."""
    from segue.protect.delta import perturb

    x, labels = faces(2, 224), torch.zeros(2, dtype=torch.long)
    reference = load_generator("default")[0]
    with torch.inference_mode():
        shipped = torch.stack(perturb(reference, list(x), labels, 112))
        ours = shipped_protect(reference, x, labels)
        native = reference.protect(x, labels)
    assert (ours - shipped).abs().max() <= 1.5 / 255  # 8-bit resizing in the pipeline
    assert (native - shipped).abs().max() > 4 / 255


def test_a_large_photo_reaches_the_surrogate_downsampled_to_its_input_size():
    seen = []

    class Recording(TinyEmbedding):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return super().forward(x)

    for size in (112, 224):
        seen.clear()
        cloak = PerceptualCloak(extractors=[Recording()], steps=2, affine_diversity=False).load()
        out = cloak.perturb(faces(2, size), torch.zeros(2, dtype=torch.long))
        assert out.shape[-1] == size and set(seen) == {(min(size, 160),) * 2}, seen
