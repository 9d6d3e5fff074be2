"""The paper's victim: a classifier trained from scratch on the protected photos."""

from __future__ import annotations

from dataclasses import asdict

from segue.attackers.base import Attacker
from segue.victim import VictimConfig, train_victim


class ScratchVictim(Attacker):
    """A registered classifier (``model``, default ResNet18) trained from scratch (:func:`train_victim`).

    The paper's attacker, and the one Segue's shortcut is built against: a network that learns
    everything from the protected photos learns the noise instead of the faces.

    Args:
        model: a :mod:`segue.models` name (``segue list models``).
        epochs, batch_size, lr: the paper's protocol (15, 16, 5e-4).
        seed, device: as :class:`Attacker`.

    Shape:
        ``run(train, test)``: :class:`segue.data.FaceSet` of ``(N,3,H,W)`` images in [0,1] -> result dict.

    Examples:
        >>> import torch
        >>> from segue.data import FaceSet
        >>> toy = FaceSet(torch.rand(8, 3, 32, 32), torch.arange(8) % 2, ["a", "b"])
        >>> result = ScratchVictim(epochs=2, batch_size=4).run(toy, toy)
        >>> len(result["history"]), result["chance"]
        (2, 0.5)
    """

    name = "scratch"
    trains_batches = True

    def __init__(self, model: str = "resnet18", epochs: int = 15, batch_size: int = 16, lr: float = 5e-4,
                 seed: int = 0, device="cpu"):
        super().__init__(seed, device)
        self.victim = VictimConfig(model=model, epochs=int(epochs), batch_size=int(batch_size), lr=float(lr),
                                   seed=self.seed)

    def run(self, train, test, groups=None, on_epoch=None, batch_transforms=None) -> dict:
        return train_victim(train, test, self.victim, self.device, on_epoch=on_epoch,
                            batch_transforms=batch_transforms or None, groups=groups)

    def config(self) -> dict:
        return {"name": self.name, **asdict(self.victim)}
