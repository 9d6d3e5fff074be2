"""The attack table: one row per protection, one column per attacker - the user's question.

A benchmark config with a ``table`` section gets ``attacks.md``, ``attacks.json`` and
``attacks.png`` next to its ``table.md``, pivoted from ``results.jsonl``::

    table:
      rows: [clean, segue, robust_rem]            # method labels; the first is the clean reference
      columns:                                    # label -> which cells fill it
        from scratch: {victim: resnet18}
        dlib-linear: {victim: dlib-linear}
        orth. projection: {victim: resnet18, countermeasure: projection}
        partial: {victim: dlib-linear, method: "{row}_p3"}   # protected people only

A column names a ``victim`` (attacker) and optionally a ``countermeasure`` (default ``none``)
and a ``method`` pattern (default the row itself; ``{row}`` is replaced). For a partial method
the cell is the protected people's clean-test accuracy at the epoch where the clean other people
score best - the epoch an attacker who early-stops on them would keep (see
:func:`segue.benchmark.group_summary`); otherwise the peak over epochs, averaged over seeds.
A one-shot attacker (an embedding + classifier) has one epoch, so its peak is its only value.

``imports`` brings in committed cells of the same protocol from other grids instead of training
those victims again (``{results: OTHER/results.jsonl, methods: {their_label: our_row}}``); a
cell this grid ran itself (same method, attacker, countermeasure, seed) wins. The markdown
names every imported file.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from segue.benchmark.results import group_summary


def cell_value(rows: list[dict]) -> dict | None:
    """Mean (and spread, n) of the cells' headline accuracy: protected people for partial cells, else peak."""
    if not rows:
        return None
    if "groups" in rows[0]:
        picked = [group_summary(r["history"], "protected") for r in rows]  # from the history: older rows lack at_select
        vals, finals = [g["at_select"] for g in picked], [g["final"] for g in picked]
        kind = "protected people, at the others' best epoch"
    else:
        vals, finals = [r["peak_acc"] for r in rows], [r["final_acc"] for r in rows]
        kind = "peak" if len(rows[0]["history"]) > 1 else "one-shot"
    return {"mean": statistics.mean(vals), "min": min(vals), "max": max(vals), "final": statistics.mean(finals),
            "n": len(vals), "kind": kind, "seeds": sorted(r["seed"] for r in rows)}


def fmt(v: dict | None) -> str:
    if v is None:
        return "-"
    spread = f" [{100 * v['min']:.1f}-{100 * v['max']:.1f}]" if v["n"] > 1 else ""
    final = f" ({100 * v['final']:.1f})" if v["kind"] != "one-shot" else ""
    return f"{100 * v['mean']:.1f}{final}{spread} n={v['n']}"


def imported_rows(spec: dict, own: list[dict]) -> list[dict]:
    """Cells of other results files renamed to this table's rows (see the module docstring)."""
    from segue.benchmark.results import read_results

    have = {(r["method"], r["victim"], r["countermeasure"], r["seed"]) for r in own}
    rows = []
    for imp in spec.get("imports") or []:
        for r in read_results(Path(imp["results"]).parent):
            if r["method"] in imp["methods"]:
                r = {**r, "method": imp["methods"][r["method"]], "imported_from": imp["results"]}
                if (r["method"], r["victim"], r["countermeasure"], r["seed"]) not in have:
                    rows.append(r)
    return rows


def build_table(cfg: dict, results: list[dict]) -> dict:
    """``{row: {column: value}}`` for the config's ``table`` section."""
    spec = cfg["table"]
    table: dict[str, dict] = {}
    for row in spec["rows"]:
        table[row] = {}
        for col, c in spec["columns"].items():
            method = c.get("method", "{row}").format(row=row)
            sel = [r for r in results if r["method"] == method and r["victim"] == c["victim"]
                   and r["countermeasure"] == c.get("countermeasure", "none")]
            table[row][col] = cell_value(sel)
    return table


VISIBILITY_COLUMN = "visibility: HaarPSI / ΔE p95"


