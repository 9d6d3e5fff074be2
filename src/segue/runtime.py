"""Small runtime helpers shared by every command: device and precision choice, seeding, provenance."""

from __future__ import annotations

import os
import platform
import random
import sys

import numpy as np
import torch


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto`` to CUDA when present, otherwise CPU (no device is ever hard-coded)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


PRECISIONS = ("float32", "bfloat16", "auto")


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively (a CUDA GPU that supports it; a CPU with
    AVX512-BF16 or AMX, through oneDNN). Elsewhere bfloat16 is emulated and slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:  # oneDNN's own check (a private op: a torch without it counts as no)
        return device.type == "cpu" and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(name: str, device: str | torch.device) -> str:
    """``auto`` -> ``bfloat16`` where :func:`native_bf16`, else ``float32``; the others as they are."""
    if name not in PRECISIONS:
        raise ValueError(f"precision is one of {PRECISIONS}, not {name!r}")
    if name == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    return name


def autocast(precision: str, device: str | torch.device):
    """The context a surrogate network's passes run in: bfloat16 autocast, or nothing for float32."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolve_precision(precision, device) == "bfloat16")


def seed_everything(seed: int) -> torch.Generator:
    """Seed every RNG we touch and return a torch.Generator for explicit sampling.

    Deterministic algorithms are requested where the backend allows, so a fixed seed
    gives the same weights on the same machine.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def versions() -> dict[str, str]:
    """Library versions recorded in every results.json, so a number can be traced back."""
    import kornia
    import torchvision

    from segue import __version__

    return {
        "segue": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "kornia": kornia.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "threads": str(torch.get_num_threads()),
    }


def device_name(device: torch.device) -> str:
    """'cpu (N threads)' or the GPU's name: a training time means little without it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def now_iso() -> str:
    """UTC now as ``YYYY-MM-DDTHH:MM:SSZ`` (results rows, run ids)."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON via a temporary file and a rename: never a half-written file."""
    import json
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def merge_config(base: dict, override: dict) -> dict:
    """``override`` on top of ``base`` (neither is changed): key by key for the sections that are
    mappings in both (e.g. ``generator``, ``distortion``, a grid's ``methods``), whole for everything else.
    The one merge rule of every config: ``base:`` files, benchmark grids and recipe stages."""
    out = dict(base)
    for key, value in override.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config_file(path: str | os.PathLike) -> dict:
    """A YAML or JSON config; ``base: OTHER.yaml`` (relative to this file) starts from another config,
    whose sections this one overrides (:func:`merge_config`); a base may have a base of its own."""
    import json
    from pathlib import Path

    import yaml

    path = Path(path)
    text = path.read_text()
    cfg = (yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)) or {}
    if "base" in cfg:
        base = load_config_file(path.parent / cfg.pop("base"))
        cfg = merge_config(base, cfg)
    return cfg
