"""The one interface every attacker implements (fit on protected photos, score on clean ones)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from segue.data import FaceSet


class Attacker:
    """Base class. ``run(train, test)`` fits on ``train`` and returns per-epoch clean-test scores.

    One call for every attacker (as torchattacks has one for every attack), so a benchmark grid
    treats a victim trained from scratch and a pretrained recogniser alike.

    Args:
        seed: seeds whatever the attacker draws (victim initialisation, batch order).
        device: where torch work runs (``"cpu"`` / ``"cuda"``).

    Shape:
        ``run(train, test, groups=None, on_epoch=None, batch_transforms=None)``: two
        :class:`segue.data.FaceSet` -> the result of :func:`segue.victim.summarise`: ``final_acc``,
        ``peak_acc``, ``peak_epoch``, ``chance`` and ``history`` (one row per epoch; a one-shot
        attacker has one row) with ``test_acc`` and, for each boolean mask in ``groups``, ``test_acc_<name>``.

    Examples:
        >>> from segue.attackers import create_attacker
        >>> isinstance(create_attacker("dlib-knn"), Attacker)
        True
    """

    name = "base"
    #: whether training-time countermeasures (batch transforms) make sense for this attacker
    trains_batches = False

    def __init__(self, seed: int = 0, device: str | torch.device = "cpu"):
        self.seed = int(seed)
        self.device = torch.device(device)

    def run(self, train: FaceSet, test: FaceSet, groups: dict[str, torch.Tensor] | None = None,
            on_epoch: Callable[[dict], None] | None = None, batch_transforms: list | None = None) -> dict:
        raise NotImplementedError

    def check_batch_transforms(self, batch_transforms: list | None) -> None:
        if batch_transforms and not self.trains_batches:
            raise ValueError(f"attacker {self.name!r} does not train on batches: training-time countermeasures "
                             f"({', '.join(map(str, batch_transforms))}) do not apply")

    def config(self) -> dict[str, Any]:
        """The attacker's settings, for results files."""
        return {"name": self.name, "seed": self.seed}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"
