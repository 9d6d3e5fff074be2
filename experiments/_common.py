"""The benchmarks' helpers for the pilots run from this folder; their results go to experiments/results/."""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("benchmarks_common", Path(__file__).resolve().parent.parent / "benchmarks" / "_common.py")
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)
compare_victims, pct, summary = _bench.compare_victims, _bench.pct, _bench.summary
RESULTS = Path(__file__).parent / "results"


def write_results(name: str, payload: dict, markdown: str) -> None:
    """experiments/results/NAME.json (+ versions) and NAME.md."""
    _bench.RESULTS = RESULTS
    _bench.write_results(name, payload, markdown)
