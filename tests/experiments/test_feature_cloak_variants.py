"""experiments/feature_cloak_variants.py: DFANet's dropout acts only inside its block, and the
variant with ``feature_dropout=0`` is the package's cloak."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # experiments/ is a folder of the repository, not part of the installed package
sys.path.insert(0, str(ROOT / "tests"))

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


def test_zero_dropout_is_the_package_cloak_and_dropout_still_attacks():
    data, toy = faces(), ToyExtractor()
    kw = dict(eps=16 / 255, extractors=[toy], steps=10, momentum=1.0, diverse=False, psnr_floor=30.0, step_norm="l2")
    package = create_method("feature-cloak", **kw).fit(data, data.labels).perturb(data.images, data.labels)
    variant = VariantFeatureCloak(feature_dropout=0.0, **kw).fit(data, data.labels)
    assert torch.equal(variant.perturb(data.images, data.labels), package)
    dropped = VariantFeatureCloak(feature_dropout=0.1, **kw).fit(data, data.labels)
    out = dropped.perturb(data.images, data.labels)
    assert (out - data.images).abs().max() <= 16 / 255 + 1e-6
    assert torch.equal(out, dropped.perturb(data.images, data.labels))  # the dropout draws are seeded
    decoys = dropped.decoys[0][data.labels]
    assert F.cosine_similarity(toy(out), decoys).mean() > F.cosine_similarity(toy(data.images), decoys).mean() + 0.05
    assert dropped.config()["feature_dropout"] == 0.1
