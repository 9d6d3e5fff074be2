"""FaceCure's "end-to-end" attacker: a pretrained face recogniser fine-tuned on the protected photos.

Stronger than a linear probe on frozen embeddings: every layer may adapt to the training
photos, so a perturbation that only works on the frozen network can be trained away (Radiya-
Dixit et al., "Data Poisoning Won't Save You From Facial Recognition", ICLR 2022, FaceCure).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from segue.attackers.base import Attacker
from segue.face_embedding import CosineHead
from segue.runtime import seed_everything
from segue.victim import scores_on_test, summarise, train_epoch


class FineTune(Attacker):
    """The FaceNet PyTorch port (:func:`segue.facenet.load_facenet_torch`) + a new head, all layers trained.

    FaceCure's strongest attacker: a pretrained recogniser fine-tuned end to end on the
    protected photos, so it can learn a shortcut *and* keep its pretrained face features.

    Args:
        epochs: passes over the protected photos (default 3: a few CPU minutes on 1300 photos).
        lr: Adam learning rate of the pretrained layers (the new head gets ``head_lr``, 0.01).
        batch_size: 32.
        seed, device: as :class:`Attacker`.

    Shape:
        images ``(N,3,H,W)`` in [0,1] at any size (the port resizes to FaceNet's 160 px).

    Examples:
        >>> from segue.data import load_orl
        >>> train, test = load_orl(size=112, train_per_class=2, num_classes=2)
        >>> result = FineTune(epochs=1, batch_size=4).run(train, test)
        >>> len(result["history"]), result["chance"]
        (1, 0.5)
    """

    name = "finetune"
    trains_batches = True

    def __init__(self, epochs: int = 3, lr: float = 1e-4, head_lr: float = 1e-2, batch_size: int = 32,
                 seed: int = 0, device="cpu"):
        super().__init__(seed, device)
        self.epochs, self.lr, self.head_lr, self.batch_size = int(epochs), float(lr), float(head_lr), int(batch_size)

    @torch.no_grad()
    def predict(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        model.eval()
        return torch.cat([model(images[s : s + 64].to(self.device)).argmax(1).cpu() for s in range(0, len(images), 64)])

    def run(self, train, test, groups=None, on_epoch=None, batch_transforms=None) -> dict:
        from segue.facenet import load_facenet_torch

        rng = seed_everything(self.seed)
        gen = torch.Generator().manual_seed(self.seed + 1)
        backbone = load_facenet_torch(self.device).requires_grad_(True)
        head = CosineHead(512, len(train.classes)).to(self.device)
        model = nn.Sequential(backbone, head)
        opt = torch.optim.Adam([{"params": backbone.parameters(), "lr": self.lr},
                                {"params": head.parameters(), "lr": self.head_lr}])
        history = []
        for epoch in range(self.epochs):
            t0 = time.perf_counter()
            train_loss, train_acc = train_epoch(model, opt, train, self.batch_size, rng, self.device,
                                                batch_transforms=batch_transforms, transform_rng=gen)
            row = {"epoch": epoch + 1, "train_loss": round(train_loss, 4), "train_acc": round(train_acc, 4),
                   **scores_on_test(self.predict(model, test.images), test, groups),
                   "seconds": round(time.perf_counter() - t0, 2)}
            history.append(row)
            if on_epoch:
                on_epoch(row)
        return summarise(history, len(train.classes))

    def config(self) -> dict:
        return {"name": self.name, "epochs": self.epochs, "lr": self.lr, "head_lr": self.head_lr,
                "batch_size": self.batch_size, "seed": self.seed, "backbone": "facenet-torch"}
