"""Classifier registry for surrogates and victims (timm-style ``create_model(name)``).

All models take images in [0,1] and are built from scratch: victims are trained by the
attacker on the (protected) photos, never pretrained on someone else's faces.
"""

from __future__ import annotations

from collections.abc import Callable

import torchvision
from torch import nn

_REGISTRY: dict[str, Callable[[int], nn.Module]] = {}


def register_model(name: str) -> Callable:
    """Decorator: make a builder ``fn(num_classes) -> nn.Module`` available by name."""

    def wrap(fn: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int) -> nn.Module:
    """Build a registered classifier with ``num_classes`` outputs."""
    try:
        return _REGISTRY[name](num_classes)
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None


@register_model("resnet18")
def resnet18(num_classes: int) -> nn.Module:
    """The paper's surrogate and main victim (torchvision, standard ImageNet stem)."""
    return torchvision.models.resnet18(weights=None, num_classes=num_classes)


@register_model("resnet50")
def resnet50(num_classes: int) -> nn.Module:
    return torchvision.models.resnet50(weights=None, num_classes=num_classes)


@register_model("mobilenet_v2")
def mobilenet_v2(num_classes: int) -> nn.Module:
    return torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)
