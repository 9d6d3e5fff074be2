"""The per-image feature cloak: budget, PSNR floor, and that it moves embeddings toward the decoys."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segue.data import FaceSet
from segue.methods import create_method


class ToyExtractor(nn.Module):
    """A fixed random conv embedding: differentiable, frozen, L2-normalised like the real ones."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, bias=False), nn.Tanh(), nn.AdaptiveAvgPool2d(4),
                                 nn.Flatten(), nn.Linear(128, 16, bias=False))
        self.requires_grad_(False)

    def forward(self, x):
        return F.normalize(self.net(x - 0.5), dim=1)  # centred: random photos do not all embed alike


def faces(people: int = 3, per: int = 4) -> FaceSet:
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (people * per, 3, 32, 32), generator=gen) / 255
    return FaceSet(images, torch.arange(people).repeat_interleave(per), [f"p{i}" for i in range(people)])


@pytest.mark.parametrize("psnr_floor,step_norm", [(0.0, "sign"), (30.0, "sign"), (30.0, "l2")])
def test_budget_and_floor(psnr_floor, step_norm):
    data, eps = faces(), 16 / 255
    method = create_method("feature-cloak", eps=eps, extractors=[ToyExtractor()], steps=5, momentum=1.0, ti_sigma=1.0,
                           psnr_floor=psnr_floor, step_norm=step_norm).fit(data, data.labels)
    out = method.perturb(data.images, data.labels)
    assert out.shape == data.images.shape
    assert (out - data.images).abs().max() <= eps + 1e-6
    assert torch.equal(out, (out * 255).round() / 255)  # on the 8-bit grid
    psnr = 10 * torch.log10(1 / (out - data.images).pow(2).flatten(1).mean(1))
    if psnr_floor:
        assert psnr.min() >= psnr_floor
    else:
        assert psnr.min() < 30  # unconstrained sign-PGD at 16/255 spends more than the floor would allow


@pytest.mark.parametrize("extra", [{}, {"psnr_floor": 30.0, "step_norm": "l2"}])
def test_moves_embeddings_toward_decoys(extra):
    data = faces()
    toy = ToyExtractor()
    method = create_method("feature-cloak", eps=16 / 255, extractors=[toy], steps=10, momentum=1.0,
                           diverse=False, **extra).fit(data, data.labels)
    out = method.perturb(data.images, data.labels)
    decoys = method.decoys[0][data.labels]
    before = F.cosine_similarity(toy(data.images), decoys).mean()
    after = F.cosine_similarity(toy(out), decoys).mean()
    assert after > before + 0.05


def test_refuses_dlib_and_a_single_person():
    with pytest.raises(ValueError, match="black-box"):
        create_method("feature-cloak", extractors=["dlib"])
    with pytest.raises(ValueError, match="psnr_floor"):
        create_method("feature-cloak", extractors=[ToyExtractor()], step_norm="l2")
    one = faces(people=1)
    with pytest.raises(ValueError, match="two or more"):
        create_method("feature-cloak", extractors=[ToyExtractor()]).fit(one, one.labels)


def test_farthest_decoy_and_outside_pool():
    """'farthest' picks, per person, the pool person least like them; an outside pool supplies the decoys."""
    data, pool, toy = faces(people=3), faces(people=5, per=2), ToyExtractor()
    own = F.normalize(torch.stack([toy(data.images[data.labels == c]).mean(0) for c in range(3)]), dim=1)
    cands = F.normalize(torch.stack([toy(pool.images[pool.labels == c]).mean(0) for c in range(5)]), dim=1)
    far = create_method("feature-cloak", extractors=[toy], decoy="farthest", decoy_pool=pool).fit(data, data.labels)
    assert torch.allclose(far.decoys[0], cands[(own @ cands.T).argmin(1)], atol=1e-5)
    nxt = create_method("feature-cloak", extractors=[toy], decoy_pool=pool).fit(data, data.labels)
    assert torch.allclose(nxt.decoys[0], cands[:3], atol=1e-5)
    inside = create_method("feature-cloak", extractors=[toy], decoy="farthest").fit(data, data.labels)
    picked = (own @ own.T).argmin(1)
    assert (picked != torch.arange(3)).all() and torch.allclose(inside.decoys[0], own[picked], atol=1e-5)
    with pytest.raises(ValueError):
        create_method("feature-cloak", extractors=[toy], decoy="nearest")


def test_affine_diversity_warps_in_every_step_and_still_moves_toward_decoys():
    data, toy = faces(), ToyExtractor()
    kw = dict(eps=16 / 255, extractors=[toy], steps=10, momentum=1.0, psnr_floor=30.0, step_norm="l2")
    method = create_method("feature-cloak", affine_diversity=True, **kw).fit(data, data.labels)
    plain = create_method("feature-cloak", **kw).fit(data, data.labels)
    assert len(method.diversity.stages) == len(plain.diversity.stages) + 1
    assert method.config()["affine_diversity"] is True and plain.config()["affine_diversity"] is False
    out = method.perturb(data.images, data.labels)
    assert (out - data.images).abs().max() <= 16 / 255 + 1e-6
    assert not torch.equal(out, plain.perturb(data.images, data.labels))
    decoys = method.decoys[0][data.labels]
    assert F.cosine_similarity(toy(out), decoys).mean() > F.cosine_similarity(toy(data.images), decoys).mean() + 0.05


def test_no_decoy_pushes_each_photo_away_from_itself_alone():
    """``decoy="none"``: no photos needed to load, one person is enough, and each photo's embedding
    moves away from its own clean one."""
    data, toy = faces(people=1), ToyExtractor()
    method = create_method("feature-cloak", eps=16 / 255, extractors=[toy], steps=10, momentum=1.0, away=1.0,
                           psnr_floor=30.0, step_norm="l2", decoy="none", batch=1).load()
    assert method.decoys == [] and method.config()["decoy"] == "none"
    out = method.perturb(data.images, data.labels)
    assert (out - data.images).abs().max() <= 16 / 255 + 1e-6
    cos = F.cosine_similarity(toy(out), toy(data.images))
    assert cos.mean() < 0.8, cos  # 1 before
    with pytest.raises(ValueError, match="away > 0"):
        create_method("feature-cloak", extractors=[toy], decoy="none")
    with pytest.raises(RuntimeError, match="call fit first"):
        create_method("feature-cloak", extractors=[toy], decoy="none", away=1.0).perturb(data.images, data.labels)
