"""Unsupervised Segue: pseudo-labels from dlib face embeddings + k-means, then protect and attack.

    python benchmarks/unsupervised.py cluster            # CPU (dlib): clustering scores + pseudo-labels
    python benchmarks/unsupervised.py victims [--device auto] [--seeds 0]   # G on pseudo-labels, victims

``cluster`` embeds WebFace10 (train_clean, test_clean) and ORL (8 train / 2 test per person)
at 112 px with ``--extractor`` (default dlib, with the CNN-detector fallback; ``dlib-hog``
without it), fits k-means on each training set (K = number of people: 10 and 40), scores the
clusters against the true identities (Hungarian accuracy, NMI, ARI; test photos are assigned
to the nearest training centroid) and writes benchmarks/results/unsupervised_clusters.json
(or ``--clusters NAME``) with the pseudo-label of every training photo. ``victims`` trains a
generator per dataset on those pseudo-labels (configs/webface10_112.yaml), protects the
training photos with their pseudo-label codes, trains ResNet18 victims on clean and on
protected photos (``--skip-clean``: protected only) and tests them on clean test photos.
Writes benchmarks/results/unsupervised.{json,md} (or ``--name``). The two stages are split
so the dlib stage can run on a CPU machine and the training on a GPU machine. ``--save-generator DIR``
keeps each generator (``DIR/<data>_pseudo.safetensors``); ``--generator DIR`` loads them instead of
training, so victims can be rerun (other seeds, more epochs) on the same generator.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _common import RESULTS, compare_victims, pct, summary, write_results
from segue.checkpoint import load_generator, save_generator
from segue.data import FaceSet, load_image_folder, load_orl, webface10_root
from segue.protect import protect_images
from segue.runtime import load_config_file, resolve_device
from segue.training import TrainConfig, train_generator

ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = RESULTS / "unsupervised_clusters.json"
SIZE = 112


def generator_file(folder: Path, data_name: str) -> Path:
    """Where ``--save-generator`` writes, and ``--generator`` reads, one dataset's generator."""
    return folder / f"{data_name}_pseudo.safetensors"


def webface10() -> tuple[FaceSet, FaceSet]:
    root = webface10_root()
    train = load_image_folder(root / "train_clean", SIZE)
    return train, load_image_folder(root / "test_clean", SIZE, classes=train.classes)


def datasets(only: list[str] | None = None) -> dict[str, tuple[FaceSet, FaceSet]]:
    """(train, test) per dataset; ``only`` loads just those (a GPU machine may carry only WebFace10)."""
    loaders = {"WebFace10": webface10, "ORL": lambda: load_orl(size=SIZE, train_per_class=8)}
    return {name: load() for name, load in loaders.items() if not only or name in only}


