"""Helpers shared by the benchmark scripts: victim comparisons and result files."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

from segue.data import FaceSet
from segue.runtime import versions
from segue.victim import VictimConfig, train_victim

RESULTS = Path(__file__).parent / "results"


def compare_victims(train: FaceSet, protected: torch.Tensor, test: FaceSet, epochs: int, seeds: list[int],
                    device: torch.device, clean: bool = True) -> dict:
    """Clean-trained vs protected-trained victims, one per seed, tested on clean photos (``clean=False``: protected only)."""
    out: dict = {"clean": [], "protected": []}
    for seed in seeds:
        for name, images in (("clean", train.images), ("protected", protected))[0 if clean else 1:]:
            res = train_victim(train.with_images(images), test, VictimConfig(epochs=epochs, seed=seed), device)
            print(f"  seed {seed} {name}: final {res['final_acc']:.3f} peak {res['peak_acc']:.3f}", file=sys.stderr, flush=True)
            out[name].append({"seed": seed, **res})
    return out


def summary(runs: list[dict]) -> dict:
    """Mean (and spread) of final and peak accuracy over seeds."""
    def stats(key: str) -> dict:
        vals = [r[key] for r in runs]
        return {"mean": round(statistics.mean(vals), 4), "min": min(vals), "max": max(vals)}
    return {"final_acc": stats("final_acc"), "peak_acc": stats("peak_acc"), "seeds": [r["seed"] for r in runs]}


def write_results(name: str, payload: dict, markdown: str) -> None:
    """benchmarks/results/NAME.json (+ versions) and NAME.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "versions": versions()}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown)
    print(markdown)


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"
