"""Unsupervised side information: k-means clusters of face embeddings as pseudo-labels.

The defender knows only the number of people K. Every photo is embedded by a pretrained
face extractor (:mod:`segue.extractors`), k-means groups the embeddings, and the cluster
index is the side label - at training time and again at protection time, where a new photo
gets the code of its nearest centroid. The centroids are saved next to the generator
(``.safetensors``, never pickle) so protection uses exactly the clusters G was trained on.
The paper notes this works once clustering accuracy exceeds ~80%.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from segue.data import FaceSet
from segue.extractors import FaceExtractor, create_extractor
from segue.side_info import SideInfo


def matched_to_identities(true: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Each cluster renamed to the class the best one-to-one matching (Hungarian) pairs it with.

    A cluster left without a class (more clusters than classes) keeps the name -1.
    """
    true, clusters = np.asarray(true), np.asarray(clusters)
    rows, cols = linear_sum_assignment(-contingency_matrix(true, clusters))
    rename = dict(zip(np.unique(clusters)[cols], np.unique(true)[rows]))
    return np.array([rename.get(c, -1) for c in clusters])


def cluster_accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of clusters to classes (Hungarian)."""
    return float((matched_to_identities(true, pred) == np.asarray(true)).mean())


def score_clusters(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Clustering accuracy, NMI and ARI against the true identities."""
    true, pred = np.asarray(true), np.asarray(pred)
    return {"accuracy": round(cluster_accuracy(true, pred), 4),
            "nmi": round(float(normalized_mutual_info_score(true, pred)), 4),
            "ari": round(float(adjusted_rand_score(true, pred)), 4)}


class PseudoLabels(SideInfo):
    """Side label = index of the nearest k-means centroid of the photo's face embedding.

    The unsupervised scenario: a user protects photos without saying who is who; photos of one
    person embed close together, so they share a cluster and a code.

    Args:
        centroids: ``(k, D)`` cluster centres (:meth:`fit` makes them).
        extractor: registered face extractor the embeddings came from (``dlib``).
        model: that extractor already loaded (loading dlib's models takes seconds), else loaded on first use.

    Shape:
        ``assign(images (N,3,H,W))`` -> ``(N,)`` int64; ``assign_embeddings((N,D))`` -> ``(N,)``.

    Examples:
        >>> import numpy as np
        >>> emb = np.concatenate([np.zeros((5, 4)), np.ones((5, 4))]) + 0.01 * np.random.default_rng(0).random((10, 4))
        >>> side = PseudoLabels.fit(emb, k=2)
        >>> side.num_classes, len(set(side.assign_embeddings(emb[:5]).tolist()))
        (2, 1)
    """

    name = "pseudo"

    def __init__(self, centroids: np.ndarray, extractor: str = "dlib", model: FaceExtractor | None = None):
        """``model``: the extractor already loaded (loading dlib's models takes seconds), else loaded on first use."""
        self.centroids = np.asarray(centroids, dtype=np.float32)
        self.extractor_name = extractor
        self._extractor = model

    @property
    def num_classes(self) -> int:
        return len(self.centroids)

    @property
    def extractor(self) -> FaceExtractor:
        if self._extractor is None:
            self._extractor = create_extractor(self.extractor_name)
        return self._extractor

    @classmethod
    def fit(cls, embeddings: np.ndarray, k: int, extractor: str = "dlib", seed: int = 0,
            model: FaceExtractor | None = None) -> "PseudoLabels":
        """k-means on the embeddings of the training photos; 20 restarts (10 sometimes found a worse minimum)."""
        if k < 1 or k > len(embeddings):
            raise ValueError(f"k must lie in [1, {len(embeddings)}] for {len(embeddings)} photos; got {k}")
        km = KMeans(n_clusters=k, n_init=20, random_state=seed).fit(embeddings)
        return cls(km.cluster_centers_, extractor, model)

    def assign_embeddings(self, embeddings: np.ndarray) -> torch.Tensor:
        dist = ((embeddings[:, None, :] - self.centroids[None]) ** 2).sum(-1)
        return torch.from_numpy(dist.argmin(1)).long()

    def assign(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Cluster of each photo (true labels, if given, are ignored: that is the point)."""
        return self.assign_embeddings(self.extractor.embed(images))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"extractor": self.extractor_name, "k": str(self.num_classes)}
        save_file({"centroids": torch.from_numpy(self.centroids)}, str(path), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "PseudoLabels":
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            centroids = f.get_tensor("centroids").numpy()
        return cls(centroids, meta.get("extractor", "dlib"))


def centroids_path(weights: str | Path) -> Path:
    """Where the centroids of a pseudo-label generator live: ``NAME.centroids.safetensors``."""
    weights = Path(weights)
    return weights.with_name(weights.stem + ".centroids.safetensors")


def fit_pseudo_labels(data: FaceSet, k: int | None, extractor: str = "dlib", seed: int = 0) -> tuple[PseudoLabels, torch.Tensor, dict]:
    """Embed ``data`` and fit k-means; returns (PseudoLabels, each photo's cluster, info).

    ``info`` has K, the extractor, the embedding time and - when ``data`` has class folders,
    i.e. the true identities are known - the clustering scores.
    """
    if not k:
        raise ValueError("pseudo-labels need the number of people: --k K")
    t0 = time.perf_counter()
    model = create_extractor(extractor)
    embeddings = model.embed(data.images)
    pseudo = PseudoLabels.fit(embeddings, k, extractor, seed, model)  # later photos reuse the loaded model
    labels = pseudo.assign_embeddings(embeddings)
    info: dict = {"k": k, "extractor": extractor, "embed_seconds": round(time.perf_counter() - t0, 1)}
    if data.classes:
        info["clustering"] = score_clusters(data.labels.numpy(), labels.numpy())
    return pseudo, labels, info
