"""The paper's victim: a classifier trained from scratch on the protected photos."""

from __future__ import annotations

from dataclasses import asdict

from segue.attackers.base import Attacker
from segue.victim import VictimConfig, train_victim


class ScratchVictim(Attacker):
    """A registered classifier (``model``, default ResNet18) trained from scratch (:func:`train_victim`).

    Args:
        model: a :mod:`segue.models` name. epochs, batch_size, lr: the paper's protocol (15, 16, 5e-4).

    Example::

        ScratchVictim(model="resnet18", epochs=15, seed=0).run(protected_train, clean_test)
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
