"""``segue benchmark CONFIG`` on the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from segue.benchmark.config import cells_of, load_config
from segue.benchmark.report import write_report
from segue.benchmark.results import read_results
from segue.benchmark.runner import measure_visibility, parse_deadline, run_benchmark, select


def cmd_benchmark(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.output:
        cfg["output"] = args.output
    out = Path(cfg["output"])
    if args.list:
        done = {r["cell"] for r in read_results(out)}
        for cell in select(cells_of(cfg), args.only):
            print(f"{'done   ' if cell.id in done else 'pending'} {cell.id}")
        return 0
    if args.visibility is not None:
        print(json.dumps(measure_visibility(cfg, args.visibility or None, args.device), indent=1))
        return 0
    if args.report_only:
        print(write_report(cfg, out))
        return 0
    summary = run_benchmark(cfg, only=args.only, max_cells=args.max_cells, deadline=parse_deadline(args.deadline),
                            wait_while_exists=args.wait_while_exists, device=args.device)
    print(json.dumps({"output": str(out), **{k: len(v) for k, v in summary.items()}, "ran": summary["ran"]}))
    return 0

def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``segue benchmark`` on the CLI's subparsers."""
    b = subparsers.add_parser("benchmark", help="grid of noise methods x victims x countermeasures x seeds (resumable)")
    b.add_argument("config", help="YAML/JSON grid config (see benchmarks/grids/)")
    b.add_argument("-o", "--output", help="results folder (default: the config's 'output')")
    b.add_argument("--only", action="append", help="run only cells whose id 'method|victim|countermeasure|seed' "
                                                   "matches one of these globs (comma-separated, repeatable)")
    b.add_argument("--max-cells", type=int, help="stop after running this many cells")
    b.add_argument("--deadline", help="HH:MM (UTC, the next such time) or ISO time after which no new cell starts")
    b.add_argument("--wait-while-exists", metavar="FILE", help="before each cell, wait while FILE exists (a CPU lock)")
    b.add_argument("--list", action="store_true", help="list the cells and whether each is done, run nothing")
    b.add_argument("--report-only", action="store_true", help="rewrite table.md and curves.png from results.jsonl")
    b.add_argument("--visibility", nargs="*", metavar="METHOD",
                   help="only record the visibility (HaarPSI, CIEDE2000 p95) of these methods' protected sets "
                        "(default: every non-partial method), generating those not cached; trains no victim")
    b.add_argument("--device", help="override the config's device (auto|cpu|cuda)")
    b.set_defaults(func=cmd_benchmark)
    return b