def cluster_stage(extractor: str = "dlib", clusters: Path = CLUSTERS, only: list[str] | None = None) -> None:
    from segue.pseudo_labels import fit_pseudo_labels, score_clusters

    out = {"extractor": extractor, "image_size": SIZE, "datasets": {}}
    for name, (train, test) in datasets(only).items():
        t0 = time.perf_counter()
        k = len(train.classes)
        pseudo, lab_train, info = fit_pseudo_labels(train, k, extractor, seed=0)  # the same path as `segue train`
        lab_test = pseudo.assign(test.images)  # test photos: nearest training centroid, as `segue protect` does
        seconds = time.perf_counter() - t0
        out["datasets"][name] = {
            "k": k, "train_images": len(train), "test_images": len(test),
            "embed_seconds_per_image": round(seconds / (len(train) + len(test)), 4),
            "train": info["clustering"],
            "test": score_clusters(test.labels.numpy(), lab_test.numpy()),
            "train_pseudo_labels": lab_train.tolist(),
        }
        print(name, {k2: v for k2, v in out["datasets"][name].items() if k2 != "train_pseudo_labels"}, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    clusters.write_text(json.dumps(out) + "\n")


def victims_stage(device: torch.device, seeds: list[int], victim_epochs: int, config: str = "configs/webface10_112.yaml",
                  overrides: dict | None = None, only: list[str] | None = None, name: str = "unsupervised",
                  clusters_file: Path = CLUSTERS, clean: bool = True, save_dir: Path | None = None,
                  load_dir: Path | None = None) -> None:
    clusters = json.loads(clusters_file.read_text())
    base = {**load_config_file(ROOT / config), **(overrides or {})}  # base: configs resolved
    payload: dict = {"clusters": {n: {k: v for k, v in d.items() if k != "train_pseudo_labels"}
                                  for n, d in clusters["datasets"].items()},
                     "clusters_file": clusters_file.name, "extractor": clusters["extractor"],
                     "train_config": base, "device": str(device), "datasets": {}}
    md = [f"## Unsupervised Segue ({clusters['extractor']} embeddings + k-means pseudo-labels), {SIZE} px, ResNet18 victim, "
          f"{victim_epochs} epochs, seeds {seeds}", "",
          "| data | K | clustering acc train / test | NMI train / test | clean victim final / peak "
          "| pseudo-protected victim final / peak | chance |", "|---|---|---|---|---|---|---|"]
    for data_name, (train, test) in datasets(only).items():
        info = clusters["datasets"][data_name]
        pseudo = torch.tensor(info["train_pseudo_labels"])
        if load_dir is not None:  # a generator an earlier run saved: rerun victims without retraining
            weights = generator_file(load_dir, data_name)
            generator, prov = load_generator(weights, device)
            if prov.get("clusters_file") != clusters_file.name:
                raise SystemExit(f"{weights} was trained on {prov.get('clusters_file')}, "
                                 f"not {clusters_file.name}")
            history, train_s = prov["history"], prov["train_seconds"]
            payload["train_config"] = prov["train_config"]
            payload["generator_file"] = str(weights)
        else:
            cfg = TrainConfig.from_dict(base)
            t0 = time.perf_counter()
            generator, _, history = train_generator(train, pseudo, info["k"], cfg, device)
            train_s = time.perf_counter() - t0
            if save_dir is not None:  # keep it: victims can be rerun on it with --generator
                save_generator(generator, generator_file(save_dir, data_name),
                               {"clusters_file": clusters_file.name, "train_config": cfg.to_dict(), "history": history,
                                "train_seconds": round(train_s, 1)})
        protected = protect_images(generator, train.images, pseudo)
        runs = compare_victims(train, protected, test, victim_epochs, seeds, device, clean=clean)
        c, p = summary(runs["clean"]) if clean else None, summary(runs["protected"])
        payload["datasets"][data_name] = {"generator_seconds": round(train_s, 1), "generator_history": history,
                                     "clean": c, "protected": p, "runs": runs}
        md.append(f"| {data_name} | {info['k']} | {pct(info['train']['accuracy'])} / {pct(info['test']['accuracy'])} | "
                  f"{info['train']['nmi']:.3f} / {info['test']['nmi']:.3f} | "
                  + (f"{pct(c['final_acc']['mean'])} / {pct(c['peak_acc']['mean'])} | " if c else "not rerun | ") +
                  f"{pct(p['final_acc']['mean'])} / {pct(p['peak_acc']['mean'])} | {pct(1 / info['k'])} |")
    dev = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    trained = (f"loaded from {load_dir} (see generator_file, train_config)" if load_dir is not None
               else f"{config} {overrides or ''} on pseudo-labels ({clusters_file.name}), trained on {dev}")
    md += ["", f"Generator: {trained}; "
           f"victims on {dev}.", ""]
    write_results(name, payload, "\n".join(md))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["cluster", "victims"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=15, help="victim epochs")
    ap.add_argument("--config", default="configs/webface10_112.yaml", help="generator training config")
    ap.add_argument("--g-epochs", type=int, help="override the config's generator epochs")
    ap.add_argument("--max-seconds", type=float, help="generator time budget")
    ap.add_argument("--datasets", nargs="+", choices=["WebFace10", "ORL"], help="default: both")
    ap.add_argument("--name", default="unsupervised", help="results file name under benchmarks/results/")
    ap.add_argument("--extractor", default="dlib", help="cluster stage: face extractor (dlib-hog: without the CNN fallback)")
    ap.add_argument("--clusters", default=CLUSTERS.name, help="pseudo-label file under benchmarks/results/")
    ap.add_argument("--skip-clean", action="store_true", help="victims stage: protected victims only")
    ap.add_argument("--save-generator", type=Path, metavar="DIR", help="victims stage: also write each generator here")
    ap.add_argument("--generator", type=Path, metavar="DIR", help="victims stage: load the generators --save-generator wrote")
    args = ap.parse_args()
    clusters = RESULTS / args.clusters
    if args.stage == "cluster":
        cluster_stage(args.extractor, clusters, args.datasets)
    else:
        overrides = {k: v for k, v in (("epochs", args.g_epochs), ("max_seconds", args.max_seconds)) if v is not None}
        victims_stage(resolve_device(args.device), args.seeds, args.epochs, args.config, overrides, args.datasets,
                      args.name, clusters, clean=not args.skip_clean, save_dir=args.save_generator, load_dir=args.generator)


if __name__ == "__main__":
    main()
