"""Compare training recipes for the generator: train G, protect, train a victim, per recipe.

    python experiments/recipe_sweep.py benchmarks/grids/gpu_sweep.yaml --out experiments/results/recipe_sweep_gpu

A grid file names a base config, the victim protocol and a list of runs (config overrides),
in priority order. Each run trains a generator on WebFace10 ``train_clean`` (``max_seconds``
caps it), protects the training set, trains a ResNet18 victim on it and tests on clean
``test_clean``; with ``transfer_orl`` it also protects ORL (people G never saw) and trains a
victim there. Reference rows (clean data, class-wise and sample-wise uniform noise of the
same eps) calibrate what "protected" looks like. A global ``deadline_s`` skips runs that no
longer fit, so the script fits a fixed device lease. Results are rewritten after every run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch
import yaml

from _common import pct
from segue.checkpoint import save_generator
from segue.data import FaceSet, load_image_folder, load_orl, webface10_root
from segue.protect import protect_images
from segue.runtime import load_config_file, merge_config, resolve_device, versions
from segue.victim import VictimConfig, train_victim

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the schedules compared here are experiments (experiments/training_variants.py)
from experiments.training_variants import VariantTrainConfig, train_variant  # noqa: E402


def uniform_noise(images: torch.Tensor, labels: torch.Tensor | None, eps: float, seed: int) -> torch.Tensor:
    """Uniform noise in [-eps, eps]: one pattern per class (``labels``) or per image (``None``)."""
    g = torch.Generator().manual_seed(seed)
    if labels is None:
        noise = (torch.rand(images.shape, generator=g) * 2 - 1) * eps
    else:
        table = (torch.rand((int(labels.max()) + 1, *images.shape[1:]), generator=g) * 2 - 1) * eps
        noise = table[labels]
    return (images + noise).clamp(0, 1)


def quantize(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round() / 255


class Sweep:
    def __init__(self, grid: dict, out: Path, device: torch.device):
        self.grid, self.out, self.device = grid, out, device
        self.t0 = time.perf_counter()
        self.rows: list[dict] = []
        self.data: dict[int, tuple[FaceSet, FaceSet]] = {}
        self.victim_epochs = int(grid.get("victim_epochs", 15))

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def webface(self, size: int) -> tuple[FaceSet, FaceSet]:
        if size not in self.data:
            root = webface10_root()
            train = load_image_folder(root / "train_clean", size)
            self.data[size] = (train, load_image_folder(root / "test_clean", size, classes=train.classes))
        return self.data[size]

    def victim(self, train: FaceSet, images: torch.Tensor, test: FaceSet) -> dict:
        res = train_victim(train.with_images(images), test, VictimConfig(epochs=self.victim_epochs, seed=0), self.device)
        return {"final": res["final_acc"], "peak": res["peak_acc"], "peak_epoch": res["peak_epoch"],
                "curve": [r["test_acc"] for r in res["history"]]}

    def log(self, row: dict) -> None:
        self.rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        self.write()

    def references(self) -> None:
        size = int(self.grid.get("size", 112))
        train, test = self.webface(size)
        eps = 8 / 255
        for name, images in (("clean", train.images),
                             ("uniform class-wise", quantize(uniform_noise(train.images, train.labels, eps, 0))),
                             ("uniform sample-wise", quantize(uniform_noise(train.images, None, eps, 0)))):
            t = time.perf_counter()
            row = {"name": f"reference: {name}", "size": size, "webface10": self.victim(train, images, test)}
            row["seconds"] = round(time.perf_counter() - t, 1)
            self.log(row)
        for people in self.grid.get("transfer_orl", []):
            otrain, otest = load_orl(size=size, train_per_class=8, num_classes=people)
            self.log({"name": f"reference: clean ORL {people}", "size": size, f"orl{people}": self.victim(otrain, otrain.images, otest)})

    def run(self, spec: dict, base: dict) -> None:
        cfg = VariantTrainConfig.from_dict(merge_config(base, spec.get("overrides", {})))
        size = cfg.image_size
        train, test = self.webface(size)
        t = time.perf_counter()
        generator, _, history = train_variant(train, train.labels, len(train.classes), cfg, self.device)
        train_s = time.perf_counter() - t
        weights = self.out / "weights.tmp" / (re.sub(r"[^A-Za-z0-9]+", "_", spec["name"]).strip("_") + ".safetensors")
        save_generator(generator, weights, {"train_config": cfg.to_dict(), "history": history, "train_seconds": round(train_s, 1)})
        protected = protect_images(generator, train.images, train.labels)
        row = {"name": spec["name"], "size": size, "overrides": spec.get("overrides", {}),
               "epochs_run": len(history), "train_seconds": round(train_s, 1),
               "final_protected_loss": history[-1]["protected_loss"],
               "loss_curve": [h["protected_loss"] for h in history],
               "webface10": self.victim(train, protected, test)}
        if size != int(self.grid.get("size", 112)):  # no reference row at this size: add the clean victim
            row["webface10_clean"] = self.victim(train, train.images, test)
        else:
            for people in self.grid.get("transfer_orl", []):
                otrain, otest = load_orl(size=size, train_per_class=8, num_classes=people)
                row[f"orl{people}"] = self.victim(otrain, protect_images(generator, otrain.images, otrain.labels), otest)
        row["seconds"] = round(time.perf_counter() - t, 1)
        self.log(row)

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        payload = {"grid": self.grid, "device": str(self.device),
                   "device_name": torch.cuda.get_device_name() if self.device.type == "cuda" else "cpu",
                   "elapsed_s": round(self.elapsed(), 1), "versions": versions(), "rows": self.rows}
        (self.out / "recipe_sweep.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
        people = self.grid.get("transfer_orl", [])
        md = [f"## Recipe sweep on {payload['device_name']} (victim: ResNet18, {self.victim_epochs} epochs, seed 0; "
              "accuracy on clean test photos, final / peak)", "",
              "| run | size | G epochs | G seconds | f loss on protected | WebFace10 | "
              + " | ".join(f"ORL {p} people" for p in people) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(people)]
        for r in self.rows:
            cells = [f"{pct(r[k]['final'])} / {pct(r[k]['peak'])}" if k in r else "" for k in ["webface10"] + [f"orl{p}" for p in people]]
            md.append(f"| {r['name']} | {r['size']} | {r.get('epochs_run', '')} | {r.get('train_seconds', '')} | "
                      f"{r.get('final_protected_loss', '')} | " + " | ".join(cells) + " |")
        (self.out / "recipe_sweep.md").write_text("\n".join(md) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("grid")
    ap.add_argument("--out", default=str(ROOT / "experiments/results/recipe_sweep"))
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    grid = yaml.safe_load(Path(args.grid).read_text())
    sweep = Sweep(grid, Path(args.out), resolve_device(args.device))
    base = load_config_file(ROOT / grid["base"])
    sweep.references()
    deadline = float(grid.get("deadline_s", 1e9))
    for spec in grid["runs"]:
        need = float(spec.get("reserve_s", grid.get("reserve_s", 0)))
        if sweep.elapsed() + need > deadline:
            print(f"skip {spec['name']}: {sweep.elapsed():.0f}s elapsed, needs ~{need:.0f}s", file=sys.stderr, flush=True)
            continue
        sweep.run(spec, base)
    print((sweep.out / "recipe_sweep.md").read_text())


if __name__ == "__main__":
    main()
