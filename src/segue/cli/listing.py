"""``segue list`` and ``segue serve``: what is registered, and the local web app."""

from __future__ import annotations

import argparse
import sys

from segue.checkpoint import SHIPPED


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the local web app (needs the ``segue[serve]`` extra)."""
    if args.protection:
        from segue.cli.protect import use_protection

        if not use_protection(args, "serve"):
            return 2
    if (args.cloak or args.strength) and args.weights:
        raise ValueError("--cloak replaces the generator: not with --weights")
    try:
        import uvicorn

        from segue.serve import create_app
    except ImportError:
        raise ValueError("segue serve needs the web extra: pip install 'segue[serve]'") from None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"segue serve: warning: listening on {args.host}: other machines can send photos to it", file=sys.stderr)
    generator = None
    if args.cloak or args.strength:
        from segue.protect.presets import DEFAULT_STRENGTH, create_cloaker

        generator = create_cloaker(args.strength or DEFAULT_STRENGTH)
    print(f"segue serve: open http://{args.host}:{args.port}/ (Ctrl-C to stop)", file=sys.stderr)
    uvicorn.run(create_app(args.weights, generator=generator), host=args.host, port=args.port, log_level="warning")
    return 0


def load_registries() -> dict:
    """Every registry, filled: importing the modules registers their built-ins."""
    import segue.attackers  # noqa: F401
    import segue.cloak  # noqa: F401
    import segue.countermeasures  # noqa: F401
    import segue.extractors
    import segue.faces  # noqa: F401
    import segue.methods  # noqa: F401
    import segue.models  # noqa: F401
    import segue.protect.presets  # noqa: F401
    import segue.protections  # noqa: F401
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
                print(f"  {'':<16} visibility: {tags['visibility'].upper() if tags['visibility'] == 'visible' else tags['visibility']} "
                      f"(HaarPSI {tags['haarpsi_median']}, CIEDE2000 p95 {tags['delta_e_p95_median']}: median per file on the "
                      f"CelebA234 validation people)  [{tags['visibility_results']}]")
                print(f"  {'':<16} survives: {tags['survives']}")
                print(f"  {'':<16} does not survive: {tags['fails']}  [{tags['results']}]")
            if kind == "protections":
                from segue.protections import describe

                for line in describe(name):
                    print(f"  {'':<16} {line}")
            if kind == "strengths":
                tags = reg.tags(name)
                print(f"  {'':<16} {tags['visibility'].upper() if tags['visibility'] == 'visible' else tags['visibility']}: "
                      f"{tags.get('measured', 'not measured')}  [{tags['results']}]")
    return 0

def add_parser(sub) -> None:
    """``segue list`` and ``segue serve``: what is registered, and the local web app subcommands."""
    ls = sub.add_parser("list", help="registered methods, countermeasures, models, attackers, extractors, "
                                     "detectors and shipped weights (with what they survive)")
    ls.add_argument("kind", nargs="?", help="one kind only (e.g. weights, attackers)")
    ls.add_argument("pattern", nargs="?", help="shell glob on the names (e.g. 'dlib-*')")
    ls.set_defaults(func=cmd_list)

    v = sub.add_parser("serve", help="local web app: drop a photo, get it back protected")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--protection", metavar="NAME",
                   help="a protection by name (segue list protections): a shipped generator or a cloak strength")
    v.add_argument("--weights", help=f"generator .safetensors or a shipped name: {', '.join(SHIPPED)}")
    v.add_argument("--cloak", action="store_true",
                   help="the per-photo cloak of segue protect --cloak instead of a generator: against pretrained face "
                        "recognisers, not a network trained from scratch; about a second a face")
    v.add_argument("--strength", choices=["low", "medium", "high", "visible"],
                   help="the cloak's strength (implies --cloak; default low; segue list strengths)")
    v.set_defaults(func=cmd_serve)
