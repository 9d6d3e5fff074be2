"""Small runtime helpers shared by every command: device choice, seeding, provenance."""

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
