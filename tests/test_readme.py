"""The README works as written: its Python example runs, and its attack table is the committed results'."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_python_example_runs_as_written(tmp_path, monkeypatch):
    from segue.data import load_orl

    code = re.search(r"## Python\n\n```python\n(.*?)```", README, re.S).group(1)
    train, _ = load_orl(size=112, train_per_class=2, num_classes=2)
    faces = [(img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for img in train.images]
    Image.fromarray(faces[0]).save(tmp_path / "face.jpg", quality=95)
    (tmp_path / "my_photos").mkdir()
    for i, face in enumerate(faces):
        Image.fromarray(face).save(tmp_path / "my_photos" / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    protected = np.asarray(Image.open(tmp_path / "face_protected.png"), dtype=int)
    original = np.asarray(Image.open(tmp_path / "face.jpg").convert("RGB"), dtype=int)
    assert protected.shape == original.shape and 0 < np.abs(protected - original).max() <= 8
    assert sorted(p.name for p in (tmp_path / "protected").iterdir()) == ["0.png", "1.png", "2.png", "3.png", "report.json"]


def test_attack_table_matches_committed_results():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from readme_table import MARKER, table_lines

    lines = README.split("\n")
    start = lines.index(MARKER) + 1
    assert lines[start:start + len(table_lines())] == table_lines(), "run: python benchmarks/readme_table.py"
