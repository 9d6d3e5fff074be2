"""experiments/person_cloak.py: one delta per person, inside the budget, that still moves the embeddings."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # experiments/ is a folder of the repository, not part of the installed package
sys.path.insert(0, str(ROOT / "tests"))

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from experiments.person_cloak import PersonCloak  # noqa: E402
from segue.quality import rms, rms_cap  # noqa: E402
from test_feature_cloak import ToyExtractor, faces  # noqa: E402

KW = dict(eps=16 / 255, steps=10, momentum=1.0, diverse=False, away=1.0, psnr_floor=30.0, step_norm="l2", decoy="none")


def test_one_delta_per_person_within_budget_that_cloaks():
    toy = ToyExtractor()
    data = faces()
    x = data.images * 0.8 + 0.1  # away from 0 and 1: no clipping, so a shared delta shows exactly
    x = (x * 255).round() / 255
    out = PersonCloak(extractors=[toy], **KW).load().perturb(x, data.labels)
    delta = out - x
    assert delta.abs().max() <= 16 / 255 + 1e-6
    assert (rms(delta) <= rms_cap(30.0) + 1e-9).all()
    for person in data.labels.unique():
        mine = delta[data.labels == person]
        assert torch.allclose(mine, mine[:1].expand_as(mine), atol=1.5 / 255)  # one delta (8-bit rounding aside)
    assert not torch.allclose(delta[data.labels == 0][0], delta[data.labels == 1][0], atol=1.5 / 255)
    assert F.cosine_similarity(toy(out), toy(x)).mean() < 0.95  # the shared delta still moves the embeddings


def test_fit_photos_fits_on_a_few_and_protects_all():
    data = faces()
    out = PersonCloak(extractors=[ToyExtractor()], fit_photos=2, **KW).load().perturb(data.images, data.labels)
    assert (out != data.images).flatten(1).any(1).all()  # photos the delta was not fitted on carry it too


def test_needs_l2_steps():
    with pytest.raises(ValueError, match="l2"):
        PersonCloak(extractors=[ToyExtractor()], **{**KW, "step_norm": "sign"})
