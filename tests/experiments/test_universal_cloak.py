"""experiments/universal_cloak.py: the patterns learn a universal cloak within the budget, and the
method adds pattern ``label % K`` on the 8-bit grid without breaking the L-inf or PSNR promise."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # experiments/ is a folder of the repository, not part of the installed package
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from experiments.universal_cloak import (  # noqa: E402
    CoarseResidual,
    UniversalCloak,
    save_bank,
    train_coarse,
    train_patterns,
)
from segue.data import FaceSet  # noqa: E402
from segue.quality import rms, rms_cap  # noqa: E402
from test_feature_cloak import ToyExtractor, faces  # noqa: E402

EPS, FLOOR = 16 / 255, 30.0


def held_out_val():
    held_out = FaceSet(torch.randint(0, 256, (6, 3, 32, 32), generator=torch.Generator().manual_seed(3)) / 255,
                       torch.zeros(6, dtype=torch.long), ["new"])
    return held_out, torch.arange(6) % 3  # faces no pattern was trained on


def bank(steps: int = 40):
    pool, toy = faces(people=4, per=4), ToyExtractor()
    targets = F.normalize(torch.randn(3, 16, generator=torch.Generator().manual_seed(2)), dim=1)
    val = held_out_val()
    patterns, info = train_patterns(pool, toy, targets, EPS, FLOOR, steps=steps, per_step=3, per_pattern=4,
                                    step_frac=0.2, val=val, log_every=steps)
    return patterns, targets, info


def test_patterns_stay_in_budget_and_cloak_unseen_faces():
    patterns, _, info = bank()
    assert patterns.abs().max() <= EPS + 1e-6
    assert (rms(patterns) <= rms_cap(FLOOR) + 1e-6).all()
    first, last = info["history"][0], info["history"][-1]
    assert first["val_cos_own"] > 0.999  # no pattern yet
    assert last["val_cos_own"] < first["val_cos_own"] - 0.05  # away from each face's own embedding
    assert last["val_cos_decoy"] > first["val_cos_decoy"] + 0.05  # toward its pattern's decoy


def test_method_adds_the_label_pattern_on_the_grid(tmp_path):
    patterns, targets, info = bank(steps=5)
    path = tmp_path / "bank.safetensors"
    save_bank(path, patterns, targets, {"eps": EPS, "seed": 0, "psnr_floor": FLOOR, "extractor": "toy"}, info["history"])
    method = UniversalCloak(path)
    x = faces(people=2, per=3).images
    labels = torch.tensor([0, 3, 1, 0, 3, 1])  # 3 % 3 == 0: the same pattern as label 0
    out = method.perturb(x, labels)
    assert torch.equal(out, (out * 255).round() / 255)
    assert (out - x).abs().max() <= EPS + 1e-6
    assert (rms(out - x) <= rms_cap(FLOOR) + 1e-9).all()
    again = method.perturb(x[[0, 0, 0]], torch.tensor([0, 3, 1]))
    assert torch.equal(again[0], again[1]) and not torch.equal(again[0], again[2])


def test_coarse_residual_starts_at_the_bank_and_learns_within_budget(tmp_path):
    patterns, targets, info = bank(steps=5)
    meta = {"eps": EPS, "seed": 0, "psnr_floor": FLOOR, "extractor": "toy"}
    x, labels = faces(people=2, per=3).images, torch.tensor([0, 1, 2, 0, 1, 2])
    fresh = tmp_path / "fresh.safetensors"
    save_bank(fresh, patterns, targets, meta, [], CoarseResidual(EPS))
    plain = tmp_path / "plain.safetensors"
    save_bank(plain, patterns, targets, meta, [])
    assert torch.equal(UniversalCloak(fresh).perturb(x, labels), UniversalCloak(plain).perturb(x, labels))  # zero at first

    pool, toy = faces(people=4, per=4), ToyExtractor()
    bank_out, residual, trained = train_coarse(pool, toy, patterns, targets, EPS, FLOOR, max_seconds=3, batch=8,
                                               lr=1e-2, pattern_lr=1e-3, val=held_out_val(), log_every=1)
    assert trained["history"][-1]["val_cos_own"] < trained["history"][0]["val_cos_own"]  # the pair keeps learning
    path = tmp_path / "coarse.safetensors"
    save_bank(path, bank_out, targets, meta, trained["history"], residual)
    out = UniversalCloak(path).perturb(x, labels)
    assert (out - x).abs().max() <= EPS + 1e-6 and (rms(out - x) <= rms_cap(FLOOR) + 1e-9).all()
    inside = ((x[[0, 1]] * 0.8 + 0.1) * 255).round() / 255  # no clipping: equal deltas show as equal
    for bank_path, reads_photo in ((plain, False), (path, True)):
        same_pattern = UniversalCloak(bank_path).perturb(inside, torch.tensor([0, 0]))
        gap = ((same_pattern[0] - inside[0]) - (same_pattern[1] - inside[1])).abs().mean().item()
        assert (gap > 0.02 / 255) == reads_photo  # only the residual reads the photo (8-bit rounding aside)
