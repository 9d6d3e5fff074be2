"""One cloak per person: a single delta fitted on a few of the person's photos and added to all of them.

The per-photo cloak (``segue protect --cloak``) transfers to dlib but costs 20 FaceNet passes per
photo; a pattern learned once on other people's faces (experiments/universal_cloak.py) costs
nothing per photo but does not transfer. In between: the same PGD, with one delta shared by the
photos of one person (their photos in one batch, the objective summed over them), so its cost is
paid per person, not per photo, and all of a person's photos carry the same pattern. Aligned face
crops put the face in about the same place, which is what lets one delta serve them all.

Outcome (docs/attacks.md, experiments/results/person_cloak_orl0.md): weaker than the per-photo cloak on
FaceNet and on dlib alike; dlib-linear 72.5 % on ORL people 0-19 everyone protected (per photo: 20.0 %).

Run through ``python experiments/feature_transfer_pilot.py --per-person [--fit-photos N] ...``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/: a folder of the repository, not installed
from experiments.feature_cloak_variants import VariantFeatureCloak  # noqa: E402


class PersonCloak(VariantFeatureCloak):
    """:class:`VariantFeatureCloak` with one delta per side label, fitted on its first ``fit_photos`` photos.

    Args:
        fit_photos: how many of each person's photos the delta is fitted on (None: all of them).
        **kwargs: :class:`VariantFeatureCloak`'s; needs ``step_norm="l2"`` (with a ``psnr_floor``).

    Shape:
        ``perturb(images (N,3,H,W), side_labels (N,))`` -> ``(N,3,H,W)``: photos of one label differ
        from their clean photos by the same delta (up to [0,1] clipping and 8-bit rounding).
    """

    name = "person-cloak"

    def __init__(self, fit_photos: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if self.step_norm != "l2":
            raise ValueError("the shared delta takes L2 steps: step_norm='l2' with a psnr_floor")
        self.fit_photos = fit_photos

    def config(self) -> dict:
        return {**super().config(), "per_person": True, "fit_photos": self.fit_photos}

    def shared_delta(self, x: torch.Tensor, targets: list[torch.Tensor | None]) -> torch.Tensor:
        """``(1,3,H,W)``: the cloak's PGD on one delta added to every photo of ``x`` (one person)."""
        return self.attack(x, targets, start=torch.zeros_like(x[:1]))

    def perturb(self, images: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        if not self.models:
            raise RuntimeError("call fit (or load with decoy 'none') first")
        labels = torch.as_tensor(side_labels)
        out = torch.empty_like(images)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for label in labels.unique():
                idx = (labels == label).nonzero().flatten()
                x = images[idx].to(self.device)
                fit_on = x[: self.fit_photos] if self.fit_photos else x
                delta = self.shared_delta(fit_on, self.targets(label.view(1).expand(len(fit_on)).to(self.device)))
                out[idx] = self.round_to_budget(x, delta.expand_as(x)).cpu()
        return out
