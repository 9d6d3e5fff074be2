"""The frontier as a picture: dlib accuracy against visibility, one point per protection.

    python benchmarks/frontier_plot.py RESULTS.json [MORE.json ...] -o benchmarks/results/NAME.png

Reads ``benchmarks/cloak_frontier.py`` results (a later file's row replaces an earlier one of the same
name) and draws dlib-linear and dlib 1-NN accuracy (everyone protected) against HaarPSI and against
CIEDE2000 p95, with the default generator's visibility and the 25 % line marked. Needs matplotlib
(the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    rows: dict = {}
    for path in args.results:
        rows.update(json.loads(Path(path).read_text())["rows"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label in ((axes[0], "haarpsi_median", "HaarPSI (median per photo; 1 = identical)"),
                           (axes[1], "delta_e_p95_median", "CIEDE2000 p95 (median per photo; 0 = identical)")):
        for name, r in rows.items():
            x = r[key]
            lin, knn = (100 * r["attacks"][a]["everyone"] for a in ("dlib-linear", "dlib-knn"))
            ax.plot([x, x], [lin, knn], color="0.7", lw=1, zorder=1)
            ax.scatter([x], [lin], marker="o", color="C0", zorder=2)
            ax.scatter([x], [knn], marker="s", color="C1", zorder=2)
            ax.annotate(name.replace("strength:", ""), (x, lin), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if "default" in rows:
            ax.axvline(rows["default"][key], color="C2", ls="--", lw=1, label="default generator's visibility")
        ax.axhline(25, color="C3", ls=":", lw=1, label="25 %")
        ax.set_xlabel(label)
        ax.set_ylabel("dlib accuracy on clean test photos, %")
        ax.scatter([], [], marker="o", color="C0", label="dlib-linear")
        ax.scatter([], [], marker="s", color="C1", label="dlib 1-NN")
    axes[0].invert_xaxis()  # left to right: more visible
    axes[1].legend(fontsize=8, loc="center right")  # where no point falls
    fig.suptitle("dlib accuracy against visibility (right: more visible; lower: better protected)", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(args.output)


if __name__ == "__main__":
    main()
