"""``segue train`` and ``segue cluster``: a generator from labelled folders or k-means pseudo-labels."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from segue.checkpoint import SHIPPED
from segue.runtime import device_name, load_config_file, resolve_device, versions, write_json_atomic


def train_and_save(train, data, labels, num_classes: int, cfg, device, out: Path, provenance: dict) -> int:
    """Run a training function (``segue.training.train_generator`` or an experiment's), then write
    the weights and ``NAME.results.json`` (provenance, timing, versions, per-epoch history).

    One place for what every training command records, so a shipped weight and an experiment's
    are traced the same way.
    """
    from segue.checkpoint import save_generator

    t0 = time.perf_counter()
    generator, _, history = train(data, labels, num_classes, cfg, device,
                                  on_epoch=lambda r: print(json.dumps(r), file=sys.stderr, flush=True))
    seconds = time.perf_counter() - t0
    provenance = {**provenance, "image_size": cfg.image_size, "seed": cfg.seed, "train_config": cfg.to_dict(),
                  "train_seconds": round(seconds, 1), "epochs_run": len(history), "device": device_name(device),
                  "final_protected_loss": history[-1]["protected_loss"], "versions": versions()}
    save_generator(generator, out, provenance)
    write_json_atomic(out.with_name(out.stem + ".results.json"), {**provenance, "history": history})
    print(f"saved {out} ({seconds:.0f}s, final protected loss {history[-1]['protected_loss']:.4f})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a generator on an ImageFolder tree (side information = the class folders)."""
    from segue.data import load_photos
    from segue.side_info import TrueLabels
    from segue.training import TrainConfig, train_generator

    raw = load_config_file(args.config) if args.config else {}
    for key in ("epochs", "image_size", "seed", "batch_size"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    if args.eps is not None:
        raw.setdefault("generator", {})["eps"] = args.eps / 255
    shape = {"smooth": args.smooth, "low_band": args.low_band,  # store_true flags: only when given
             "low_band_luma": args.low_band_luma or None, "low_band_blocks": args.low_band_blocks or None,
             "low_band_eps": None if args.low_band_eps is None else args.low_band_eps / 255,
             "psnr_floor": args.psnr_floor}
    raw.setdefault("generator", {}).update({k: v for k, v in shape.items() if v is not None})
    if args.max_seconds is not None:
        raw["max_seconds"] = args.max_seconds
    if args.init is not None:
        raw["init_generator"] = args.init
    cfg = TrainConfig.from_dict(raw)
    device = resolve_device(args.device)
    data = load_photos(args.data, cfg.image_size)
    out = Path(args.output)
    extra: dict = {}
    if args.side_info == "pseudo":
        from segue.pseudo_labels import centroids_path, fit_pseudo_labels

        side, labels, extra = fit_pseudo_labels(data, args.k, args.extractor, cfg.seed)
        extra["centroids"] = side.save(centroids_path(out)).name
    else:
        if not data.classes:
            raise ValueError(f"{args.data} has no class subfolders: supervised training needs them (or --side-info pseudo --k K)")
        side = TrueLabels(data.classes)
        labels = side.assign(data.images, data.labels)
    print(f"segue train: {len(data)} images, {side.num_classes} side labels ({side.name}), {cfg.image_size}px, "
          f"device {device}", file=sys.stderr)
    named = ":" in str(args.data)  # a shared set's name (celeba234:train), not a folder
    provenance = {"train_data": args.data if named else str(Path(args.data).resolve()), "classes": data.classes,
                  "side_info": side.name, **extra}
    return train_and_save(train_generator, data, labels, side.num_classes, cfg, device, out, provenance)


def cmd_cluster(args: argparse.Namespace) -> int:
    """Embed every photo of DATA, fit k-means, save the centroids, score against class folders."""
    from segue.data import load_photos
    from segue.pseudo_labels import fit_pseudo_labels

    data = load_photos(args.data, args.image_size)
    pseudo, _, info = fit_pseudo_labels(data, args.k, args.extractor, args.seed)
    pseudo.save(args.output)
    scores = info.pop("clustering", {"accuracy": None, "nmi": None, "ari": None})
    print(json.dumps({**scores, **info, "images": len(data), "centroids": str(args.output)}))
    return 0

def add_parser(sub) -> None:
    """``segue train`` and ``segue cluster``: a generator from labelled folders or k-means pseudo-labels subcommands."""
    t = sub.add_parser("train", help="train a generator on an ImageFolder tree (or unlabeled photos with --side-info pseudo)")
    t.add_argument("data", help="folder with one subfolder per identity (or a flat folder with --side-info pseudo)")
    t.add_argument("-o", "--output", required=True, help="weights file to write (.safetensors)")
    t.add_argument("--config", help="YAML/JSON with TrainConfig fields; flags override it")
    t.add_argument("--epochs", type=int)
    t.add_argument("--image-size", dest="image_size", type=int)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--eps", type=float, help="L-inf budget in /255 units (default 8)")
    t.add_argument("--smooth", type=int, help="low-frequency delta: block size of its low-pass (default 1 = off)")
    t.add_argument("--low-band", dest="low_band", type=int,
                   help="two-band delta: add a part low-passed over N x N blocks (0 = off)")
    t.add_argument("--low-band-luma", dest="low_band_luma", action="store_true",
                   help="make that low-passed part brightness-only")
    t.add_argument("--low-band-blocks", dest="low_band_blocks", action="store_true",
                   help="make that part constant over grid-aligned N x N blocks (8: JPEG's blocks)")
    t.add_argument("--low-band-eps", dest="low_band_eps", type=float,
                   help="that part's own L-inf share of --eps, in /255 units (default: one shared budget)")
    t.add_argument("--psnr-floor", dest="psnr_floor", type=float,
                   help="scale each image's delta down to at least this PSNR in dB (default 0 = L-inf only)")
    t.add_argument("--max-seconds", dest="max_seconds", type=float, help="time budget: stop after the epoch that crosses it")
    t.add_argument("--init", help=f"fine-tune: start from these generator weights (a path, or a shipped name: {', '.join(SHIPPED)})")
    t.add_argument("--seed", type=int)
    t.add_argument("--side-info", choices=["labels", "pseudo"], default="labels",
                   help="labels: class subfolders (default); pseudo: k-means clusters of face embeddings")
    t.add_argument("--k", type=int, help="number of people (clusters) for --side-info pseudo")
    t.add_argument("--extractor", default="dlib", help="face extractor for pseudo-labels")
    t.add_argument("--device", default="auto")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("cluster", help="k-means pseudo-labels of face embeddings (scored if DATA has class folders)")
    c.add_argument("data", help="ImageFolder tree or flat folder of photos")
    c.add_argument("--k", type=int, required=True, help="number of people")
    c.add_argument("--extractor", default="dlib")
    c.add_argument("--image-size", type=int, default=112, help="size photos are embedded at (as G sees them)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("-o", "--output", default="centroids.safetensors")
    c.set_defaults(func=cmd_cluster)
