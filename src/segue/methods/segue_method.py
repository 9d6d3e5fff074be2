"""Segue as a noise method: one forward pass of a trained generator (default: the shipped one)."""

from __future__ import annotations

import torch

from segue.methods.base import NoiseMethod


class SegueMethod(NoiseMethod):
    """Segue as a noise method: a trained generator's one forward pass (:func:`segue.protect_images`).

    ``fit`` does not train a generator: ``fit_info`` reports the generator's own training time and
    device from its provenance (what the "with generator training" time adds).

    Args:
        eps: override the generator's budget (None: its own).
        seed, device: as :class:`NoiseMethod`.
        weights: a shipped name (``segue list weights``), a ``.safetensors`` path, or None (``default``).
        generator: an already loaded :class:`segue.generator.Generator` instead of ``weights``.
        generator_overrides: config fields to change on the loaded weights (see ``load_generator``).

    Shape:
        ``perturb(images (N,3,H,W), side_labels (N,))`` -> ``(N,3,H,W)``, ``|out - images| <= eps``.

    Examples:
        >>> import torch
        >>> x = torch.randint(0, 256, (2, 3, 112, 112)) / 255
        >>> out = SegueMethod(weights="default").perturb(x, torch.tensor([0, 1]))
        >>> out.shape, bool((out - x).abs().max() <= 8 / 255 + 1e-6)
        (torch.Size([2, 3, 112, 112]), True)
    """

    name = "segue"

    def __init__(self, eps: float | None = None, seed: int = 0, device: str = "cpu", weights: str | None = None,
                 generator=None, generator_overrides: dict | None = None):
        from segue.checkpoint import load_generator

        if generator is not None:
            self.generator, self.provenance = generator, {}
        else:
            self.generator, self.provenance = load_generator(weights, device, generator_overrides)
        if eps is not None and abs(eps - self.generator.eps) > 1e-9:
            raise ValueError(f"generator budget is {self.generator.eps * 255:.1f}/255, not {eps * 255:.1f}/255")
        super().__init__(self.generator.eps, seed, device)
        self.weights = weights or "shipped"
        self.generator_overrides = dict(generator_overrides or {})
        self.fit_info = {
            "generator_weights": self.weights,
            "generator_train_seconds": self.provenance.get("train_seconds"),
            "generator_train_device": self.provenance.get("device", "not recorded in the weights' provenance"),
            "generator_image_size": self.generator.config.image_size,
        }

    def config(self) -> dict:
        extra = {"generator_overrides": self.generator_overrides} if self.generator_overrides else {}
        return {**super().config(), "weights": self.weights, **extra}

    def perturb(self, images: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        from segue.protect import protect_images

        return protect_images(self.generator, images, side_labels)
