"""The generators shipped inside the package, as tagged registry entries (timm's pretrained tags).

Each entry's tags say what a user needs to choose: the budget, the image quality and what the
weights were measured to survive or not, each with the committed results file it comes from.
``segue list weights`` prints them; ``--weights NAME`` and ``load_generator(NAME)`` load them.

    >>> from segue.shipped import list_weights, weights_tags
    >>> list_weights()
    ['default', 'robust', 'robust_rem']
    >>> weights_tags("robust_rem")["linf_255"]
    18
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from segue.registry import Registry

WEIGHTS: Registry = Registry("shipped weights", "weights")


def _entry(name: str, summary: str, **tags: Any) -> None:
    def load(device: str = "cpu"):
        from segue.checkpoint import load_generator

        return load_generator(name, device)

    load.__doc__ = summary
    WEIGHTS.register(name, **tags)(load)


# One card per shipped generator (weights/cards.json): its file, budget, quality and what it was
# measured to survive, with the committed results each number comes from.
for _name, _card in json.loads((resources.files("segue") / "weights" / "cards.json").read_text()).items():
    _entry(_name, **_card)


def list_weights(pattern: str | None = None) -> list[str]:
    return WEIGHTS.list(pattern)


def weights_tags(name: str) -> dict[str, Any]:
    """The tags of a shipped generator (file, linf_255, psnr_db, ssim, survives, fails, results)."""
    return WEIGHTS.tags(name)


SHIPPED = {name: WEIGHTS.tags(name)["file"] for name in WEIGHTS.list()}
