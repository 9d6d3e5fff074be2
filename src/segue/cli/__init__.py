"""Command line: ``segue train | protect | evaluate | cluster | demo | list | serve | benchmark | rebuild``.

One module per group of subcommands, each with an ``add_parser(sub)``; this one only assembles
them. Every command that trains writes a ``results.json`` with its config, library versions and
metrics, so a number in a table can always be traced to the command that produced it.
"""

from __future__ import annotations

import argparse
import sys
import warnings


def build_parser() -> argparse.ArgumentParser:
    from segue.benchmark import add_parser as add_benchmark
    from segue.cli import evaluate, listing, protect, train
    from segue.recipes import add_parser as add_rebuild

    p = argparse.ArgumentParser(prog="segue", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for add in (train.add_parser, protect.add_parser, evaluate.add_parser, listing.add_parser, add_benchmark,
                add_rebuild):
        add(sub)
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
