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


FIT_THRESHOLD = 0.95

def group_summary(history: list[dict], group: str, fit_threshold: float = FIT_THRESHOLD,
                  select: str = "others") -> dict:
    """A group's final accuracy, and its accuracy at the epoch an attacker would keep.

    ``at_select``: at the epoch where the ``select`` group (the clean other people, whom the
    attacker can check) scores best - early stopping on a clean validation set, the attacker's
    best choice, so it errs towards the attacker. ``at_fit``: at the first epoch with training
    accuracy >= ``fit_threshold`` (else the last); on small sets that epoch can come before the
    victim recognises anyone. The peak over epochs is kept only for reference: an untrained victim
    that predicts one class for everything scores 100 % on that class.
    """
    key = f"test_acc_{group}"
    fitted = next((r for r in history if r.get("train_acc", 0) >= fit_threshold), history[-1])
    out = {"final": history[-1][key], "at_fit": fitted[key], "fit_epoch": fitted["epoch"],
           "peak": max(r[key] for r in history)}
    other = f"test_acc_{select}"
    if all(other in r for r in history):
        chosen = max(history, key=lambda r: r[other])  # the first of equal best epochs
        out |= {"at_select": chosen[key], "select_epoch": chosen["epoch"]}
    return out
