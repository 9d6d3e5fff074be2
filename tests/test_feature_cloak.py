"""The per-image feature cloak: budget, PSNR floor, and that it moves each embedding away from its own."""

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
    method = create_method("feature-cloak", eps=eps, extractors=[ToyExtractor()], steps=5,
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


def test_refuses_dlib_and_l2_steps_without_a_floor():
    with pytest.raises(ValueError, match="black-box"):
        create_method("feature-cloak", extractors=["dlib"])
    with pytest.raises(ValueError, match="psnr_floor"):
        create_method("feature-cloak", extractors=[ToyExtractor()], psnr_floor=0.0)


def test_pushes_each_photo_away_from_itself_alone():
    """No photos needed to load, one person and one photo a batch are enough, and each photo's
    embedding moves away from its own clean one; the warp of the input diversity is on by default."""
    data, toy = faces(people=1), ToyExtractor()
    with pytest.raises(RuntimeError, match="call load"):
        create_method("feature-cloak", extractors=[toy]).perturb(data.images, data.labels)
    method = create_method("feature-cloak", extractors=[toy], steps=10, batch=1).load()
    plain = create_method("feature-cloak", extractors=[toy], steps=10, batch=1, affine_diversity=False).load()
    assert len(method.diversity.stages) == len(plain.diversity.stages) + 1
    out = method.perturb(data.images, data.labels)
    assert (out - data.images).abs().max() <= 16 / 255 + 1e-6
    cos = F.cosine_similarity(toy(out), toy(data.images))
    assert cos.mean() < 0.8, cos  # 1 before
    assert not torch.equal(out, plain.perturb(data.images, data.labels))


class DtypeProbe(ToyExtractor):
    """:class:`ToyExtractor` that records the dtype its convolution computes in."""

    seen: set

    def forward(self, x):
        self.seen.add(self.net[0](x).dtype)
        return super().forward(x)


@pytest.mark.parametrize("precision,dtype", [("float32", torch.float32), ("bfloat16", torch.bfloat16)])
def test_precision_sets_the_extractors_passes_and_the_budget_holds(precision, dtype):
    data, eps, probe = faces(), 16 / 255, DtypeProbe()
    probe.seen = set()
    method = create_method("feature-cloak", eps=eps, extractors=[probe], steps=3, precision=precision).load()
    out = method.perturb(data.images, data.labels)
    assert probe.seen == {dtype}
    assert method.config()["precision"] == precision
    assert (out - data.images).abs().max() <= eps + 1e-6 and torch.equal(out, (out * 255).round() / 255)


def test_precision_auto_is_bfloat16_only_where_the_device_runs_it_natively():
    from segue.runtime import native_bf16, resolve_precision

    assert resolve_precision("auto", "cpu") == ("bfloat16" if native_bf16("cpu") else "float32")
    assert resolve_precision("float32", "cpu") == "float32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("half", "cpu")
