"""UEraser (Qin et al., "Learning the Unlearnable: Adversarial Augmentations Suppress Unlearnable
Example Attacks", 2023, lafeat/ueraser): heavy random augmentation of every training batch.

Plasma brightness and contrast, a random channel shuffle and one TrivialAugment op, drawn
independently for every sample, break the fixed pixel pattern a shortcut needs. The lite
variant draws once; the full one (``repeats=K``) keeps, per sample, the draw with the highest
loss (UEraser's adversarial augmentation). The published recipe trains far longer (hundreds of
epochs); here it runs inside the project's victim protocol.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.augmentation.auto import TrivialAugment

from segue.countermeasures import COUNTERMEASURES, BatchTransform


@COUNTERMEASURES.register("ueraser")
class UEraser(BatchTransform):
    """UEraser-lite (``repeats=1``) or UEraser with the worst of ``repeats`` draws per sample.

    Args:
        repeats: augmentation draws per sample; more than one picks the highest-loss draw.

    Shape: ``(model, x (B,3,H,W) in [0,1], y_soft (B,K), gen) -> (x', y_soft)``, same shape, in [0,1].

    Examples:
        >>> import torch
        >>> from segue.models import create_model
        >>> model, gen = create_model("resnet18", num_classes=2), torch.Generator().manual_seed(0)
        >>> x, y = torch.rand(4, 3, 32, 32), torch.eye(2)[[0, 1, 0, 1]]
        >>> x2, y2 = UEraser()(model, x, y, gen)        # or batch_transforms=[UEraser()] in train_victim
        >>> x2.shape, bool(x2.min() >= 0 and x2.max() <= 1), torch.equal(y2, y)
        (torch.Size([4, 3, 32, 32]), True, True)
    """

    name = "ueraser"

    def __init__(self, repeats: int = 1):
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, not {repeats}")
        self.repeats = int(repeats)
        self._colour = K.AugmentationSequential(
            K.RandomPlasmaBrightness(roughness=(0.1, 0.7), intensity=(0.0, 1.0), p=1.0),
            K.RandomPlasmaContrast(roughness=(0.1, 0.7), p=1.0),
            K.RandomChannelShuffle(p=0.5))
        self._trivial = TrivialAugment()

    def params(self) -> dict:
        return {"repeats": self.repeats}

    def augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One independent draw per sample (kornia draws from torch's global RNG: seeded from ``gen``, restored after)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            out = self._colour(x.cpu())
            out = torch.cat([self._trivial(img[None]) for img in out])
        return out.clamp(0, 1).to(x.device, x.dtype)

    @torch.no_grad()
    def _losses(self, model, x, y) -> torch.Tensor:
        was_training = model.training
        model.eval()
        loss = -(y * F.log_softmax(model(x), 1)).sum(1)
        model.train(was_training)
        return loss

    def __call__(self, model, x, y, gen):
        best = self.augment(x, gen)
        if self.repeats > 1:
            best_loss = self._losses(model, best, y)
            for _ in range(self.repeats - 1):
                cand = self.augment(x, gen)
                loss = self._losses(model, cand, y)
                worse = loss > best_loss
                best[worse], best_loss[worse] = cand[worse], loss[worse]
        return best, y
