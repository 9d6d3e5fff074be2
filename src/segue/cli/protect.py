"""``segue protect``: every photo under IN, protected, into OUT."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segue.runtime import resolve_device


def use_protection(args: argparse.Namespace, command: str = "protect") -> bool:
    """Turn ``--protection NAME`` into ``--weights NAME`` or ``--strength NAME`` (one registry,
    :mod:`segue.protections`); False (and a one-line error) if it clashes or is unknown."""
    from segue.protections import PROTECTIONS

    if args.weights or args.strength or args.cloak:
        print(f"segue {command}: --protection names the protection: not with --weights, --strength or --cloak",
              file=sys.stderr)
        return False
    if args.protection not in PROTECTIONS:
        print(f"segue {command}: unknown protection {args.protection!r}; known: {', '.join(PROTECTIONS.list())}",
              file=sys.stderr)
        return False
    if PROTECTIONS.tags(args.protection)["kind"] == "cloak":
        args.strength = args.protection
    else:
        args.weights = args.protection
    return True


def cmd_protect(args: argparse.Namespace) -> int:
    """Protect a folder with a trained (or the shipped) generator.

    Exit status 1 whenever a file could not be protected (its error is on stderr and in
    report.json; the other files are still written), 130 on Ctrl-C, 2 on a usage error.
    """
    from segue.protect import ProtectOptions

    if args.protection and not use_protection(args):
        return 2
    opts = ProtectOptions(label=args.label, output_format=args.format, batch_size=args.batch_size,
                          workers=args.workers, overwrite=args.overwrite, quality=args.quality,
                          work_size=0 if args.native_size else None,
                          region="full" if args.full_image else args.region, crop_max_side=args.crop_max_side,
                          face_margin=args.face_margin, keep_exif=args.keep_exif, max_pixels=args.max_pixels,
                          ssim_every=args.ssim_every, png_level=args.png_level,
                          visibility_every=args.visibility_every)
    if args.visibility_budget:
        from segue.visibility import BUDGETS

        opts.visibility_budget = BUDGETS[args.visibility_budget]
    device = resolve_device(args.device)
    args.cloak = args.cloak or args.strength is not None
    if args.cloak and (args.weights or args.engine == "ray" or args.native_size):
        print("segue protect: --cloak replaces the generator: not with --weights, --engine ray or --native-size "
              "(at a face's own size the cloak's change is visible: docs/attacks.md)", file=sys.stderr)
        return 2
    try:
        if args.engine == "ray":
            from segue.ray_engine import protect_folder_ray

            report = protect_folder_ray(args.weights, args.input, args.output, opts, device=str(device),
                                        num_cpus=args.ray_cpus, progress=not args.quiet)
        else:
            from segue.checkpoint import load_protector
            from segue.protect import protect_folder, settle_process

            if args.cloak:
                from segue.protect.presets import DEFAULT_STRENGTH, create_cloaker  # only here: 2.5 s of imports

                opts.workers = 1  # one lane: the PGD's random input diversity is then the same on every run
                generator = create_cloaker(args.strength or DEFAULT_STRENGTH, device)
            else:
                generator, opts.side_info = load_protector(args.weights, device)
            settle_process()
            from segue.visibility import VISIBLE

            if getattr(generator, "visibility_budget", None) is VISIBLE and args.visibility_budget != "generator":
                print("segue protect: warning: this protection is VISIBLE (more than the default generator; "
                      "docs/gallery.md): held to the 'visible' budget", file=sys.stderr)
            report = protect_folder(generator, args.input, args.output, opts, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"segue protect: interrupted; finished files are kept, rerun to complete -> "
              f"{Path(args.output) / 'report.json'}", file=sys.stderr)
        return 130
    s = report["summary"]
    print(f"protected {s['protected']} images ({s['no_face']} without a face copied unchanged, {s['errors']} errors, "
          f"{len(report['skipped_existing'])} already done) PSNR {s['psnr_mean']} dB, "
          f"SSIM {s['ssim_mean']} (of {s['ssim_photos']}), HaarPSI {s['haarpsi_median']} / CIEDE2000 p95 "
          f"{s['delta_e_p95_median']} (median of {s['visibility_photos']}), "
          f"max L-inf {s['linf_max']}/255, {s['images_per_second']} img/s -> {Path(args.output) / 'report.json'}")
    return 1 if s["errors"] else 0

def add_parser(sub) -> None:
    """``segue protect``: every photo under IN, protected, into OUT subcommands."""
    r = sub.add_parser("protect", help="protect every photo under IN into OUT")
    r.add_argument("input", help="input folder (never modified): each subfolder is one person, the files directly "
                   "in it one more (a flat folder is one person, label 0)")
    r.add_argument("-o", "--output", required=True, help="output folder (mirrors IN)")
    r.add_argument("--protection", metavar="NAME",
                   help="a protection by name (segue list protections: what each stops, how visible it is, what it "
                        "costs): a shipped generator (default, robust, robust_rem, ...) or a cloak strength (low, "
                        "medium, high, visible); the same as --weights NAME or --strength NAME")
    r.add_argument("--weights", help="generator .safetensors, or a shipped one: 'default' (the paper's recipe), 'robust' "
                   "(survives JPEG/resizing/blur) or 'robust_rem' (also adversarial training and JPEG q10, "
                   "L-inf up to 18/255 at PSNR >= 30.2 dB); see README")
    r.add_argument("--cloak", action="store_true",
                   help="instead of a generator, cloak each face against pretrained face recognisers (an attacker "
                        "who embeds your photos with dlib or FaceNet and fits a classifier): per-photo PGD on FaceNet, "
                        "~1.2 s a face on 2 CPU cores, at --strength (default low: within the generator's visibility "
                        "numbers, with faint shading at 2x on some faces, and weak); it does NOT stop a network trained "
                        "from scratch on the photos. Needs the attacks extra")
    r.add_argument("--strength", choices=["low", "medium", "high", "visible"],
                   help="the cloak's strength (implies --cloak; default low): low is no more visible than the default "
                        "generator by its numbers, shows faint shading at 2x on some faces, and is weak against dlib; "
                        "medium and high trade visibility for protection; visible is "
                        "the strongest, with swirls anyone sees. Each one's numbers: segue list strengths")
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
    r.add_argument("--visibility-every", type=int, metavar="N",
                   help="report.json: visibility (HaarPSI, CIEDE2000) of every Nth photo, and any such output beyond "
                        "the protection's visibility budget refused (default: every photo with --cloak, every 16th "
                        "with a generator; 0: none)")
    r.add_argument("--visibility-budget", choices=["generator", "visible"],
                   help="the budget each measured output is held to (default: the protection's own: 'generator' - "
                        "no more visible than the default generator - for default and your own weights, 'visible' "
                        "for --cloak, robust and robust_rem)")
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
