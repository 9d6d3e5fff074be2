"""Victim evaluation: what an attacker who scraped the protected photos would get.

A classifier is trained from scratch on the (protected) training set with the paper's
protocol - ResNet18, Adam 5e-4, cosine schedule, batch 16, no augmentation - and tested on
*clean* photos after every epoch. Low clean-test accuracy means the photos are protected.
The peak over epochs is reported next to the final value, because an attacker can stop
early (an unlearnable example must hold at every epoch, not only the last).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from segue.data import FaceSet
from segue.models import create_model
from segue.runtime import seed_everything


@dataclass
class VictimConfig:
    """The victim trained from scratch on protected photos (the paper's evaluation).

    Args:
        model: registered classifier (``resnet18``; ``segue list models``).
        epochs: 15 on the CPU protocol; every epoch's clean-test accuracy is logged.
        batch_size, lr: 16, 5e-4 (Adam).
        seed: initialisation and batch order.

    Examples:
        >>> VictimConfig(epochs=2).to_dict()
        {'model': 'resnet18', 'epochs': 2, 'batch_size': 16, 'lr': 0.0005, 'seed': 0}
    """
    model: str = "resnet18"
    epochs: int = 15
    batch_size: int = 16
    lr: float = 5e-4
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def predict(model: nn.Module, data: FaceSet, device: torch.device, batch_size: int = 64) -> torch.Tensor:
    """Predicted labels of ``model`` on ``data`` (eval mode)."""
    model.eval()
    preds = [model(data.images[start : start + batch_size].to(device)).argmax(1).cpu()
             for start in range(0, len(data), batch_size)]
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def accuracy(model: nn.Module, data: FaceSet, device: torch.device, batch_size: int = 64) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (eval mode)."""
    return (predict(model, data, device, batch_size) == data.labels).float().mean().item() if len(data) else 0.0


def scores_on_test(preds: torch.Tensor, test: FaceSet, groups: dict[str, torch.Tensor] | None = None) -> dict:
    """``test_acc`` on all of ``test`` and ``test_acc_<group>`` on each boolean mask of ``groups``.

    Groups are how partial protection is reported: the protected people's clean photos apart
    from everyone else's (an accuracy over all people would hide a protected minority).
    """
    hit = (preds == test.labels).float()
    row = {"test_acc": round(hit.mean().item(), 4) if len(hit) else 0.0}
    for name, mask in (groups or {}).items():
        row[f"test_acc_{name}"] = round(hit[mask].mean().item(), 4) if mask.any() else None
    return row


def summarise(history: list[dict], num_classes: int) -> dict:
    """Final and peak clean-test accuracy over a per-epoch history (the attackers' shared result format)."""
    accs = [r["test_acc"] for r in history]
    return {"final_acc": accs[-1], "peak_acc": max(accs), "peak_epoch": accs.index(max(accs)) + 1,
            "chance": round(1 / num_classes, 4), "history": history}


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, train: FaceSet, batch_size: int, rng: torch.Generator,
                device: torch.device | str, sched=None, batch_transforms: list[Callable] | None = None,
                transform_rng: torch.Generator | None = None,
                logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                min_batch: int = 1) -> tuple[float, float]:
    """One pass over ``train`` in a seeded order (every supervised loop here: victims, fine-tuning, embeddings).

    Without ``batch_transforms`` the loss is the cross-entropy with the hard labels; with them
    (``(model, x, y_soft, gen) -> (x, y_soft)``, see :func:`train_victim`) the cross-entropy with
    their soft targets. ``logits_fn(x, y)`` replaces ``model(x)`` where the logits need the
    labels (a margin head). A last batch smaller than ``min_batch`` is skipped (2 for a network
    whose BatchNorm sees one vector per photo).
    Returns (mean loss, training accuracy).
    """
    model.train()
    num_classes = len(train.classes)
    order = torch.randperm(len(train), generator=rng)
    loss_sum = correct = 0.0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if len(idx) < min_batch:
            continue
        x, y = train.images[idx].to(device), train.labels[idx].to(device)
        if batch_transforms:
            target = F.one_hot(y, num_classes).float()
            for transform in batch_transforms:
                x, target = transform(model, x, target, transform_rng)
            y = target.argmax(1)  # the dominant label, for the train accuracy
            logits = logits_fn(x, y) if logits_fn else model(x)
            loss = -(target * F.log_softmax(logits, 1)).sum(1).mean()
        else:
            logits = logits_fn(x, y) if logits_fn else model(x)
            loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        loss_sum += loss.item() * len(idx)
        correct += (logits.argmax(1) == y).sum().item()
    return loss_sum / len(train), correct / len(train)


def train_victim(
    train: FaceSet,
    test: FaceSet,
    cfg: VictimConfig,
    device: torch.device,
    on_epoch: Callable[[dict], None] | None = None,
    batch_transforms: list[Callable] | None = None,
    groups: dict[str, torch.Tensor] | None = None,
) -> dict:
    """Train a fresh victim on ``train`` and log clean-test accuracy per epoch.

    ``batch_transforms`` (training-time countermeasures, see :mod:`segue.countermeasures`)
    each map ``(model, x, y_soft, gen) -> (x, y_soft)`` on every batch, in order; the loss
    is then the cross-entropy with those soft targets. Without them the loop is the plain
    protocol above (hard labels, same batches for the same seed). ``groups`` (boolean masks over
    ``test``) add a ``test_acc_<name>`` per epoch (see :func:`scores_on_test`).
    """
    rng = seed_everything(cfg.seed)
    num_classes = len(train.classes)
    model = create_model(cfg.model, num_classes, image_size=train.images.shape[-1]).to(device)
    transform_rng = torch.Generator().manual_seed(cfg.seed + 1) if batch_transforms else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps_per_epoch = -(-len(train) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    history = []
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        train_loss, train_acc = train_epoch(model, opt, train, cfg.batch_size, rng, device, sched=sched,
                                            batch_transforms=batch_transforms, transform_rng=transform_rng)
        row = {
            "epoch": epoch + 1,
            "train_loss": round(train_loss, 4),
            "train_acc": round(train_acc, 4),
            **scores_on_test(predict(model, test, device), test, groups),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        history.append(row)
        if on_epoch:
            on_epoch(row)
    return summarise(history, num_classes)
