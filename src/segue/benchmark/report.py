"""Reports of a grid: ``table.md`` (Table I / IV shaped), ``curves.png``, ``samples.png``, the attack table."""

from __future__ import annotations

import statistics
from pathlib import Path

from segue.benchmark.config import cache_dir
from segue.benchmark.results import read_methods, read_results
from segue.benchmark.sets import LPIPS_NOTE


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def cell_row(r: dict) -> tuple:
    """One ``results.jsonl`` record as the all-cells table's columns."""
    return (r["method"], r["victim"], r["countermeasure"], r["seed"], pct(r["peak_acc"]), r["peak_epoch"],
            pct(r["final_acc"]), r["train_seconds"], r.get("device", "-"), r["finished_at"])

def aggregate(rows: list[dict]) -> dict:
    peaks, finals = [r["peak_acc"] for r in rows], [r["final_acc"] for r in rows]
    return {"n": len(rows), "peak": statistics.mean(peaks), "final": statistics.mean(finals),
            "peak_min": min(peaks), "peak_max": max(peaks), "chance": rows[0]["chance"]}

def fmt_cell(agg: dict | None) -> str:
    if agg is None:
        return "-"
    spread = f" [{pct(agg['peak_min'])}-{pct(agg['peak_max'])}]" if agg["n"] > 1 else ""
    return f"{pct(agg['peak'])} ({pct(agg['final'])}){spread} n={agg['n']}"

def _or_dash(value) -> str:
    return "-" if value is None else str(value)


