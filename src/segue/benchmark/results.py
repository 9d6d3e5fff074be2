"""The results files of a grid: ``results.jsonl`` (one finished cell a line) and ``methods.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path


def read_results(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash: that cell simply reruns
                continue
    return rows

def append_result(out: Path, row: dict) -> None:
    with open(out / "results.jsonl", "a") as fh:
        fh.write(json.dumps(row, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())

def read_methods(out: Path) -> dict:
    path = out / "methods.json"
    return json.loads(path.read_text()) if path.exists() else {}
