"""Command line: ``segue train | protect | evaluate | cluster | demo | serve``.

Every command that trains writes a ``results.json`` with its config, library versions and
metrics, so a number in a table can always be traced to the command that produced it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path


from segue.checkpoint import SHIPPED
from segue.runtime import device_name as _device_name
from segue.runtime import load_config_file, resolve_device, versions
from segue.runtime import write_json_atomic as _write_json


def _load_config(path: str | None) -> dict:
    return load_config_file(path) if path else {}


def cmd_train(args: argparse.Namespace) -> int:
    """Train a generator on an ImageFolder tree (side information = the class folders)."""
    from segue.checkpoint import save_generator
    from segue.data import load_photos
    from segue.side_info import TrueLabels
    from segue.training import TrainConfig, train_generator

    raw = _load_config(args.config)
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
    t0 = time.perf_counter()
    generator, _, history = train_generator(
        data, labels, side.num_classes, cfg, device,
        on_epoch=lambda r: print(json.dumps(r), file=sys.stderr, flush=True),
    )
    seconds = time.perf_counter() - t0
    provenance = {
        "train_data": str(Path(args.data).resolve()), "classes": data.classes, "side_info": side.name, **extra,
        "image_size": cfg.image_size, "seed": cfg.seed, "train_config": cfg.to_dict(),
        "train_seconds": round(seconds, 1), "epochs_run": len(history), "device": _device_name(device),
        "final_protected_loss": history[-1]["protected_loss"], "versions": versions(),
    }
    save_generator(generator, out, provenance)
    _write_json(out.with_name(out.stem + ".results.json"), {**provenance, "history": history})
    print(f"saved {out} ({seconds:.0f}s, final protected loss {history[-1]['protected_loss']:.4f})")
    return 0


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


def cmd_protect(args: argparse.Namespace) -> int:
    """Protect a folder with a trained (or the shipped) generator.

    Exit status 1 whenever a file could not be protected (its error is on stderr and in
    report.json; the other files are still written), 130 on Ctrl-C, 2 on a usage error.
    """
    from segue.protect import ProtectOptions

    opts = ProtectOptions(label=args.label, output_format=args.format, batch_size=args.batch_size,
                          workers=args.workers, overwrite=args.overwrite, quality=args.quality,
                          work_size=0 if args.native_size else None,
                          region="full" if args.full_image else args.region, crop_max_side=args.crop_max_side,
                          face_margin=args.face_margin, keep_exif=args.keep_exif, max_pixels=args.max_pixels,
                          ssim_every=args.ssim_every, png_level=args.png_level)
    device = resolve_device(args.device)
    try:
        if args.engine == "ray":
            from segue.ray_engine import protect_folder_ray

            report = protect_folder_ray(args.weights, args.input, args.output, opts, device=str(device),
                                        num_cpus=args.ray_cpus, progress=not args.quiet)
        else:
            from segue.checkpoint import load_protector
            from segue.protect import protect_folder, settle_process

            generator, opts.side_info = load_protector(args.weights, device)
            settle_process()
            report = protect_folder(generator, args.input, args.output, opts, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"segue protect: interrupted; finished files are kept, rerun to complete -> "
              f"{Path(args.output) / 'report.json'}", file=sys.stderr)
        return 130
    s = report["summary"]
    print(f"protected {s['protected']} images ({s['no_face']} without a face copied unchanged, {s['errors']} errors, "
          f"{len(report['skipped_existing'])} already done) PSNR {s['psnr_mean']} dB, "
          f"SSIM {s['ssim_mean']} (of {s['ssim_photos']}), "
          f"max L-inf {s['linf_max']}/255, {s['images_per_second']} img/s -> {Path(args.output) / 'report.json'}")
    return 1 if s["errors"] else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Fit an attacker on TRAIN (protected or clean) and report its clean-test accuracy (per epoch)."""
    from segue.attackers import create_attacker
    from segue.countermeasures import apply_data, batch_transforms, build_countermeasures
    from segue.data import load_image_folder

    device = resolve_device(args.device)
    if args.attacker == "scratch":
        attacker = create_attacker("scratch", model=args.model, epochs=args.epochs, batch_size=args.batch_size,
                                   seed=args.seed, device=device)
    else:
        attacker = create_attacker(args.attacker, seed=args.seed, device=device)
    cms = build_countermeasures(args.countermeasure or [])
    train = load_image_folder(args.train, args.image_size)
    test = load_image_folder(args.test, args.image_size, classes=train.classes)
    train = train.with_images(apply_data(cms, train.images, train.labels))
    result = attacker.run(train, test, on_epoch=lambda r: print(json.dumps(r), file=sys.stderr, flush=True),
                          batch_transforms=batch_transforms(cms) or None)
    out = {"train": str(Path(args.train).resolve()), "test": str(Path(args.test).resolve()),
           "image_size": args.image_size, "attacker": attacker.config(), "countermeasures": [c.describe() for c in cms],
           "versions": versions(), **result}
    _write_json(Path(args.output), out)
    print(f"{args.attacker}: final {result['final_acc']:.3f}, peak {result['peak_acc']:.3f} "
          f"(epoch {result['peak_epoch']}), chance {result['chance']:.3f} -> {args.output}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from segue.demo import run_demo

    run_demo(out_dir=Path(args.output), device=resolve_device(args.device), quick=args.quick)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the local web app (needs the ``segue[serve]`` extra)."""
    try:
        import uvicorn

        from segue.serve import create_app
    except ImportError:
        raise ValueError("segue serve needs the web extra: pip install 'segue[serve]'") from None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"segue serve: warning: listening on {args.host}: other machines can send photos to it", file=sys.stderr)
    print(f"segue serve: open http://{args.host}:{args.port}/ (Ctrl-C to stop)", file=sys.stderr)
    uvicorn.run(create_app(args.weights), host=args.host, port=args.port, log_level="warning")
    return 0


def load_registries() -> dict:
    """Every registry, filled: importing the modules registers their built-ins."""
    import segue.attackers  # noqa: F401
    import segue.countermeasures  # noqa: F401
    import segue.extractors
    import segue.faces  # noqa: F401
    import segue.methods  # noqa: F401
    import segue.models  # noqa: F401
    import segue.shipped  # noqa: F401
    from segue.registry import REGISTRIES

    segue.extractors.list_extractors()  # registers the FaceNet extractors where OpenCV imports
    return dict(sorted(REGISTRIES.items()))


def cmd_list(args: argparse.Namespace) -> int:
    """One line per registered entry: name and the first line of its docstring (weights: their tags)."""
    registries = load_registries()
    kinds = [args.kind] if args.kind else list(registries)
    if args.kind and args.kind not in registries:
        raise ValueError(f"unknown kind {args.kind!r}; known: {', '.join(registries)}")
    for kind in kinds:
        reg = registries[kind]
        print(f"{kind}:")
        for name in reg.list(args.pattern):
            print(f"  {name:<16} {reg.summary(name)}")
            if kind == "weights":
                tags = reg.tags(name)
                print(f"  {'':<16} L-inf {tags['linf_255']}/255, PSNR {tags['psnr_db']} dB, SSIM {tags['ssim']}; "
                      f"from-scratch victim {tags['from_scratch_peak_pct']} % peak")
                print(f"  {'':<16} survives: {tags['survives']}")
                print(f"  {'':<16} does not survive: {tags['fails']}  [{tags['results']}]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="segue", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

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

    r = sub.add_parser("protect", help="protect every photo under IN into OUT")
    r.add_argument("input", help="input folder (never modified): each subfolder is one person, the files directly "
                   "in it one more (a flat folder is one person, label 0)")
    r.add_argument("-o", "--output", required=True, help="output folder (mirrors IN)")
    r.add_argument("--weights", help="generator .safetensors, or a shipped one: 'default' (the paper's recipe), 'robust' "
                   "(survives JPEG/resizing/blur) or 'robust_rem' (also adversarial training and JPEG q10, "
                   "L-inf up to 18/255 at PSNR >= 30.2 dB); see README")
    r.add_argument("--label", type=int, help="side label for every photo (instead of one per subfolder)")
    r.add_argument("--format", choices=["keep", "png"], default="keep",
                   help="keep each file's format (default; JPEG and lossy WebP written at --quality, which weakens "
                        "protection; lossless inputs stay lossless) or png (lossless)")
    r.add_argument("--quality", type=int, default=95,
                   help="JPEG/lossy-WebP quality (default 95); an output moved beyond eps + 32/255 (at 95; wider "
                        "below) is refused as an error")
    r.add_argument("--region", choices=["auto", "faces", "full"], default="auto",
                   help="auto (default): photos up to --crop-max-side px are face crops, larger ones are searched "
                        "for faces; faces: always detect; full: perturb the whole frame")
    r.add_argument("--full-image", action="store_true", help="same as --region full")
    r.add_argument("--crop-max-side", type=int, default=512, help="largest photo --region auto treats as a face crop")
    r.add_argument("--face-margin", type=float, default=0.5, help="margin around a detected face, in face widths")
    r.add_argument("--keep-exif", action="store_true",
                   help="keep EXIF (camera, GPS, dates); by default all EXIF is dropped")
    r.add_argument("--max-pixels", type=int, default=100_000_000, help="refuse larger images (decompression bombs)")
    r.add_argument("--native-size", action="store_true", help="run G at each region's own size instead of its training size")
    r.add_argument("--ssim-every", type=int, default=64, metavar="N",
                   help="report.json: SSIM of every Nth photo (default 64: photos 1, 65, 129, ... of IN in natural "
                        "order; 1: every photo, 0: none; null in the other rows, the summary's ssim_mean is over its "
                        "ssim_photos); PSNR and L-inf are measured on every output, and any output beyond eps is "
                        "refused")
    r.add_argument("--png-level", type=int, default=1, choices=range(10), metavar="0-9",
                   help="zlib level of PNG outputs (default 1: fast; 9: smallest files; lossless at every level)")
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--workers", type=int, default=2,
                   help="lanes: threads that each take one batch from decoding to writing (default 2)")
    r.add_argument("--overwrite", action="store_true",
                   help="redo files that already exist in OUT (by default they are kept: outputs are written "
                        "atomically, so an existing file is complete)")
    r.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local threads (default) or Ray Data for bulk runs (pip install 'segue[ray]')")
    r.add_argument("--ray-cpus", type=int, help="CPUs Ray may use (default: all); one is left for reading")
    r.add_argument("--device", default="auto")
    r.add_argument("-q", "--quiet", action="store_true")
    r.set_defaults(func=cmd_protect)

    e = sub.add_parser("evaluate", help="fit an attacker (default: a victim trained from scratch) on TRAIN, "
                                        "test on clean TEST")
    e.add_argument("--train", required=True)
    e.add_argument("--test", required=True)
    e.add_argument("-o", "--output", default="results.json")
    e.add_argument("--attacker", default="scratch",
                   help="scratch (a --model trained from scratch) or a pretrained-embedding / fine-tuning attacker "
                        "(segue list attackers)")
    e.add_argument("--countermeasure", action="append", metavar="NAME",
                   help="applied before/while fitting, repeatable (segue list countermeasures), e.g. projection")
    e.add_argument("--model", default="resnet18")
    e.add_argument("--epochs", type=int, default=15)
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--image-size", type=int, default=112)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("demo", help="the whole story on the embedded ORL faces (no network, < 10 min on CPU)")
    d.add_argument("-o", "--output", default="segue-demo")
    d.add_argument("--quick", action="store_true", help="a 1-minute smoke version (fewer epochs)")
    d.add_argument("--device", default="auto")
    d.set_defaults(func=cmd_demo)
    ls = sub.add_parser("list", help="registered methods, countermeasures, models, attackers, extractors, "
                                     "detectors and shipped weights (with what they survive)")
    ls.add_argument("kind", nargs="?", help="one kind only (e.g. weights, attackers)")
    ls.add_argument("pattern", nargs="?", help="shell glob on the names (e.g. 'dlib-*')")
    ls.set_defaults(func=cmd_list)

    v = sub.add_parser("serve", help="local web app: drop a photo, get it back protected")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--weights", help=f"generator .safetensors or a shipped name: {', '.join(SHIPPED)}")
    v.set_defaults(func=cmd_serve)
    from segue.benchmark import add_parser as add_benchmark_parser
    add_benchmark_parser(sub)
    from segue.recipes import add_parser as add_rebuild_parser
    add_rebuild_parser(sub)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one plain line, not Python's source-location format."""
    print(f"segue: warning: {message}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, KeyError, ImportError) as exc:
        print(f"segue {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
