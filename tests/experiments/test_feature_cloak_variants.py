"""experiments/feature_cloak_variants.py: decoys (next, farthest, an outside pool), TI, DFANet's dropout
acting only inside its block, the away-only variant being the package's cloak, and ``base`` / ``then``
combining it with another protection."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # experiments/ is a folder of the repository, not part of the installed package
sys.path.insert(0, str(ROOT / "tests"))

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from experiments.feature_cloak_variants import VariantFeatureCloak, conv_dropout  # noqa: E402
from segue.methods import create_method  # noqa: E402
from test_feature_cloak import ToyExtractor, faces  # noqa: E402


def test_conv_dropout_only_inside_the_block():
    toy, x = ToyExtractor(), faces().images
    before = toy(x)
    with conv_dropout([toy], 0.3):
        assert not torch.allclose(toy(x), before)
    with conv_dropout([toy], 0.0):
        assert torch.equal(toy(x), before)
    assert torch.equal(toy(x), before)  # hooks removed


def test_away_only_variant_is_the_package_cloak():
    data, toy = faces(), ToyExtractor()
    kw = dict(eps=16 / 255, extractors=[toy], steps=10, momentum=1.0, affine_diversity=True, psnr_floor=30.0,
              step_norm="l2")
    package = create_method("feature-cloak", **kw).fit(data, data.labels).perturb(data.images, data.labels)
    variant = VariantFeatureCloak(decoy="none", away=1.0, **kw).load()
    assert torch.equal(variant.perturb(data.images, data.labels), package)
    with pytest.raises(ValueError, match="away > 0"):
        VariantFeatureCloak(extractors=[toy], decoy="none")
    with pytest.raises(RuntimeError, match="call fit first"):
        VariantFeatureCloak(extractors=[toy], decoy="none", away=1.0).perturb(data.images, data.labels)


@pytest.mark.parametrize("extra", [{"ti_sigma": 1.0}, {"psnr_floor": 30.0, "step_norm": "l2"}])
def test_moves_embeddings_toward_decoys(extra):
    data = faces()
    toy = ToyExtractor()
    method = VariantFeatureCloak(eps=16 / 255, extractors=[toy], steps=10, momentum=1.0,
                                 diverse=False, **extra).fit(data, data.labels)
    out = method.perturb(data.images, data.labels)
    assert (out - data.images).abs().max() <= 16 / 255 + 1e-6
    decoys = method.decoys[0][data.labels]
    before = F.cosine_similarity(toy(data.images), decoys).mean()
    after = F.cosine_similarity(toy(out), decoys).mean()
    assert after > before + 0.05


def test_farthest_decoy_and_outside_pool():
    """'farthest' picks, per person, the pool person least like them; an outside pool supplies the decoys."""
    data, pool, toy = faces(people=3), faces(people=5, per=2), ToyExtractor()
    own = F.normalize(torch.stack([toy(data.images[data.labels == c]).mean(0) for c in range(3)]), dim=1)
    cands = F.normalize(torch.stack([toy(pool.images[pool.labels == c]).mean(0) for c in range(5)]), dim=1)
    far = VariantFeatureCloak(extractors=[toy], decoy="farthest", decoy_pool=pool).fit(data, data.labels)
    assert torch.allclose(far.decoys[0], cands[(own @ cands.T).argmin(1)], atol=1e-5)
    nxt = VariantFeatureCloak(extractors=[toy], decoy_pool=pool).fit(data, data.labels)
    assert torch.allclose(nxt.decoys[0], cands[:3], atol=1e-5)
    inside = VariantFeatureCloak(extractors=[toy], decoy="farthest").fit(data, data.labels)
    picked = (own @ own.T).argmin(1)
    assert (picked != torch.arange(3)).all() and torch.allclose(inside.decoys[0], own[picked], atol=1e-5)
    with pytest.raises(ValueError):
        VariantFeatureCloak(extractors=[toy], decoy="nearest")
    one = faces(people=1)
    with pytest.raises(ValueError, match="two or more"):
        VariantFeatureCloak(extractors=[toy]).fit(one, one.labels)


def test_dropout_still_attacks():
    data, toy = faces(), ToyExtractor()
    kw = dict(eps=16 / 255, extractors=[toy], steps=10, momentum=1.0, diverse=False, psnr_floor=30.0, step_norm="l2")
    dropped = VariantFeatureCloak(feature_dropout=0.1, **kw).fit(data, data.labels)
    out = dropped.perturb(data.images, data.labels)
    assert (out - data.images).abs().max() <= 16 / 255 + 1e-6
    assert torch.equal(out, dropped.perturb(data.images, data.labels))  # the dropout draws are seeded
    decoys = dropped.decoys[0][data.labels]
    assert F.cosine_similarity(toy(out), decoys).mean() > F.cosine_similarity(toy(data.images), decoys).mean() + 0.05
    assert dropped.config()["feature_dropout"] == 0.1


def test_starts_from_a_base_protection():
    """``base``: with no steps the output is the base method's protection; with steps the cloak moves
    the embedding from there, still inside the cloak's own budget around the clean photo."""
    data, toy = faces(), ToyExtractor()
    base = create_method("random", eps=8 / 255, seed=3)
    alone = base.perturb(data.images, data.labels)
    zero = VariantFeatureCloak(eps=16 / 255, extractors=[toy], steps=0, diverse=False, base=base).fit(data, data.labels)
    assert torch.equal(zero.perturb(data.images, data.labels), alone)
    assert zero.config()["base"]["name"] == "random"
    moved = VariantFeatureCloak(eps=16 / 255, extractors=[toy], steps=10, momentum=1.0, diverse=False,
                                base=base).fit(data, data.labels)
    out = moved.perturb(data.images, data.labels)
    assert (out - data.images).abs().max() <= 16 / 255 + 1e-6
    decoys = moved.decoys[0][data.labels]
    assert F.cosine_similarity(toy(out), decoys).mean() > F.cosine_similarity(toy(alone), decoys).mean() + 0.05


