"""Attackers: what someone who scraped the protected photos does with them.

Every attacker is fitted on the (protected) training set and scored on *clean* photos of the
same people, with one call and one result format (that of :func:`segue.victim.train_victim`)::

    from segue.attackers import create_attacker, list_attackers
    attacker = create_attacker("dlib-linear", seed=0)
    result = attacker.run(protected_train, clean_test)   # {"final_acc", "peak_acc", "history", ...}


For example, a from-scratch victim on a toy set (the result format every attacker shares)::

    >>> import torch
    >>> from segue.data import FaceSet
    >>> toy = FaceSet(torch.rand(8, 3, 32, 32), torch.arange(8) % 2, ["a", "b"])
    >>> result = create_attacker("scratch", epochs=1, batch_size=4).run(toy, toy)
    >>> sorted(result), len(result["history"]), result["chance"]
    (['chance', 'final_acc', 'history', 'peak_acc', 'peak_epoch'], 1, 0.5)

Registered: ``scratch`` (a classifier trained from scratch, the paper's victim; ``model=``),
``dlib-linear`` / ``dlib-knn`` and ``facenet-linear`` / ``facenet-knn`` (a pretrained face
embedding + logistic regression / nearest neighbours, how deployed recognisers enrol people),
``finetune`` (a pretrained FaceNet fine-tuned end to end, FaceCure's strongest attacker).
"""

from __future__ import annotations

from collections.abc import Callable

from segue.attackers.base import Attacker
from segue.registry import Registry

ATTACKERS: Registry[Attacker] = Registry("attacker")


def register_attacker(name: str) -> Callable:
    """Decorator: make an :class:`Attacker` class (or factory) available by name."""
    return ATTACKERS.register(name)


def list_attackers(pattern: str | None = None) -> list[str]:
    return ATTACKERS.list(pattern)


def create_attacker(name: str, **kwargs) -> Attacker:
    """Build a registered attacker; ``kwargs`` go to its constructor (unknown name: KeyError)."""
    return ATTACKERS.create(name, **kwargs)


def _register_builtins() -> None:
    from segue.attackers import embedding, finetune, scratch

    for cls in (scratch.ScratchVictim, *embedding.PRESETS, finetune.FineTune):
        register_attacker(cls.name)(cls)


_register_builtins()

__all__ = ["ATTACKERS", "Attacker", "create_attacker", "list_attackers", "register_attacker"]