def row_visibility(records: dict, row: str) -> str:
    """The median HaarPSI / CIEDE2000 p95 of ``row``'s protected training set (``methods.json``), or "-"
    where it was not measured (``segue benchmark GRID --visibility`` fills it in)."""
    rec = records.get(row) or {}
    if rec.get("haarpsi_median") is None:
        return "-"
    return f"{rec['haarpsi_median']:.3f} / {rec['delta_e_p95_median']:.2f}"


def write_attack_table(cfg: dict, out: Path, results: list[dict]) -> str:
    """Write ``attacks.md`` / ``attacks.json`` / ``attacks.png``; returns the markdown."""
    from segue.benchmark.results import read_methods

    spec = cfg["table"]
    imports = imported_rows(spec, results)
    table = build_table(cfg, results + imports)
    records = read_methods(out)
    cols = list(spec["columns"])
    chance = results[0]["chance"] if results else None
    md = [f"# {spec.get('title', 'Attacks')}", "", spec.get("note", "").strip(), "",
          "Clean-test accuracy % of each attacker fitted on photos protected by each row's method "
          "(first row: clean photos, the reference). Victims trained from scratch: **peak over epochs** "
          "(final); embedding attackers: their one value; partial columns: the protected people's "
          f"photos only, at the epoch where the clean other people score best (final). [min-max] over seeds, n = seeds. "
          f"Chance = {'-' if chance is None else f'{100 * chance:.1f}'} %.", "",
          "Visibility: median over the protected training photos (HaarPSI, 1 = identical; CIEDE2000 95th "
          "percentile between the 3x3-blurred photos; the default generator's files are held to >= 0.85 / <= 7.0; "
          "\"-\": not measured, `segue benchmark GRID --visibility METHOD` measures it).",
          "", f"| protection | {VISIBILITY_COLUMN} | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for row, vals in table.items():
        md.append(f"| {row} | {row_visibility(records, row)} | " + " | ".join(fmt(vals[c]) for c in cols) + " |")
    md += ["", "Columns: " + "; ".join(f"**{c}** = attacker `{s['victim']}`"
                                        + (f", countermeasure `{s['countermeasure']}`" if s.get("countermeasure") else "")
                                        + (f", method `{s['method']}`" if s.get("method") else "")
                                        for c, s in spec["columns"].items()) + ".", ""]
    for imp in spec.get("imports") or []:
        used = sorted({r["method"] for r in imports if r["imported_from"] == imp["results"]})
        if used:
            devices = sorted({r.get("device", "?") for r in imports if r["imported_from"] == imp["results"]})
            md.append(f"Rows {', '.join(used)}: cells not run by this grid come from `{imp['results']}` "
                      f"(same protocol; {', '.join(f'{k} -> {v}' for k, v in imp['methods'].items())}; "
                      f"victims trained on {' / '.join(devices)}).")
    md.append("")
    text = "\n".join(md)
    (out / "attacks.md").write_text(text)
    (out / "attacks.json").write_text(json.dumps({"columns": spec["columns"], "table": table,
                                                        "visibility": {r: row_visibility(records, r) for r in table}}, indent=2) + "\n")
    try:
        plot(table, cols, chance, out / "attacks.png", spec.get("title", "Attacks"))
    except ImportError:
        pass
    return text


def plot(table: dict, cols: list[str], chance: float | None, path: Path, title: str) -> None:
    """Grouped bars: one group per attacker, one bar per protection (missing cells left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(table)
    width = 0.8 / max(len(rows), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(cols)), 3.8))
    for i, row in enumerate(rows):
        xs = [j + (i - (len(rows) - 1) / 2) * width for j, c in enumerate(cols) if table[row][c]]
        ys = [100 * table[row][c]["mean"] for c in cols if table[row][c]]
        ax.bar(xs, ys, width, label=row, color=f"C{i % 10}")
    if chance is not None:
        ax.axhline(100 * chance, color="grey", ls=":", lw=1, label="chance")
    ax.set_xticks(range(len(cols)), cols, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("clean-test accuracy %")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
