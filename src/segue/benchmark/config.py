"""A grid config: its cells, data, protected-set cache and partial-protection groups."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from segue.runtime import load_config_file


@dataclass(frozen=True)
class Cell:
    method: str
    victim: str
    countermeasure: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.method}|{self.victim}|{self.countermeasure}|{self.seed}"


def load_config(path: str | Path) -> dict:
    """A grid config; ``base: OTHER.yaml`` (relative to this file) starts from another grid, whose
    sections this one overrides - key by key for the mappings (methods, countermeasures, ...)."""
    cfg = load_config_file(path)
    for key in ("data", "methods", "grid"):
        if key not in cfg:
            raise ValueError(f"{path}: benchmark config needs a '{key}' section")
    cfg.setdefault("countermeasures", {"none": []})
    cfg.setdefault("victim", {})
    cfg.setdefault("output", f"benchmark-{Path(path).stem}")
    return cfg


def cells_of(cfg: dict) -> list[Cell]:
    """Every cell of the grid, in order (seeds outermost in each block), without duplicates."""
    seen: dict[str, Cell] = {}
    for block in cfg["grid"]:
        methods = block.get("methods", list(cfg["methods"]))
        victims = block.get("victims", ["resnet18"])
        cms = block.get("countermeasures", ["none"])
        seeds = block.get("seeds", [0])
        for name in methods:
            if name not in cfg["methods"]:
                raise KeyError(f"grid uses method {name!r}, not defined under 'methods'")
        for name in cms:
            if name not in cfg["countermeasures"]:
                raise KeyError(f"grid uses countermeasure {name!r}, not defined under 'countermeasures'")
        for seed, m, v, c in itertools.product(seeds, methods, victims, cms):
            cell = Cell(m, v, c, int(seed))
            seen.setdefault(cell.id, cell)
    return list(seen.values())

def cache_dir(cfg: dict) -> Path:
    """Where protected sets (copies of the photos) are cached: ``cfg['cache']``, else per output
    folder under ``$XDG_CACHE_HOME`` (``~/.cache``) - never inside the repository by default."""
    if cfg.get("cache"):
        return Path(cfg["cache"])
    import hashlib

    out = Path(cfg["output"]).resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "segue" / "benchmark" / f"{out.name}-{hashlib.sha1(str(out).encode()).hexdigest()[:10]}"

def resolve_data_path(spec: str) -> Path:
    if spec.startswith("webface10:"):
        from segue.data import webface10_root

        return webface10_root() / spec.split(":", 1)[1]
    return Path(spec)

def method_kwargs(spec: dict, device: torch.device) -> tuple[str, dict]:
    spec = dict(spec)
    name = spec.pop("name")
    spec.pop("note", None)
    if "eps_255" in spec:
        spec["eps"] = spec.pop("eps_255") / 255
    if name in ("em", "segue"):
        spec.setdefault("device", str(device))
    return name, spec

def load_data(cfg: dict):
    """``(train, test)`` of ``cfg['data']``: ImageFolder paths (``train`` / ``test``), or a named set -
    ``{name: orl, train_per_class: 8}`` (the embedded ORL faces) or ``{name: celeba234, split: test,
    test_per_class: 5}`` (one identity split of CelebA234: people kept apart from every other choice)."""
    from segue.data import load_celeba234, load_image_folder, load_orl

    data = cfg["data"]
    size = int(data.get("image_size", 112))
    if data.get("name") == "orl":
        return load_orl(size, int(data.get("train_per_class", 8)), data.get("num_classes"))
    if data.get("name") == "celeba234":
        return load_celeba234(data.get("split", "test"), size, int(data.get("test_per_class", 5)),
                              data.get("num_classes"))
    train = load_image_folder(resolve_data_path(data["train"]), size)
    test = load_image_folder(resolve_data_path(data["test"]), size, classes=train.classes)
    return train, test

def protected_classes(spec: dict, num_classes: int, seed: int = 0) -> list[int]:
    """The people a partial method protects: ``protected_classes: [3]``, or ``protected_fraction: f``
    (a seeded draw of ``round(f K)`` people, at least one)."""
    if "protected_classes" in spec:
        return sorted(int(c) for c in spec["protected_classes"])
    k = max(1, round(float(spec["protected_fraction"]) * num_classes))
    return sorted(torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed))[:k].tolist())

def protected_mask(labels: torch.Tensor, classes: list[int]) -> torch.Tensor:
    return torch.isin(labels, torch.tensor(classes, dtype=labels.dtype))

def partial_groups(cfg: dict, method: str, train, test) -> dict[str, torch.Tensor] | None:
    """Test-set masks ``protected`` / ``others`` for a partial method (None for a full one)."""
    spec = cfg["methods"][method]
    if "partial_of" not in spec:
        return None
    mask = protected_mask(test.labels, protected_classes(spec, len(train.classes), int(cfg.get("method_seed", 0))))
    return {"protected": mask, "others": ~mask}
