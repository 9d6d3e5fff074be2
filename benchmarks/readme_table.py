"""Rewrite the attack table on the README's first screen from the committed attack tables.

    python benchmarks/readme_table.py          # reads benchmarks/results/attacks/{wf10,orl,celeba234}/attacks.json

The README's table is a digest of those three files (their cells' mean over seeds, in %); this
keeps it from drifting from what the benchmark measured. "-" = not measured yet.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks/results/attacks"
MARKER = "<!-- attack-table -->"
ROWS = {"clean": "clean photos (reference)", "segue": "`default`", "robust": "`robust`", "robust_rem": "`robust_rem`",
        "random": "uniform noise", "lsp": "LSP", "em_classwise": "class-wise EM"}
# (README column, attack set, column of that set's attacks.json)
COLUMNS = [
    ("from scratch", "wf10", "from scratch (ResNet18)"),
    ("dlib-linear", "wf10", "dlib-linear"),
    ("dlib-knn", "wf10", "dlib-knn"),
    ("FaceNet-linear", "wf10", "facenet-linear"),
    ("FaceNet fine-tuned", "wf10", "finetune (FaceNet)"),
    ("orth. projection", "wf10", "orthogonal projection"),
    ("UEraser-lite", "wf10", "UEraser-lite"),
    ("you alone protected (dlib-linear)", "wf10", "partial, dlib-linear"),
    ("ORL dlib-linear", "orl", "dlib-linear"),
    ("ORL FaceNet-linear", "orl", "facenet-linear"),
    ("CelebA234 dlib-linear", "celeba234", "dlib-linear"),
    ("CelebA234 FaceNet-linear", "celeba234", "facenet-linear"),
]


def table_lines() -> list[str]:
    tables = {s: json.loads((RESULTS / s / "attacks.json").read_text())["table"] for s in {c[1] for c in COLUMNS}}
    lines = ["| training photos | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for row, label in ROWS.items():
        cells = [tables[s].get(row, {}).get(col) for _, s, col in COLUMNS]
        lines.append(f"| {label} | " + " | ".join("-" if c is None else f"{100 * c['mean']:.1f}" for c in cells) + " |")
    return lines


def main() -> int:
    readme = ROOT / "README.md"
    lines = readme.read_text().split("\n")
    start = lines.index(MARKER) + 1
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[start:end] = table_lines()
    readme.write_text("\n".join(lines))
    print(f"README.md: attack table rewritten ({len(ROWS)} rows, {len(COLUMNS)} columns)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
