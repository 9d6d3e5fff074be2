"""EM: error-minimizing noise (Huang et al., "Unlearnable Examples", ICLR 2021).

Min-min bi-level optimisation against a surrogate classifier trained from scratch, as in the
authors' ``perturbation.py`` (read, not copied):

* noise starts uniform in ``[-eps, eps]``;
* repeat: train the surrogate for ``train_steps`` batches on ``clamp(x + noise)``; then one
  *noise pass*: for every batch, ``steps`` PGD steps of ``step_size`` (default eps/10)
  that *decrease* the surrogate's loss, projected to ``[-eps, eps]`` (model in eval mode);
  then measure the surrogate's accuracy on the perturbed data and stop at ``stop_acc``;
* ``mode="samplewise"``: one noise per image (authors' CIFAR recipe: 20 steps, stop at 99 %);
  ``mode="classwise"``: one noise per class; each batch's updated noises are averaged per
  class (authors' setting: 1 step per batch, stop at 99 %, noise pass and stopping check on a
  random ``subset`` of the training set - they use 20 %).

Caps: ``max_passes`` (noise passes) and ``max_seconds`` (checked between batches, so a pass
can be cut short). A cap is how EM fits a CPU budget; ``fit_info`` records which stop fired.
``perturb`` on the images EM was fitted on returns the fitted noise; on other images (or for
class-wise noise, any image of a fitted class) it applies the noise learned for them - for
sample-wise noise on new images it runs the PGD steps against the final surrogate.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from segue.data import FaceSet
from segue.methods.base import NoiseMethod, quantise
from segue.models import create_model
from segue.runtime import seed_everything


class ErrorMinimizing(NoiseMethod):
    """Error-minimizing noise (Huang et al., ICLR 2021), sample-wise or class-wise, against a surrogate.

    Bi-level min-min: alternately train the surrogate ``train_steps`` batches and lower its loss with
    ``steps`` signed-gradient steps on the noise, until the surrogate's accuracy on the noisy set
    reaches ``stop_acc`` (or a pass/time budget ends).

    Args:
        eps, seed, device: as :class:`NoiseMethod`.
        mode: ``"samplewise"`` (one noise per photo) or ``"classwise"`` (one per person).
        model: surrogate classifier (``resnet18``).
        steps, step_size: noise steps per batch (20 sample-wise / 1 class-wise) and their size (eps/10).
        train_steps, batch_size, lr: surrogate batches per round (10), batch (32), SGD lr (0.1).
        stop_acc: stop when the surrogate fits the noisy set this well (0.99).
        subset: fraction of the photos used per round (1.0 sample-wise, 0.2 class-wise).
        max_passes, max_seconds: budgets (None: unlimited).

    Shape:
        ``fit(train FaceSet, side_labels (N,))``; ``perturb(images (N,3,H,W), side_labels (N,))`` -> ``(N,3,H,W)``.

    Examples:
        >>> import torch
        >>> from segue.data import FaceSet
        >>> train = FaceSet(torch.rand(8, 3, 16, 16), torch.arange(8) % 2, ["a", "b"])
        >>> em = ErrorMinimizing(mode="classwise", train_steps=1, batch_size=8, max_passes=1).fit(train, train.labels)
        >>> em.perturb(train.images, train.labels).shape, em.fit_info["passes"]
        (torch.Size([8, 3, 16, 16]), 1)
    """

    name = "em"

    def __init__(self, eps: float = 8 / 255, seed: int = 0, device: str = "cpu", mode: str = "samplewise",
                 model: str = "resnet18", steps: int | None = None, step_size: float | None = None,
                 train_steps: int = 10, batch_size: int = 32, lr: float = 0.1, stop_acc: float = 0.99,
                 subset: float | None = None, max_passes: int | None = None, max_seconds: float | None = None):
        super().__init__(eps, seed, device)
        if mode not in ("samplewise", "classwise"):
            raise ValueError(f"mode must be 'samplewise' or 'classwise', not {mode!r}")
        self.mode, self.model_name = mode, model
        self.steps = steps if steps is not None else (20 if mode == "samplewise" else 1)
        self.step_size = step_size if step_size is not None else self.eps / 10
        self.train_steps, self.batch_size, self.lr, self.stop_acc = train_steps, batch_size, lr, stop_acc
        self.subset = subset if subset is not None else (1.0 if mode == "samplewise" else 0.2)
        self.max_passes, self.max_seconds = max_passes, max_seconds
        self.noise: torch.Tensor | None = None
        self.model: torch.nn.Module | None = None
        self._fitted_images: torch.Tensor | None = None

    def config(self) -> dict:
        return {**super().config(), "mode": self.mode, "model": self.model_name, "steps": self.steps,
                "step_size_255": round(self.step_size * 255, 4), "train_steps": self.train_steps,
                "batch_size": self.batch_size, "lr": self.lr, "stop_acc": self.stop_acc, "subset": self.subset,
                "max_passes": self.max_passes, "max_seconds": self.max_seconds}

    def _min_min(self, x: torch.Tensor, y: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        """``steps`` PGD steps on ``eta`` that lower the surrogate's loss (model frozen, eval mode)."""
        assert self.model is not None
        for _ in range(self.steps):
            eta = eta.detach().requires_grad_(True)
            loss = F.cross_entropy(self.model((x + eta).clamp(0, 1)), y)
            (grad,) = torch.autograd.grad(loss, eta)
            eta = (eta - self.step_size * grad.sign()).clamp(-self.eps, self.eps)
        return eta.detach()

    def _noise_for(self, idx: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        assert self.noise is not None
        return self.noise[idx] if self.mode == "samplewise" else self.noise[labels]

    def fit(self, train: FaceSet, side_labels: torch.Tensor) -> "ErrorMinimizing":
        t0 = time.perf_counter()
        rng = seed_everything(self.seed)
        dev = self.device
        n, (c, h, w) = len(train), train.images.shape[1:]
        num_classes = max(len(train.classes), int(side_labels.max()) + 1)
        images, labels = train.images, side_labels.long()
        self.model = create_model(self.model_name, num_classes, image_size=h).to(dev)
        opt = torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=0.9, weight_decay=5e-4)
        shape = (n, c, h, w) if self.mode == "samplewise" else (num_classes, c, h, w)
        self.noise = (torch.rand(shape, generator=rng) * 2 - 1) * self.eps
        pass_idx = torch.randperm(n, generator=rng)[: max(1, round(self.subset * n))].sort().values
        passes, acc, stopped_by, train_cursor = 0, 0.0, None, n
        order = torch.randperm(n, generator=rng)
        history = []

        def out_of_time() -> bool:
            return self.max_seconds is not None and time.perf_counter() - t0 >= self.max_seconds

        while stopped_by is None:
            # 1) train the surrogate for a few batches on the current noisy data
            self.model.train()
            for _ in range(self.train_steps):
                if train_cursor >= n:
                    order, train_cursor = torch.randperm(n, generator=rng), 0
                idx = order[train_cursor : train_cursor + self.batch_size]
                train_cursor += self.batch_size
                x = (images[idx] + self._noise_for(idx, labels[idx])).clamp(0, 1).to(dev)
                loss = F.cross_entropy(self.model(x), labels[idx].to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            # 2) one noise pass (min-min)
            self.model.eval()
            for p in self.model.parameters():
                p.requires_grad_(False)
            cut = False
            for start in range(0, len(pass_idx), self.batch_size):
                if out_of_time():
                    cut = True
                    break
                idx = pass_idx[start : start + self.batch_size]
                y = labels[idx]
                eta = self._min_min(images[idx].to(dev), y.to(dev), self._noise_for(idx, y).to(dev)).cpu()
                if self.mode == "samplewise":
                    self.noise[idx] = eta
                else:
                    for cls in y.unique().tolist():
                        self.noise[cls] = eta[y == cls].mean(0).clamp(-self.eps, self.eps)
            for p in self.model.parameters():
                p.requires_grad_(True)
            passes += 1
            # 3) stopping: surrogate accuracy on the perturbed (pass) data
            acc = self._accuracy(images[pass_idx], labels[pass_idx], pass_idx)
            history.append({"pass": passes, "train_acc": round(acc, 4), "seconds": round(time.perf_counter() - t0, 1),
                            "cut_short": cut})
            if acc >= self.stop_acc:
                stopped_by = "stop_acc"
            elif self.max_passes is not None and passes >= self.max_passes:
                stopped_by = "max_passes"
            elif cut or out_of_time():
                stopped_by = "max_seconds"
        self._fitted_images = images
        self.fit_info = {"passes": passes, "final_train_acc": round(acc, 4), "stopped_by": stopped_by,
                         "fit_seconds": round(time.perf_counter() - t0, 1), "history": history}
        return self

    @torch.no_grad()
    def _accuracy(self, images: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor) -> float:
        assert self.model is not None
        self.model.eval()
        correct = 0
        for start in range(0, len(idx), 64):
            sl = slice(start, start + 64)
            x = (images[sl] + self._noise_for(idx[sl], labels[sl])).clamp(0, 1).to(self.device)
            correct += (self.model(x).argmax(1).cpu() == labels[sl]).sum().item()
        return correct / max(len(idx), 1)

    def perturb(self, images: torch.Tensor, side_labels: torch.Tensor) -> torch.Tensor:
        if self.noise is None:
            raise RuntimeError("EM noise is learned from the data: call fit(train, side_labels) first")
        labels = side_labels.long()
        if self.mode == "classwise":
            if self.noise.shape[-2:] != images.shape[-2:]:
                raise ValueError(f"class-wise noise is {tuple(self.noise.shape[-2:])}, images {tuple(images.shape[-2:])}")
            return quantise(images, self.noise[labels], self.eps)
        fitted = self._fitted_images
        if fitted is not None and fitted.shape == images.shape and torch.equal(fitted, images):
            return quantise(images, self.noise, self.eps)
        # new photos: min-min against the final surrogate, from a uniform start
        assert self.model is not None
        self.model.eval()
        gen = torch.Generator().manual_seed(self.seed)
        out = []
        for start in range(0, len(images), self.batch_size):
            x, y = images[start : start + self.batch_size], labels[start : start + self.batch_size]
            eta0 = (torch.rand(x.shape, generator=gen) * 2 - 1) * self.eps
            out.append(self._min_min(x.to(self.device), y.to(self.device), eta0.to(self.device)).cpu())
        return quantise(images, torch.cat(out), self.eps)
