"""``report.json``: one row per file from any engine, the errors, and the run's summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from segue.data import natural_key
from segue.imageio import write_atomic
from segue.protect.jobs import Job


def report_error(errors: list[dict], rel: str, message: str) -> None:
    errors.append({"input": rel, "error": message})
    tqdm.write(f"segue: error: {rel}: {message}", file=sys.stderr)


def build_report(in_dir: Path, out_dir: Path, work_size, results: list[dict], errors: list[dict], done: list[Job],
                 seconds: float, engine: str, interrupted: bool = False, protection: dict | None = None) -> dict:
    """Assemble ``report.json`` (written atomically) from the rows of any engine; ``protection``: what
    made the deltas, where it is not a generator (the per-photo cloak's settings)."""
    for row in results:  # a per-file failure while encoding/writing is reported like a bad input
        if row.get("status") == "error":
            report_error(errors, row["input"], row["error"])
    results = sorted((r for r in results if r.get("status") != "error"), key=lambda r: natural_key(r["input"]))
    report = {
        "input": str(in_dir.resolve()),
        "output": str(out_dir.resolve()),
        "engine": engine,
        **({"protection": protection} if protection else {}),
        "work_size": work_size,
        "interrupted": interrupted,
        "files": results,
        "errors": sorted(errors, key=lambda e: natural_key(e["input"])),
        "no_face": [r["input"] for r in results if r["status"] == "no_face"],
        "skipped_existing": [j.rel for j in done],
        "summary": summarize(results, len(errors), seconds),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic((json.dumps(report, indent=2) + "\n").encode(), out_dir / "report.json")
    return report


def summarize(results: list[dict], n_errors: int, seconds: float) -> dict:
    """Mean quality and throughput of a protect run.

    ``ssim_mean`` is over the photos whose SSIM was measured (``ssim_photos`` of them: every
    ``--ssim-every``-th); visibility (HaarPSI, CIEDE2000 p95: medians and worst; shading p95: median) over the photos whose
    visibility was measured (``visibility_photos``); ``psnr_mean`` and ``linf_max`` over every protected photo.
    """
    protected = [r for r in results if r["status"] == "protected"]
    seen = [r["visibility"] for r in protected if r.get("visibility")]

    def median(key: str) -> float | None:
        vals = [v[key] for v in seen if v.get(key) is not None]
        return round(float(np.median(vals)), 4) if vals else None

    def values(key: str) -> list[float]:
        return [r[key] for r in protected if r[key] is not None and np.isfinite(r[key])]

    def mean(key: str) -> float | None:
        vals = values(key)
        return round(float(np.mean(vals)), 4) if vals else None

    return {
        "protected": len(protected),
        "no_face": len(results) - len(protected),
        "errors": n_errors,
        "psnr_mean": mean("psnr"),
        "ssim_mean": mean("ssim"),
        "ssim_photos": len(values("ssim")),
        "linf_max": max((r["linf"] for r in protected), default=None),
        "haarpsi_median": median("haarpsi"),
        "delta_e_p95_median": median("delta_e_p95"),
        "haarpsi_min": min((v["haarpsi"] for v in seen if v["haarpsi"] is not None), default=None),
        "delta_e_p95_max": max((v["delta_e_p95"] for v in seen), default=None),
        "shading_p95_median": median("shading_p95"),
        "visibility_photos": len(seen),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(results) / seconds, 2) if seconds > 0 and results else None,
    }
