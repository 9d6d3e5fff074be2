"""The perceptual cloak with FaceNet's backward pass reshaped for transfer: SGM and LinBP.

Two tricks from the black-box adversarial-example literature change only how the surrogate's
gradient is computed, not its forward pass or the cost of a step, so ``low``'s time and bar stay:

- **SGM** (Wu et al., *Skip Connections Matter: On the Transferability of Adversarial Examples
  Generated with ResNets*, ICLR 2020): the gradient through each residual branch is scaled by
  ``gamma`` < 1, so more of it comes through the skip connections; perturbations made that way
  transferred further between ImageNet models. FaceNet's Inception-ResNet-v1 is residual
  (Block35 / Block17 / Block8), so the trick applies; ``gamma`` = 0.2 is the paper's ResNet value,
  not tuned here.
- **LinBP** (Guo et al., *Backpropagating Linearly Improves Transferability of Adversarial
  Examples*, NeurIPS 2020): from block ``linbp`` on, every ReLU passes its gradient as if it were
  the identity.

``python benchmarks/cloak_frontier.py --data orl20 --protections sgm:chroma=0.3,texture=true,precision=bfloat16,steps=24 ...``
measures it at ``low``'s bar (docs/attacks.md).
"""

from __future__ import annotations

import torch
from torch import nn

from segue.methods.perceptual_cloak import PerceptualCloak

#: facenet-pytorch's residual blocks: each ends ``relu(conv2d(branches) * scale + x)``.
RESIDUAL_BLOCKS = ("Block35", "Block17", "Block8")


def scale_gradient(module: nn.Module, gamma: float):
    """A forward hook: the module's output unchanged, the gradient through it times ``gamma``."""
    def hook(_, __, out: torch.Tensor) -> torch.Tensor:
        return out * gamma + out.detach() * (1 - gamma)
    return module.register_forward_hook(hook)


class LinearBackwardReLU(nn.Module):
    """ReLU forward, identity backward (LinBP)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (torch.relu(x) - x).detach()


def residual_blocks(model: nn.Module) -> list[nn.Module]:
    """``model``'s residual blocks in forward order."""
    return [m for m in model.modules() if type(m).__name__ in RESIDUAL_BLOCKS]


def reshape_backward(model: nn.Module, gamma: float = 1.0, linbp: int | None = None) -> nn.Module:
    """``model`` in place: SGM's ``gamma`` on every residual branch (its closing ``conv2d``), and from
    residual block ``linbp`` on (None: none) every ReLU linear in the backward pass."""
    blocks = residual_blocks(model)
    if not blocks:
        raise ValueError("no residual blocks: SGM and LinBP here know facenet-pytorch's Inception-ResNet-v1")
    if gamma != 1.0:
        for block in blocks:
            scale_gradient(block.conv2d, gamma)
    if linbp is not None:
        for block in blocks[linbp:]:
            for parent in block.modules():
                for name, child in parent.named_children():
                    if isinstance(child, nn.ReLU):
                        setattr(parent, name, LinearBackwardReLU())
    return model


class SGMCloak(PerceptualCloak):
    """:class:`PerceptualCloak` whose surrogate backpropagates as SGM (``gamma``) and LinBP (``linbp``) say."""

    name = "sgm-cloak"

    def __init__(self, gamma: float = 0.2, linbp: int | None = None, **kw):
        super().__init__(**kw)
        self.gamma, self.linbp = float(gamma), (None if linbp is None or linbp < 0 else int(linbp))

    def config(self) -> dict:
        return {**super().config(), "gamma": self.gamma, "linbp": self.linbp}

    def load(self) -> "SGMCloak":
        super().load()
        for m in self.models:
            reshape_backward(m, self.gamma, self.linbp)
        return self
