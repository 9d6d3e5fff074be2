"""Pretrained face-embedding attackers: how deployed face recognition enrols and finds people.

A pretrained extractor maps each photo to an identity embedding; the attacker fits a logistic
regression or a nearest-neighbour index on the embeddings of the (protected) training photos
and classifies the clean test photos. Nothing is trained on pixels, so an error-minimising
shortcut that a from-scratch network would latch onto only matters if it moves the embedding.
Embeddings are cached per image content (:class:`segue.attackers.cache.EmbeddingCache`), so a
grid embeds each clean or protected photo once.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from segue.attackers.base import Attacker
from segue.attackers.cache import EmbeddingCache
from segue.victim import summarise, scores_on_test


def l2_normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class EmbeddingAttacker(Attacker):
    """Embed with a pretrained extractor, then a linear classifier (``"linear"``) or k-NN (``"knn"``).

    How deployed recognisers enrol people: a face model trained on millions of photos, and a
    cheap classifier or search index fitted on the embeddings of the (here: protected) photos.

    Args:
        extractor: a :mod:`segue.extractors` name (``dlib-crop``, ``facenet``, ...).
        classifier: ``"linear"`` (standardised logistic regression, ``C``) or ``"knn"``
            (``k`` nearest neighbours by cosine distance; ``k=1`` is a face-search index).
        cache: keep embeddings on disk by image content (default on).
        seed, device: as :class:`Attacker`.

    Shape:
        ``train.images`` / ``test.images`` ``(N,3,H,W)`` in [0,1], face crops.

    Examples:
        >>> from segue.attackers import create_attacker
        >>> from segue.data import load_orl
        >>> train, test = load_orl(size=112, num_classes=3)          # the embedded ORL faces
        >>> create_attacker("dlib-knn", k=1, cache=False).run(train, test)["final_acc"]
        1.0
    """

    name = "embedding"
    extractor = "dlib-crop"
    classifier = "linear"

    def __init__(self, seed: int = 0, device="cpu", extractor: str | None = None, classifier: str | None = None,
                 k: int = 1, C: float = 1.0, cache: bool = True):
        super().__init__(seed, device)
        self.extractor = extractor or self.extractor
        self.classifier = classifier or self.classifier
        if self.classifier not in ("linear", "knn"):
            raise ValueError(f"classifier must be 'linear' or 'knn', not {self.classifier!r}")
        self.k, self.C, self.cache = int(k), float(C), bool(cache)
        self._embedder: EmbeddingCache | None = None

    @property
    def embedder(self) -> EmbeddingCache:
        if self._embedder is None:
            self._embedder = EmbeddingCache(self.extractor, persist=self.cache)
        return self._embedder

    def fit_predict(self, train_emb: np.ndarray, labels: np.ndarray, test_emb: np.ndarray) -> tuple[np.ndarray, float]:
        """Predicted test labels and training accuracy of the classifier fitted on ``train_emb``."""
        train_emb, test_emb = l2_normalise(train_emb), l2_normalise(test_emb)
        if self.classifier == "linear":
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=5000, random_state=self.seed))
        else:
            clf = KNeighborsClassifier(n_neighbors=min(self.k, len(labels)), metric="euclidean")
        clf.fit(train_emb, labels)
        return clf.predict(test_emb), float((clf.predict(train_emb) == labels).mean())

    def run(self, train, test, groups=None, on_epoch=None, batch_transforms=None) -> dict:
        import torch

        self.check_batch_transforms(batch_transforms)
        preds, train_acc = self.fit_predict(self.embedder.embed(train.images), train.labels.numpy(),
                                            self.embedder.embed(test.images))
        row = {"epoch": 1, "train_acc": round(train_acc, 4),
               **scores_on_test(torch.as_tensor(preds), test, groups), **self.embedder.stats()}
        if on_epoch:
            on_epoch(row)
        return summarise([row], len(train.classes))

    def config(self) -> dict:
        extra = {"k": self.k} if self.classifier == "knn" else {"C": self.C}
        return {"name": self.name, "extractor": self.extractor, "classifier": self.classifier, **extra}


class DlibLinear(EmbeddingAttacker):
    """dlib's 128-d face ResNet (5-point aligned on the whole crop) + logistic regression."""

    name, extractor, classifier = "dlib-linear", "dlib-crop", "linear"


class DlibKNN(EmbeddingAttacker):
    """dlib's 128-d face ResNet + k-nearest neighbours (default 1-NN: a face-search index)."""

    name, extractor, classifier = "dlib-knn", "dlib-crop", "knn"


class FaceNetLinear(EmbeddingAttacker):
    """FaceNet Inception-ResNet-v1 (512-d, OpenCV DNN on the frozen graph) + logistic regression."""

    name, extractor, classifier = "facenet-linear", "facenet", "linear"


class FaceNetKNN(EmbeddingAttacker):
    """FaceNet Inception-ResNet-v1 + k-nearest neighbours."""

    name, extractor, classifier = "facenet-knn", "facenet", "knn"


PRESETS = (DlibLinear, DlibKNN, FaceNetLinear, FaceNetKNN)
