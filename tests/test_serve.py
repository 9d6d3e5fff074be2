"""API tests for ``segue serve`` with FastAPI's test client (no network, tiny generator)."""

import io
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from segue.generator import Generator, GeneratorConfig  # noqa: E402
from segue.serve import create_app  # noqa: E402


def png_bytes(size=(48, 40), mode="RGB", fmt="PNG", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(30, 220, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client():
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(width=16, image_size=32)).eval()
    return TestClient(create_app(generator=g, max_bytes=200_000, max_pixels=300 * 300))


def test_health(client):
    r = client.get("/api/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["eps_255"] == 8


def test_page_and_openapi_schema(client):
    page = client.get("/").text
    assert "segue" in page and "side label" not in page.lower()  # plain words on the first view
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/protect", "/api/health", "/api/protect-zip"} <= set(paths)


def test_protect_happy_path_is_within_eps(client):
    data = png_bytes()
    r = client.post("/api/protect", files={"file": ("face.png", data, "image/png")}, data={"label": "3"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    a = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), dtype=np.int16)
    assert a.shape == b.shape
    assert 0 < np.abs(a - b).max() <= 9
    assert int(r.headers["X-Segue-Linf"]) <= 9 and float(r.headers["X-Segue-PSNR"]) > 25
    assert 0 < float(r.headers["X-Segue-HaarPSI"]) < 1 and float(r.headers["X-Segue-DeltaE-P95"]) > 0  # every upload measured
    assert float(r.headers["X-Segue-Shading-P95"]) > 0


def test_original_format_on_request(client):
    r = client.post("/api/protect", files={"file": ("f.jpg", png_bytes(fmt="JPEG"), "image/jpeg")},
                    data={"output": "original"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


def test_oversize_bytes_and_pixels_are_413(client):
    big = png_bytes(size=(400, 400))
    assert len(big) > 200_000
    r = client.post("/api/protect", files={"file": ("big.png", big, "image/png")})
    assert r.status_code == 413 and "larger" in r.json()["error"]
    many_pixels = io.BytesIO()
    Image.new("L", (400, 400)).save(many_pixels, format="PNG")  # compresses small, but too many pixels
    r = client.post("/api/protect", files={"file": ("flat.png", many_pixels.getvalue(), "image/png")})
    assert r.status_code == 413 and "pixels" in r.json()["error"]


def test_non_image_is_415_even_with_image_extension(client):
    r = client.post("/api/protect", files={"file": ("face.jpg", b"%PDF-1.4 not an image", "image/jpeg")})
    assert r.status_code == 415 and r.json()["status"] == 415


def test_corrupt_image_is_422(client):
    data = png_bytes(size=(64, 64))
    r = client.post("/api/protect", files={"file": ("cut.png", data[: len(data) // 2], "image/png")})
    assert r.status_code == 422 and "decoded" in r.json()["error"]


def test_bad_label_is_422(client):
    r = client.post("/api/protect", files={"file": ("f.png", png_bytes(), "image/png")}, data={"label": "-1"})
    assert r.status_code == 422


def test_concurrent_requests(client):
    def call(i):
        return client.post("/api/protect", files={"file": (f"{i}.png", png_bytes(seed=i), "image/png")}, data={"label": str(i)})

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(call, range(8)))
    assert all(r.status_code == 200 for r in responses)
    assert len({r.content for r in responses}) == 8


def test_zip_of_several(client):
    files = [("files", (f"p{i}.png", png_bytes(seed=i), "image/png")) for i in range(3)]
    r = client.post("/api/protect-zip", files=files)
    assert r.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert sorted(names) == ["p0.png", "p1.png", "p2.png"]


class TinyEmbedding(torch.nn.Module):
    """A stand-in face extractor: unit embeddings from a random conv net (no weights to load)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())

    def forward(self, x):
        return torch.nn.functional.normalize(self.net(x), dim=1)


def test_cloak_app_says_what_it_stops_and_keeps_its_budget():
    from segue.methods.feature_cloak import FeatureCloak
    from segue.protect.cloaker import CLOAK_SETTINGS, Cloaker

    torch.manual_seed(0)
    method = FeatureCloak(**{**CLOAK_SETTINGS, "extractors": [TinyEmbedding()], "steps": 2}).load()
    cloak = TestClient(create_app(generator=Cloaker(method, image_size=32), max_bytes=200_000, max_pixels=300 * 300))
    health = cloak.get("/api/health").json()
    assert health["protection"] == "cloak" and health["eps_255"] == 16
    assert "does not stop a network trained from scratch" in health["limits"].lower()
    r = cloak.post("/api/protect", files={"file": ("a.png", png_bytes(), "image/png")})
    assert r.status_code == 200 and r.headers["X-Segue-Status"] == "protected"
    out = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    src = np.asarray(Image.open(io.BytesIO(png_bytes())).convert("RGB")).astype(int)
    assert 0 < np.abs(out - src).max() <= 16 and float(r.headers["X-Segue-PSNR"]) >= 30


def test_generator_app_says_it_does_not_stop_pretrained_recognisers(client):
    limits = client.get("/api/health").json()["limits"]
    assert client.get("/api/health").json()["protection"] == "generator" and "does NOT stop pretrained" in limits


def test_serve_refuses_cloak_with_weights(capsys):
    from segue.cli import main

    assert main(["serve", "--cloak", "--weights", "default"]) == 2
    assert "--cloak replaces the generator" in capsys.readouterr().err
