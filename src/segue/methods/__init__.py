"""Noise methods (protections) behind one interface and a registry.

    from segue.methods import create_method, list_methods
    method = create_method("lsp", eps=8/255, seed=0)
    protected = method.fit(train, labels).perturb(train.images, labels)

Registered: ``none`` (clean), ``random`` (uniform noise), ``em`` (error-minimizing,
``mode="samplewise"|"classwise"``), ``lsp`` (linearly separable patches), ``segue`` (a trained
generator), ``feature-cloak`` (per-image PGD against pretrained face embeddings, Fawkes-style).
See :class:`segue.methods.base.NoiseMethod` for the contract.

For example, uniform noise stays within its budget::

    >>> import torch
    >>> from segue.data import FaceSet
    >>> train = FaceSet(torch.rand(4, 3, 32, 32), torch.tensor([0, 0, 1, 1]), ["a", "b"])
    >>> noisy = create_method("random", eps=8 / 255).fit(train, train.labels).perturb(train.images, train.labels)
    >>> bool((noisy - train.images).abs().max() <= 8.5 / 255)
    True
"""

from __future__ import annotations

from collections.abc import Callable

from segue.methods.base import NoiseMethod, NoProtection, quantise
from segue.registry import Registry

METHODS: Registry[NoiseMethod] = Registry("noise method", "methods")


def register_method(name: str) -> Callable:
    """Decorator: make a ``NoiseMethod`` class (or factory) available by name."""
    return METHODS.register(name)


def list_methods(pattern: str | None = None) -> list[str]:
    return METHODS.list(pattern)


def create_method(name: str, **kwargs) -> NoiseMethod:
    """Build a registered noise method; ``kwargs`` go to its constructor (unknown name: KeyError)."""
    return METHODS.create(name, **kwargs)


def _register_builtins() -> None:
    from segue.methods.em import ErrorMinimizing
    from segue.methods.feature_cloak import FeatureCloak
    from segue.methods.lsp import LinearSeparablePatches
    from segue.methods.perceptual_cloak import PerceptualCloak
    from segue.methods.random_noise import RandomNoise
    from segue.methods.segue_method import SegueMethod

    for cls in (NoProtection, RandomNoise, ErrorMinimizing, LinearSeparablePatches, SegueMethod, FeatureCloak,
                PerceptualCloak):
        register_method(cls.name)(cls)


_register_builtins()

__all__ = ["METHODS", "NoiseMethod", "create_method", "list_methods", "quantise", "register_method"]
