"""Generator weights as ``.safetensors`` (never pickle) with their provenance in the header.

The safetensors metadata holds two JSON strings: ``generator`` (the architecture config
needed to rebuild the model) and ``provenance`` (image size, training data, seed, metrics...).
A sidecar ``.json`` with the same content is written for humans.
"""

from __future__ import annotations

import json
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from segue.generator import Generator, GeneratorConfig

from segue.shipped import SHIPPED, WEIGHTS  # noqa: E402  (name -> file of every shipped generator)

DEFAULT_WEIGHTS = SHIPPED["default"]

# Config fields that left the package for experiments/ (they lost; docs/experiments/), each with the
# value every shipped generator had. An old file that has one at that value loads (it is dropped);
# any other value is an experiment the package cannot rebuild.
REMOVED_GENERATOR_FIELDS: dict[str, Any] = {
    "norm": "group",  # BatchNorm ("batch") did not converge
    "luma": False,  # brightness-only single band: experiments/configs/robust_luma_112.yaml
    "code_blocks_eps": 0.0,  # fixed side-label 8x8 pattern: segue_2band_fdist_cb3/_cb5p in benchmarks/results/robust_gpu
    "code_blocks": 8,
}
GENERATOR_VARIANTS = "experiments/generator_variants.py (VariantGenerator, load_variant)"


def drop_removed_fields(config: dict[str, Any], removed: dict[str, Any], what: str, where: str) -> dict[str, Any]:
    """``config`` without the ``removed`` fields that are at their old default; any other value of
    one is a ``ValueError`` that names the experiments module (``where``) that still has it."""
    out = dict(config)
    for key, default in removed.items():
        if key in out:
            value = out.pop(key)
            if value != default:
                raise ValueError(f"{what} has {key}={value!r}: that option is no longer in the segue package "
                                 f"(every shipped generator has {key}={default!r}); it is an experiment, "
                                 f"use {where}")
    return out


def migrate_generator_config(config: dict[str, Any], what: str = "generator config") -> dict[str, Any]:
    """An old generator config as today's ``GeneratorConfig`` fields (see ``REMOVED_GENERATOR_FIELDS``)."""
    out = drop_removed_fields(config, REMOVED_GENERATOR_FIELDS, what, GENERATOR_VARIANTS)
    unknown = sorted(set(out) - {f.name for f in fields(GeneratorConfig)})
    if unknown:
        raise ValueError(f"{what} has unknown fields {unknown}")
    return out


def save_generator(generator: Generator, path: str | Path, provenance: dict[str, Any] | None = None) -> Path:
    """Write weights + config + provenance; returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    provenance = provenance or {}
    meta = {"generator": json.dumps(generator.config.to_dict()), "provenance": json.dumps(provenance, default=str)}
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    sidecar = {"generator": generator.config.to_dict(), "provenance": provenance}
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, default=str) + "\n")
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Config and provenance of a weights file, without loading the tensors."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return {"generator": json.loads(meta.get("generator", "{}")), "provenance": json.loads(meta.get("provenance", "{}"))}


def default_weights_path(name: str = "default") -> Path:
    """A generator shipped inside the package (see ``SHIPPED``)."""
    if name not in SHIPPED:
        raise KeyError(f"no shipped generator {name!r}; shipped: {', '.join(SHIPPED)}")
    return Path(str(resources.files("segue") / "weights" / SHIPPED[name]))


def weights_path(weights: str | Path | None) -> Path:
    """``None``/``"shipped"`` -> the default generator, a name in ``SHIPPED`` -> that one, else a path."""
    if weights is None or str(weights) == "shipped":
        return default_weights_path()
    if str(weights) in SHIPPED:
        return default_weights_path(str(weights))
    return Path(weights)


def read_weights(path: str | Path | None, overrides: dict[str, Any] | None = None) -> tuple[Path, dict, dict]:
    """A weights file's path, generator config (``overrides`` applied) and provenance (recording them)."""
    path = weights_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"generator weights not found: {path}")
    meta = read_metadata(path)
    if overrides:
        meta["provenance"] = {**meta["provenance"], "config_overrides": dict(overrides)}
    return path, {**meta["generator"], **(overrides or {})}, meta["provenance"]


def load_generator(path: str | Path | None = None, device: str | torch.device = "cpu",
                   overrides: dict[str, Any] | None = None) -> tuple[Generator, dict[str, Any]]:
    """Rebuild a generator from a ``.safetensors`` file or a shipped name (default: the default one), in eval mode.

    ``overrides`` replace config fields that add no weights (e.g. ``psnr_floor``), so a benchmark can
    try them on trained weights without writing a new file; the provenance records them. Files written
    before some options moved to ``experiments/`` load as long as those are at their shipped value
    (:func:`migrate_generator_config`).
    """
    name = str(path) if path is not None and str(path) in SHIPPED else None
    path, config, provenance = read_weights(path, overrides)
    generator = Generator(GeneratorConfig(**migrate_generator_config(config, f"{path}")))
    generator.load_state_dict(load_file(str(path), device="cpu"))
    if name and WEIGHTS.tags(name).get("visibility") == "visible":  # its card says so: held to VISIBLE, not to the generator bar
        from segue.visibility import VISIBLE

        generator.visibility_budget = VISIBLE
    return generator.to(device).eval(), provenance


def load_protector(path: str | Path | None = None, device: str | torch.device = "cpu"):
    """Generator plus the side information protect needs: for a pseudo-label generator, the
    k-means centroids saved next to it (labels then come from each face, not from folders)."""
    generator, provenance = load_generator(path, device)
    if provenance.get("side_info") != "pseudo":
        return generator, None
    from segue.pseudo_labels import PseudoLabels, centroids_path

    return generator, PseudoLabels.load(centroids_path(weights_path(path)))
