"""Classifier registry for surrogates and victims (timm-style ``create_model(name)``).

All models take images in [0,1] and are built from scratch: victims are trained by the
attacker on the (protected) photos, never pretrained on someone else's faces.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torchvision
from torch import nn

from segue.registry import Registry

MODELS: Registry[nn.Module] = Registry("victim model", "models")


def register_model(name: str) -> Callable:
    """Decorator: make a builder ``fn(num_classes) -> nn.Module`` available by name.

    A builder that also takes ``image_size`` (e.g. a ViT, whose position embedding depends
    on it) gets the data's size from :func:`create_model`.
    """
    return MODELS.register(name)


def list_models(pattern: str | None = None) -> list[str]:
    return MODELS.list(pattern)


def create_model(name: str, num_classes: int, image_size: int | None = None) -> nn.Module:
    """Build a registered classifier with ``num_classes`` outputs (for ``image_size`` px inputs)."""
    builder = MODELS.get(name)
    if "image_size" in inspect.signature(builder).parameters:
        return builder(num_classes, image_size=image_size or 224)
    return builder(num_classes)


@register_model("resnet18")
def resnet18(num_classes: int) -> nn.Module:
    """The paper's surrogate and main victim (torchvision, standard ImageNet stem)."""
    return torchvision.models.resnet18(weights=None, num_classes=num_classes)


@register_model("resnet50")
def resnet50(num_classes: int) -> nn.Module:
    """A deeper victim (torchvision ResNet50, from scratch)."""
    return torchvision.models.resnet50(weights=None, num_classes=num_classes)


@register_model("mobilenet_v2")
def mobilenet_v2(num_classes: int) -> nn.Module:
    """A mobile victim (torchvision MobileNetV2, from scratch)."""
    return torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)


@register_model("inception_v3")
def inception_v3(num_classes: int) -> nn.Module:
    """torchvision Inception-v3 without the auxiliary head. Needs inputs of at least 75 px
    (its stride-2 stages shrink a smaller image to nothing); 112 px works."""
    return torchvision.models.inception_v3(weights=None, num_classes=num_classes, aux_logits=False,
                                           init_weights=True, transform_input=False)


@register_model("efficientnet_b1")
def efficientnet_b1(num_classes: int) -> nn.Module:
    """torchvision EfficientNet-B1, from scratch."""
    return torchvision.models.efficientnet_b1(weights=None, num_classes=num_classes)


@register_model("vit_tiny")
def vit_tiny(num_classes: int, image_size: int = 224) -> nn.Module:
    """timm ``vit_tiny_patch16_224`` at the data's size (16-px patches; needs ``segue[bench]``)."""
    try:
        import timm
    except ImportError:
        raise ImportError("the vit_tiny victim needs timm: pip install 'segue[bench]'") from None
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=num_classes, img_size=image_size)