def write_report(cfg: dict, out: Path) -> str:
    """``table.md`` (Table I / IV shaped) and ``curves.png`` from results.jsonl and methods.json."""
    rows = read_results(out)
    records = read_methods(out)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["victim"], r["countermeasure"]), []).append(r)
    method_order = [m for m in cfg["methods"] if any(k[0] == m for k in groups) or m in records]
    victims = list(dict.fromkeys(k[1] for k in groups))
    cms = [c for c in cfg["countermeasures"] if any(k[2] == c for k in groups)]
    vc = cfg["victim"]
    size = cfg["data"].get("image_size", 112)
    n_train = rows[0]["n_train"] if rows else "?"
    n_test = rows[0]["n_test"] if rows else "?"
    md = [f"# Benchmark: {cfg.get('name', out.name)}", "",
          f"Data: {data_label(cfg['data'])}: {n_train} training images, {n_test} clean test images, "
          f"{size} px. Victims trained from scratch: Adam {vc.get('lr', 5e-4)}, cosine, batch {vc.get('batch_size', 16)}, "
          f"{vc.get('epochs', 15)} epoch(s), no augmentation unless a countermeasure adds it. ",
          "Each entry: clean-test accuracy %, **peak over epochs** (final epoch) [min-max over seeds] n=seeds. "
          f"Chance = {pct(rows[0]['chance']) if rows else '-'} %.", ""]
    if "none" in cms or not cms:
        md += ["## Table I shape: protection vs victim architecture (no countermeasure)", "",
               "| method | " + " | ".join(victims) + " |", "|---|" + "---|" * len(victims)]
        for m in method_order:
            md.append(f"| {m} | " + " | ".join(fmt_cell(aggregate(groups[(m, v, 'none')])) if (m, v, "none") in groups
                                                  else "-" for v in victims) + " |")
        md.append("")
    other = [c for c in cms if c != "none"]
    if other:
        for v in [v for v in victims if any((m, v, c) in groups for m in method_order for c in other)]:
            md += [f"## Table IV shape: countermeasures against each protection (victim {v})", "",
                   "| countermeasure | " + " | ".join(method_order) + " |", "|---|" + "---|" * len(method_order)]
            for c in cms:
                label = cm_label(c, cfg["countermeasures"][c])
                md.append(f"| {label} | " + " | ".join(fmt_cell(aggregate(groups[(m, v, c)])) if (m, v, c) in groups
                                                        else "-" for m in method_order) + " |")
            md.append("")
    if records:
        md += ["## Protected sets: image quality and generation time", "",
               "| method | PSNR dB | SSIM | HaarPSI | CIEDE2000 p95 | LPIPS | max L-inf /255 | fit s | perturb s | total s "
               "| device | notes |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for m in method_order:
            rec = records.get(m)
            if not rec:
                continue
            md.append(f"| {m} | {rec['psnr_mean'] if rec['psnr_mean'] is not None else '-'} | "
                      f"{rec['ssim_mean'] if rec['ssim_mean'] is not None else '-'} | {_or_dash(rec.get('haarpsi_median'))} | "
                      f"{_or_dash(rec.get('delta_e_p95_median'))} | skipped | {rec['linf_max_255']} | "
                      f"{rec['fit_seconds']} | {rec['perturb_seconds']} | {rec['total_seconds']} | {rec['device']} | "
                      f"{method_note(rec)} |")
        md += ["", f"LPIPS: {LPIPS_NOTE}. Generation times are wall-clock on the device named; methods generated "
               "in different runs (see `run_id` in methods.json) are comparable only on the same machine.", ""]
        md += timing_ratios(records)
    md += [f"Image grid (clean / protected / delta x10; real photos, so kept out of the repository): "
           f"`{cache_dir(cfg) / 'samples.png'}`.", ""]
    md += ["## All cells (`results.jsonl`, one line each, with per-epoch history)", "",
           "| method | victim | countermeasure | seed | peak % | peak epoch | final % | train s | device | finished |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    md += ["| " + " | ".join(str(v) for v in cell_row(r)) + " |" for r in rows] + [""]
    text = "\n".join(md)
    (out / "table.md").write_text(text)
    if cfg.get("table"):
        from segue.benchmark.attack_table import write_attack_table

        write_attack_table(cfg, out, rows)
    try:
        write_curves(rows, out)
    except ImportError:
        pass
    return text

def data_label(data: dict) -> str:
    if "name" in data:
        return ", ".join(f"{k} {v}" for k, v in data.items() if k != "image_size")
    return f"train `{data.get('train', 'given')}`, test `{data.get('test', 'given')}`"

def cm_label(label: str, specs: list) -> str:
    """``jpeg_q10: jpeg(quality=10)`` for a table row."""
    if not specs:
        return label
    from segue.countermeasures import build_countermeasures

    return f"{label}: " + " + ".join(c.describe() for c in build_countermeasures(specs))

def method_note(rec: dict) -> str:
    info = rec.get("fit_info") or {}
    note = (rec.get("spec") or {}).get("note")
    parts = []
    if "passes" in info:
        parts.append(f"{info['passes']} noise passes, stopped by {info['stopped_by']}, "
                     f"surrogate acc on its perturbed data {info['final_train_acc']}")
    if "generator_train_seconds" in info:
        parts.append(f"generator training (not in these times): {info['generator_train_seconds']} s, device "
                     f"{info.get('generator_train_device')}")
    if note:
        parts.append(note)
    return "; ".join(parts)

def timing_ratios(records: dict) -> list[str]:
    """Each method's generation time over Segue's (protect only, and with generator training)."""
    segue = [r for r in records.values() if "generator_train_seconds" in (r.get("fit_info") or {})]
    if not segue:
        return []
    s = segue[0]
    gen_train = s["fit_info"].get("generator_train_seconds")
    lines = ["| method | total s | x Segue protect only | x Segue incl. generator training |", "|---|---|---|---|"]
    for label, r in records.items():
        if (r.get("spec") or {}).get("name") == "none":
            continue
        a = r["total_seconds"] / s["total_seconds"] if s["total_seconds"] else float("nan")
        b = r["total_seconds"] / (s["total_seconds"] + gen_train) if gen_train else None
        lines.append(f"| {label} | {r['total_seconds']} | {a:.3g} | {'-' if b is None else f'{b:.3g}'} |")
    return ["### Generation time relative to Segue (`" + s["method"] + "`)", "",
            f"Segue's generator training time ({gen_train} s, {s['fit_info'].get('generator_train_device')}) comes from "
            "the weights' provenance, not from this run; the protect-only time is measured here.", "", *lines, ""]

def write_curves(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    panels = list(dict.fromkeys((r["victim"], r["countermeasure"]) for r in rows))
    colour = {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))}  # same in every panel
    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    for ax, (victim, cm) in zip(axes.flat, panels):
        sel = [r for r in rows if r["victim"] == victim and r["countermeasure"] == cm]
        for method in dict.fromkeys(r["method"] for r in sel):
            hist = [r["history"] for r in sel if r["method"] == method]
            epochs = min(len(h) for h in hist)
            mean = [statistics.mean(h[e]["test_acc"] for h in hist) for e in range(epochs)]
            ax.plot(range(1, epochs + 1), [100 * a for a in mean], marker=".", label=f"{method} (n={len(hist)})",
                    color=colour[method])
        ax.axhline(100 * sel[0]["chance"], color="grey", ls=":", lw=1)
        ax.set_title(f"{victim} / {cm}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("clean-test acc %")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)

def write_samples(cfg: dict, out: Path, train, per_method: int = 2) -> None:
    """Clean / protected / delta x10 (+0.5) for a few images of every cached method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from safetensors.torch import load_file

    cache = cache_dir(cfg)
    cached = [m for m in cfg["methods"] if (cache / f"{m}.safetensors").exists()]
    if not cached:
        return
    idx = [int((train.labels == c).nonzero()[0]) for c in train.labels.unique()[:per_method].tolist()]
    fig, axes = plt.subplots(len(cached), 3 * len(idx), figsize=(1.6 * 3 * len(idx), 1.7 * len(cached)), squeeze=False)
    for row, m in enumerate(cached):
        prot = load_file(str(cache / f"{m}.safetensors"))["images"]
        for j, i in enumerate(idx):
            clean = train.images[i]
            p = prot[i].float() / 255
            panels = [clean, p, (0.5 + 10 * (p - clean)).clamp(0, 1)]
            for k, (img, title) in enumerate(zip(panels, ("clean", m, "delta x10"))):
                ax = axes[row, 3 * j + k]
                ax.imshow(img.permute(1, 2, 0).numpy())
                ax.set_title(title, fontsize=7)
                ax.axis("off")
    fig.tight_layout()
    fig.savefig(cache / "samples.png", dpi=100)
    plt.close(fig)
