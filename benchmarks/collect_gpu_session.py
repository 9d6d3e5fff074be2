"""Fold a GPU session's results (benchmarks/gpu_session.sh) into benchmarks/results/.

    python benchmarks/collect_gpu_session.py PATH/gpu_session.tgz [PATH/gpu_session_topup.tgz ...]

The session ran each grid in several processes (one results folder each, under runs/gpu/bench/);
this merges them per grid into benchmarks/results/{table1_gpu,robust_gpu}/ (results.jsonl,
methods.json, table.md, curves.png), copies the robust generators' weights and the logs, and
adds to table1_gpu the cells it can take from elsewhere, each row keeping its own ``device``:
the CPU protocol's seed-0 cells (benchmarks/results/table1_cpu) and the shipped generator's
robustness rows measured in robust_gpu (method ``segue_default`` there is ``segue`` here); and the
other way round, table1_cpu's rows of the shipped generator to robust_gpu.
"""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
from pathlib import Path

from segue.benchmark import load_config, read_methods, read_results, write_json_atomic, write_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
GRIDS = ROOT / "benchmarks" / "grids"


def merge(sources: list[Path], out: Path, rename: dict[str, str] | None = None) -> None:
    """Append the rows of ``sources`` that ``out`` lacks (by cell id); methods.json: first record wins.
    With ``rename``, only the renamed methods are taken."""
    rename = rename or {}
    out.mkdir(parents=True, exist_ok=True)
    rows = read_results(out)
    have = {r["cell"] for r in rows}
    records = read_methods(out)
    for src in sources:
        for r in read_results(src):
            r = dict(r)
            if rename and r["method"] not in rename:
                continue
            if r["method"] in rename:
                r["source"] = str(src.relative_to(ROOT)) if src.is_relative_to(ROOT) else str(src)
                r["method"] = rename[r["method"]]
                r["cell"] = "|".join([r["method"], r["victim"], r["countermeasure"], str(r["seed"])])
            if r["cell"] not in have:
                rows.append(r)
                have.add(r["cell"])
        for label, rec in read_methods(src).items():
            if not rename or label in rename:
                records.setdefault(rename.get(label, label), rec)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_json_atomic(out / "methods.json", records)


def main(archives: list[str]) -> None:
    for archive in archives:
        with tarfile.open(archive) as tar:
            tar.extractall(ROOT, filter="data")
    session = ROOT / "runs" / "gpu"
    bench = sorted((session / "bench").iterdir())
    t1 = [p for p in bench if p.name.startswith("t1_")]
    robust = [p for p in bench if not p.name.startswith("t1_")]

    out_r = RESULTS / "robust_gpu"
    merge(robust, out_r)
    merge([RESULTS / "table1_cpu"], out_r, rename={"segue": "segue_default"})
    for weights in sorted(session.glob("robust_*")):
        shutil.copy2(weights, out_r / weights.name)
    logs = sorted((session / "logs").glob("*"))
    stem = Path(archives[0]).name.split(".")[0] if archives else "gpu_session"
    log_name = "device_log.txt" if stem == "gpu_session" else f"device_log_{stem.removeprefix('gpu_session_')}.txt"
    (out_r / log_name).write_text("".join(f"==== {p.name}\n{p.read_text(errors='replace')}\n" for p in logs))
    write_report(load_config(GRIDS / "robust_gpu.yaml"), out_r)

    out_t = RESULTS / "table1_gpu"
    merge(t1, out_t)
    merge([out_r], out_t, rename={"segue_default": "segue"})
    merge([RESULTS / "table1_cpu"], out_t)
    write_report(load_config(GRIDS / "table1_gpu.yaml"), out_t)

    for f in session.glob("unsupervised_gpu.*"):
        shutil.copy2(f, RESULTS / f.name)
    print(f"merged {len(bench)} result folders into {out_r.relative_to(ROOT)} and {out_t.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
