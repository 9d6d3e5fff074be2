"""Which full-reference measures see what HaarPSI and CIEDE2000 missed: the tangent cloaks' patches.

The tangent and high-passed cloaks (experiments/tangent_cloak.py, experiments/highpass_cloak.py) meet
`low`'s bar - HaarPSI and CIEDE2000 p95 no worse than the default generator's on each photo - and are
plainly visible side by side (docs/experiments/img/tangent_cloak_orl.png), where `low` shows faint
shading and the generator a fine grain. A measure fit to be a third term of the bar has to rank them as
the eye does: the generator and `low` alike, the tangent cloaks worse. This pilot computes piq's
full-reference measures, CIEDE2000 after a coarse blur and the mid-scale shading (segue.visibility.shading_p95;
the shading bar's cloak, experiments/shading_cloak.py, is compared too), on 16 ORL photos of people 0-19
(every 10th training photo) or 16 CelebA234 validation photos (the first of 16 people), median per protection:

    python experiments/visibility_measures.py [--data celeba234-val]

The "by eye" order is the judgement of the side-by-side images at 2x and 3x, not a measurement.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the repository root

from experiments._common import write_results  # noqa: E402

#: By eye, side by side at 2x (ORL also 3x), per data set: 1 faint, 2 plain.
BY_EYE = {
    "orl": {"default": "1: fine grain", "low": "1-2: shading on the nose and brow; on some faces a furrowed forehead, darker eye sockets",
            "tangent": "2: bright patches, mottled cheeks", "tangent two-scale": "2: as tangent, a little less",
            "tangent high-passed": "2: etched outlines of brows, nose and mouth", "medium": "2: embossed shading",
            "shading bar +0.5": "1-2: fainter shading than low, furrows still seen on some foreheads",
            "high": "2: wrinkle-like patterns"},
    "celeba234-val": {"default": "1: fine grid, plain on a blurry face", "low": "1-2: shading; on some faces a furrowed brow, darker eyes",
                      "tangent": "2: light patches on the nose and cheeks", "tangent two-scale": "2: as tangent",
                      "tangent high-passed": "2: etched lines over nose and mouth", "medium": "2: embossed shading (gallery)",
                      "shading bar +0.5": "1: fainter shading than low; lips and eye sockets still a little changed on some faces",
                      "high": "2: wrinkle-like patterns (gallery)"},
}
#: A per-photo FSIM bar as HaarPSI's: no lower than the generator's on the same photo, less this.
FSIM_MARGIN = 0.005


def measures(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """``(N,)`` per measure of originals ``x`` and protected ``y``."""
    import piq
    from kornia.filters import gaussian_blur2d

    from segue.visibility import delta_e_map, shading_p95, visibility_terms

    h, _, d = visibility_terms(x, y)
    bx, by = (gaussian_blur2d(t, (13, 13), (3.0, 3.0)) for t in (x, y))  # what is left of shading
    return {"HaarPSI": h, "CIEDE2000 p95": d, "shading p95": shading_p95(x, y),
            "CIEDE2000 p95, blur 3 px": delta_e_map(bx, by).flatten(1).quantile(0.95, dim=1),
            "FSIM": piq.fsim(y, x, reduction="none"), "SR-SIM": piq.srsim(y, x, reduction="none"),
            "MDSI (lower better)": piq.mdsi(y, x, reduction="none"), "GMSD (lower better)": piq.gmsd(y, x, reduction="none"),
            "VIF": piq.vif_p(y, x, reduction="none")}


def main() -> None:
    import argparse

    from experiments.shading_cloak import ShadingCloak
    from experiments.tangent_cloak import compared
    from segue.checkpoint import load_generator
    from segue.data import celeba234_photos, load_orl
    from segue.methods.base import quantise
    from segue.methods.perceptual_cloak import shipped_protect
    from segue.protect.presets import PRECISION, SHAPING, STEPS, create_preset

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=["orl", "celeba234-val"], default="orl")
    args = ap.parse_args()
    if args.data == "orl":
        train, _ = load_orl(size=112, train_per_class=8, num_classes=20)
        idx = list(range(0, len(train), 10))
        where = "ORL photos of people 0-19"
    else:
        train = celeba234_photos("val", 112, num_classes=16)
        idx = [int((train.labels == c).nonzero()[0]) for c in range(16)]
        where = "CelebA234 validation photos (16 people)"
    x, y = train.images[idx], train.labels[idx]
    with torch.no_grad():
        generator = shipped_protect(load_generator("default")[0], x, y)
    shading = ShadingCloak(**SHAPING, steps=STEPS, precision=PRECISION, shading_margin=0.5).load()
    outs = {"default": quantise(x, generator - x, 8 / 255), **compared(x, y), "shading bar +0.5": shading.perturb(x, y),
            "medium": create_preset("medium").perturb(x, y), "high": create_preset("high").perturb(x, y)}
    rows, seconds, fsim = {}, {}, {}
    for name, out in outs.items():
        t0 = time.perf_counter()
        per_photo = measures(x, out)
        seconds[name] = round(time.perf_counter() - t0, 2)
        rows[name] = {k: round(float(v.median()), 4) for k, v in per_photo.items()}
        fsim[name] = per_photo["FSIM"]
    for name in rows:  # the share of photos a per-photo FSIM bar at the generator's would let through
        rows[name][f"within FSIM bar (-{FSIM_MARGIN})"] = round(float((fsim[name] >= fsim["default"] - FSIM_MARGIN).float().mean()), 3)
    names = list(next(iter(rows.values())))
    name = "visibility_measures" + ("" if args.data == "orl" else "_celeba234_val")
    command = "python experiments/visibility_measures.py" + ("" if args.data == "orl" else f" --data {args.data}")
    lines = ["# Visibility measures against the eye", "", f"`{command}`", "",
             f"{len(x)} {where}, 112 px; median per protection; by eye: the side by side at 2x and 3x.", "",
             "| protection | " + " | ".join(names) + " | by eye |", "|---" * (len(names) + 2) + "|"]
    lines += [f"| {k} | " + " | ".join(str(r[m]) for m in names) + f" | {BY_EYE[args.data][k]} |" for k, r in rows.items()]
    write_results(name, {"command": command, "photos": len(x), "rows": rows, "by_eye": BY_EYE[args.data], "seconds_all_measures": seconds},
                  "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
