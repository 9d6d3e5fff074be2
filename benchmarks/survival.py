"""How much of a perturbation each countermeasure passes on - seconds, no victim training.

    python benchmarks/survival.py [--weights NAME=PATH ...] [--n 200]

For WebFace10 training photos at 112 px, delta = protected - clean (8-bit), and for each data
countermeasure of the robustness grid (``grids/robust_gpu.yaml``), left = cm(x + delta) - cm(x): what a victim trained on
the countermeasure's output still sees of delta. Reported: correlation of left with delta (1 =
passed on unchanged; for grayscale, delta's own grey part is the reference). A victim can only
learn the shortcut from what is left, so this explains the robustness table's rows without its
cost: it is not a substitute for it (a shortcut needs to be learnable, not only present).

Besides the generators, four synthetic patterns of the same budget (+-8/255 at random per
block/pixel) show which kind of delta each countermeasure keeps: brightness-only vs colour,
constant over JPEG's 8x8 blocks vs smooth vs per pixel. Two more columns: the same correlation
through kornia's differentiable JPEG q10 (what the distortion layer trains through: is it leakier
than a real encoder?), and the rms of delta's part that is brightness-only and constant over 8x8
blocks (JPEG's DC, what survives q10 best), in /255.
Writes benchmarks/results/survival.{json,md}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from kornia.enhance import jpeg_codec_differentiable

from _common import write_results
from segue.benchmark import load_config
from segue.checkpoint import load_generator
from segue.countermeasures import apply_data, build_countermeasures, to_8bit
from segue.data import load_image_folder, webface10_root

EPS = 8 / 255
GRID = Path(__file__).parent / "grids" / "robust_gpu.yaml"  # the robustness table's countermeasures


def data_countermeasures(grid: Path = GRID) -> dict[str, list]:
    """The grid's countermeasures that change the photos (not ``none``, not adversarial training)."""
    specs = load_config(grid)["countermeasures"]
    return {name: s for name, s in specs.items()
            if s and all(cm.kind == "data" for cm in build_countermeasures(s))}


def pattern(n: int, size: int, block: int, luma: bool, smooth: bool, gen: torch.Generator) -> torch.Tensor:
    """+-EPS at random per block (per pixel for block 1), constant blocks or a smooth upsample."""
    signs = torch.randint(0, 2, (n, 1 if luma else 3, size // block, size // block), generator=gen) * 2.0 - 1
    mode = {"mode": "bilinear", "align_corners": False} if smooth else {"mode": "nearest"}
    return (EPS * F.interpolate(signs, size=(size, size), **mode)).expand(n, 3, size, size)


def survival(x: torch.Tensor, delta: torch.Tensor, countermeasures: dict[str, list]) -> dict[str, float]:
    """Correlation of what each countermeasure leaves of delta with (the grey part of) delta."""
    xp = to_8bit(x + delta)
    d = (xp - x).double()  # float64 sums: float32 ones over ~10^7 pixels drift past 1
    grey = d.mean(1, keepdim=True).expand_as(d)  # grey keeps only this part; the others keep more of d
    out = {}
    for name, specs in countermeasures.items():
        cms = build_countermeasures(specs)
        left = apply_data(cms, xp) - apply_data(cms, x)
        ref = grey if any(cm.name == "grayscale" for cm in cms) else d
        out[name] = _corr(left, ref)
    q10 = torch.full((len(x),), 10.0)
    out["jpeg_q10 (kornia, training)"] = _corr(jpeg_codec_differentiable(xp, q10) - jpeg_codec_differentiable(x, q10), d)
    dc = F.avg_pool2d(d.mean(1, keepdim=True), 8)
    out["8x8 brightness part, rms /255"] = round(float(dc.pow(2).mean().sqrt() * 255), 2)
    return out


def _corr(left: torch.Tensor, ref: torch.Tensor) -> float:
    left = left.double()
    return round(float((left * ref).sum() / (left.norm() * ref.norm() + 1e-12)), 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", nargs="*", default=[], help="extra generators as NAME=PATH")
    ap.add_argument("--n", type=int, default=200, help="training photos used")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    data = load_image_folder(webface10_root() / "train_clean", size=112)
    pick = torch.randperm(len(data.labels), generator=torch.Generator().manual_seed(0))[: args.n]
    x, y = data.images[pick], data.labels[pick]
    gen = torch.Generator().manual_seed(0)
    deltas = {
        "pixel, brightness": pattern(len(x), 112, 1, True, False, gen),
        "8x8 blocks, colour": pattern(len(x), 112, 8, False, False, gen),
        "8x8 blocks, brightness": pattern(len(x), 112, 8, True, False, gen),
        "smooth 8, brightness": pattern(len(x), 112, 8, True, True, gen),
    }
    for spec in ["default", "robust", *args.weights]:
        name, _, path = spec.partition("=")
        g, _ = load_generator(path or name)
        deltas[f"generator {name}"] = g.eval()(x, y)
    countermeasures = data_countermeasures()
    rows = {name: survival(x, d, countermeasures) for name, d in deltas.items()}
    cols = list(next(iter(rows.values())))
    md = ["# Perturbation survival: correlation of what each countermeasure leaves with delta",
          "",
          f"WebFace10 train photos, {len(x)} at 112 px, 8-bit; 1 = passed on unchanged, 0 = gone "
          "(grayscale columns: against delta's grey part). Command: `python benchmarks/survival.py "
          + (f"--weights {' '.join(args.weights)}" if args.weights else "") + "`",
          "",
          "| delta | " + " | ".join(cols) + " |",
          "|---|" + "---|" * len(cols)]
    md += [f"| {name} | " + " | ".join(f"{r[c]:.2f}" for c in cols) + " |" for name, r in rows.items()]
    write_results("survival", {"n_photos": len(x), "image_size": 112, "eps_255": 8, "correlation": rows}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