def test_then_keeps_a_second_protection_whole_in_one_psnr_budget():
    """``then``: with no steps the output is ``then``'s protection; with steps the PGD gets only the
    room ``then``'s delta leaves under the floor, ``then``'s delta (on the cloaked photo) is added
    whole, and the sum keeps the L-inf budget and the floor."""
    data, toy, floor = faces(), ToyExtractor(), 30.0
    then = create_method("random", eps=8 / 255, seed=3)  # RMS ~4.6/255 of the floor's 8.1/255
    kw = dict(eps=16 / 255, extractors=[toy], momentum=1.0, diverse=False, away=1.0, decoy="none",
              psnr_floor=floor, step_norm="l2")
    zero = VariantFeatureCloak(steps=0, then=then, **kw).load()
    assert torch.equal(zero.perturb(data.images, data.labels), then.perturb(data.images, data.labels))
    assert zero.config()["then"]["name"] == "random"
    joint = VariantFeatureCloak(steps=10, then=then, **kw).load()
    out = joint.perturb(data.images, data.labels)
    assert (out - data.images).abs().max() <= 16 / 255 + 1e-6
    psnr = 10 * torch.log10(1 / (out - data.images).pow(2).flatten(1).mean(1))
    assert psnr.min() >= floor
    pattern = (then.perturb(data.images, data.labels) - data.images).flatten(1)
    kept = F.cosine_similarity((out - data.images).flatten(1), pattern).mean()
    # then's share is whole, not shrunk with the sum (a PGD filling the floor first would leave ~0.87); the
    # final 8-bit rounding may shrink a photo's whole delta by 0.97 once or twice to keep the floor (0.948 seen)
    share = ((out - data.images).flatten(1) * pattern).sum(1) / pattern.pow(2).sum(1)
    assert share.min() > 0.92, share
    alone = VariantFeatureCloak(steps=10, **kw).load().perturb(data.images, data.labels)
    assert kept > 0.3 and F.cosine_similarity((alone - data.images).flatten(1), pattern).abs().mean() < 0.1
    moved = lambda images: F.cosine_similarity(toy(images), toy(data.images)).mean()  # noqa: E731
    assert moved(out) < moved(then.perturb(data.images, data.labels)) - 0.05
    with pytest.raises(ValueError, match="psnr_floor"):
        VariantFeatureCloak(extractors=[toy], then=then)
