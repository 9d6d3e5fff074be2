"""Finding faces in whole photos, so only the face region is perturbed.

The generator was trained on face crops; a phone photo is mostly not face. Protect therefore
finds each face, takes a square crop with margin around it (about the framing of the training
crops), runs the generator on the crop and pastes the perturbation back at full resolution.

Detectors sit behind one small interface and a registry (``create_detector(name)``). Default
``dlib-hog``: dlib's HOG detector from ``dlib-bin`` (the ``segue[unsupervised]`` extra), offline,
no weights file. It runs on a copy scaled to ``detect_side`` pixels on the long side, which
keeps 12-MP photos fast; faces smaller than ~80 px at that scale are missed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from PIL import Image

from segue.registry import Registry

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive
detectors: Registry["FaceDetector"] = Registry("face detector", "detectors")


class FaceDetector(ABC):
    """Returns face boxes in the photo's own pixel coordinates.

    ``segue protect`` protects the detected faces of photos larger than a face crop; registered by
    name (``segue list detectors``, :func:`create_detector`). Subclasses implement ``detect``.

    Shape:
        ``detect(rgb (H,W,3) uint8)`` -> list of ``(x0, y0, x1, y1)`` boxes (x1/y1 exclusive).

    Examples:
        >>> import numpy as np
        >>> create_detector("dlib-hog").detect(np.zeros((64, 64, 3), np.uint8))
        []
    """

    name: str = "base"

    @abstractmethod
    def detect(self, rgb: np.ndarray) -> list[Box]:
        """Boxes of the faces in an upright ``(H,W,3)`` uint8 photo."""


def list_detectors(pattern: str | None = None) -> list[str]:
    return detectors.list(pattern)


def create_detector(name: str = "dlib-hog", **kwargs) -> FaceDetector:
    return detectors.create(name, **kwargs)


@detectors.register("dlib-hog")
class DlibHOG(FaceDetector):
    """dlib's frontal HOG + linear SVM detector, run on a downscaled copy.

    Args:
        detect_side: the longer side the copy is downscaled to before detection (1280).
        upsample: dlib's upsampling passes (0; 1 finds smaller faces, 4x slower).

    Shape:
        ``detect(rgb (H,W,3) uint8)`` -> list of boxes in ``rgb``'s coordinates.

    Examples:
        >>> import numpy as np
        >>> from segue.data import load_orl
        >>> train, _ = load_orl(size=112, num_classes=1)
        >>> rgb = (train.images[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        >>> len(DlibHOG().detect(rgb))
        1
    """

    name = "dlib-hog"

    def __init__(self, detect_side: int = 1280, upsample: int = 0):
        try:
            import dlib
        except ImportError as exc:
            raise ImportError("face detection needs dlib: pip install 'segue[unsupervised]'") from exc
        self.detector = dlib.get_frontal_face_detector()
        self.detect_side, self.upsample = detect_side, upsample

    def detect(self, rgb: np.ndarray) -> list[Box]:
        h, w = rgb.shape[:2]
        scale = min(1.0, self.detect_side / max(h, w))
        small = rgb
        if scale < 1.0:
            small = np.asarray(Image.fromarray(rgb).resize((round(w * scale), round(h * scale)), Image.BILINEAR))
        boxes = []
        for r in self.detector(np.ascontiguousarray(small), self.upsample):
            x0, y0 = max(r.left() / scale, 0), max(r.top() / scale, 0)
            x1, y1 = min((r.right() + 1) / scale, w), min((r.bottom() + 1) / scale, h)
            if x1 > x0 and y1 > y0:
                boxes.append((int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))))
        return boxes


def crop_around(box: Box, width: int, height: int, margin: float = 0.5) -> Box:
    """Square crop around a face box, ``margin`` of the box side added on every side, inside the photo.

    dlib's boxes hug eyes-to-chin; the training crops (WebFace10, ORL) show the whole head,
    which a margin of about half the box side reproduces.
    """
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = side / 2
    return (max(int(cx - half), 0), max(int(cy - half), 0), min(int(np.ceil(cx + half)), width),
            min(int(np.ceil(cy + half)), height))
