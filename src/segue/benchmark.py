"""``segue benchmark CONFIG``: noise methods x victims x countermeasures x seeds on any ImageFolder set.

The config (YAML or JSON) names every ingredient once and lists the grid blocks to run::

    data: {train: webface10:train_clean, test: webface10:test_clean, image_size: 112}
    output: benchmarks/results/table1_cpu
    victim: {epochs: 15, batch_size: 16, lr: 0.0005}
    methods:                       # label -> segue.methods spec (eps_255 for eps in /255)
      clean: {name: none}
      segue: {name: segue}
      em_classwise: {name: em, mode: classwise, max_seconds: 600}
    countermeasures:               # label -> list of segue.countermeasures specs (composed)
      none: []
      jpeg_q10: [{name: jpeg, quality: 10}]
    grid:                          # blocks; each is the product of its lists
      - {methods: [clean, segue, em_classwise], victims: [resnet18], countermeasures: [none], seeds: [0]}

``webface10:SUB`` resolves under :func:`segue.data.webface10_root`; other paths are taken
relative to the current directory. A cell is ``method|victim|countermeasure|seed``.

Resumable: each finished cell is one line of ``OUTPUT/results.jsonl``; a rerun skips the
cells already there (``--only`` globs pick cells, ``--max-cells`` and ``--deadline`` bound
a session). A method's protected training set is generated once and cached (config ``cache``;
default ``~/.cache/segue/benchmark/<output>``, outside the repository: the sets are copies of
the photos), with its generation time and image quality in ``OUTPUT/methods.json``.
``OUTPUT/table.md`` and ``OUTPUT/curves.png`` are rewritten after every cell; ``samples.png``
(clean / protected / amplified delta: real photos) is written next to the cached sets.
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import torch

GITIGNORE = ".cache/\nsamples.png\n"
LPIPS_NOTE = "skipped (no offline LPIPS backbone weights)"


@dataclass(frozen=True)
class Cell:
    method: str
    victim: str
    countermeasure: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.method}|{self.victim}|{self.countermeasure}|{self.seed}"


# ---------------------------------------------------------------- config

def load_config(path: str | Path) -> dict:
    """A grid config; ``base: OTHER.yaml`` (relative to this file) starts from another grid, whose
    sections this one overrides - key by key for the mappings (methods, countermeasures, ...)."""
    import yaml

    text = Path(path).read_text()
    cfg = yaml.safe_load(text) if str(path).endswith((".yaml", ".yml")) else json.loads(text)
    if "base" in cfg:
        base = load_config(Path(path).parent / cfg.pop("base"))
        for key, value in cfg.items():
            base[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
        cfg = base
    for key in ("data", "methods", "grid"):
        if key not in cfg:
            raise ValueError(f"{path}: benchmark config needs a '{key}' section")
    cfg.setdefault("countermeasures", {"none": []})
    cfg.setdefault("victim", {})
    cfg.setdefault("output", f"benchmark-{Path(path).stem}")
    return cfg


def cells_of(cfg: dict) -> list[Cell]:
    """Every cell of the grid, in order (seeds outermost in each block), without duplicates."""
    seen: dict[str, Cell] = {}
    for block in cfg["grid"]:
        methods = block.get("methods", list(cfg["methods"]))
        victims = block.get("victims", ["resnet18"])
        cms = block.get("countermeasures", ["none"])
        seeds = block.get("seeds", [0])
        for name in methods:
            if name not in cfg["methods"]:
                raise KeyError(f"grid uses method {name!r}, not defined under 'methods'")
        for name in cms:
            if name not in cfg["countermeasures"]:
                raise KeyError(f"grid uses countermeasure {name!r}, not defined under 'countermeasures'")
        for seed, m, v, c in itertools.product(seeds, methods, victims, cms):
            cell = Cell(m, v, c, int(seed))
            seen.setdefault(cell.id, cell)
    return list(seen.values())


def cache_dir(cfg: dict) -> Path:
    """Where protected sets (copies of the photos) are cached: ``cfg['cache']``, else per output
    folder under ``$XDG_CACHE_HOME`` (``~/.cache``) - never inside the repository by default."""
    if cfg.get("cache"):
        return Path(cfg["cache"])
    import hashlib

    out = Path(cfg["output"]).resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "segue" / "benchmark" / f"{out.name}-{hashlib.sha1(str(out).encode()).hexdigest()[:10]}"


def resolve_data_path(spec: str) -> Path:
    if spec.startswith("webface10:"):
        from segue.data import webface10_root

        return webface10_root() / spec.split(":", 1)[1]
    return Path(spec)


def method_kwargs(spec: dict, device: torch.device) -> tuple[str, dict]:
    spec = dict(spec)
    name = spec.pop("name")
    spec.pop("note", None)
    if "eps_255" in spec:
        spec["eps"] = spec.pop("eps_255") / 255
    if name in ("em", "segue"):
        spec.setdefault("device", str(device))
    return name, spec


# ---------------------------------------------------------------- results files

def read_results(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash: that cell simply reruns
                continue
    return rows


def append_result(out: Path, row: dict) -> None:
    with open(out / "results.jsonl", "a") as fh:
        fh.write(json.dumps(row, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_methods(out: Path) -> dict:
    path = out / "methods.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------- protected sets

def image_quality(clean: torch.Tensor, protected: torch.Tensor) -> dict:
    """Mean PSNR (dB, finite images only) and SSIM (kornia, 11x11 window), max L-inf in /255 steps."""
    import kornia.metrics

    psnrs, ssims = [], []
    for start in range(0, len(clean), 64):
        a, b = clean[start : start + 64], protected[start : start + 64]
        mse = ((a - b) ** 2).flatten(1).mean(1)
        psnrs += [10 * math.log10(1 / m) for m in mse.tolist() if m > 0]
        if min(a.shape[-2:]) >= 11:
            ssims += kornia.metrics.ssim(a, b, 11).flatten(1).mean(1).tolist()
    linf = int(((clean - protected).abs().max() * 255).round().item()) if len(clean) else 0
    return {
        "psnr_mean": round(statistics.mean(psnrs), 3) if psnrs else None,
        "ssim_mean": round(statistics.mean(ssims), 5) if ssims else None,
        "linf_max_255": linf,
        "lpips": LPIPS_NOTE,
    }


def protected_classes(spec: dict, num_classes: int, seed: int = 0) -> list[int]:
    """The people a partial method protects: ``protected_classes: [3]``, or ``protected_fraction: f``
    (a seeded draw of ``round(f K)`` people, at least one)."""
    if "protected_classes" in spec:
        return sorted(int(c) for c in spec["protected_classes"])
    k = max(1, round(float(spec["protected_fraction"]) * num_classes))
    return sorted(torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed))[:k].tolist())


def protected_mask(labels: torch.Tensor, classes: list[int]) -> torch.Tensor:
    return torch.isin(labels, torch.tensor(classes, dtype=labels.dtype))


def partial_groups(cfg: dict, method: str, train, test) -> dict[str, torch.Tensor] | None:
    """Test-set masks ``protected`` / ``others`` for a partial method (None for a full one)."""
    spec = cfg["methods"][method]
    if "partial_of" not in spec:
        return None
    mask = protected_mask(test.labels, protected_classes(spec, len(train.classes), int(cfg.get("method_seed", 0))))
    return {"protected": mask, "others": ~mask}


FIT_THRESHOLD = 0.95


def group_summary(history: list[dict], group: str, fit_threshold: float = FIT_THRESHOLD) -> dict:
    """A group's final accuracy and its accuracy once the attacker fits its training set.

    "Fitted" is the first epoch with training accuracy >= ``fit_threshold`` (else the last
    epoch). The peak over epochs is kept only for reference: an untrained victim that predicts
    one class for everything scores 100 % on that class, so a peak says little about one person.
    """
    key = f"test_acc_{group}"
    fitted = next((r for r in history if r.get("train_acc", 0) >= fit_threshold), history[-1])
    return {"final": history[-1][key], "at_fit": fitted[key], "fit_epoch": fitted["epoch"],
            "peak": max(r[key] for r in history)}


class ProtectedSets:
    """Generates (once) and caches each method's protected training set."""

    def __init__(self, cfg: dict, out: Path, train, device: torch.device, run_id: str, log):
        self.cfg, self.out, self.train, self.device, self.run_id, self.log = cfg, out, train, device, run_id, log
        self.cache = cache_dir(cfg)

    def _cache_path(self, label: str) -> Path:
        return self.cache / f"{label}.safetensors"

    def get(self, label: str) -> torch.Tensor:
        """``label``'s protected training set; a partial method (``partial_of``) is its base's set with
        every person outside ``protected_classes`` put back clean (not cached: it is a mask)."""
        spec = self.cfg["methods"][label]
        if "partial_of" in spec:
            keep = protected_mask(self.train.labels, protected_classes(spec, len(self.train.classes),
                                                                      int(self.cfg.get("method_seed", 0))))
            base = self.get(spec["partial_of"])
            return torch.where(keep[:, None, None, None], base, (self.train.images * 255).round() / 255)
        return self._generate(label)

    def _generate(self, label: str) -> torch.Tensor:
        from safetensors.torch import load_file, save_file

        records = read_methods(self.out)
        path = self._cache_path(label)
        if label in records and path.exists():
            return load_file(str(path))["images"].float() / 255
        from segue.methods import create_method

        name, kwargs = method_kwargs(self.cfg["methods"][label], self.device)
        train, labels = self.train, self.train.labels
        self.log(f"generating protected set '{label}' ({name}) for {len(train)} images ...")
        t0 = time.perf_counter()
        method = create_method(name, seed=int(self.cfg.get("method_seed", 0)), **kwargs)
        method.fit(train, labels)
        t1 = time.perf_counter()
        protected = method.perturb(train.images, labels)
        t2 = time.perf_counter()
        if protected.shape != train.images.shape:
            raise RuntimeError(f"method {label} returned {tuple(protected.shape)}, not {tuple(train.images.shape)}")
        record = {
            "method": label, "spec": self.cfg["methods"][label], "config": method.config(),
            "n_images": len(train), "image_size": int(train.images.shape[-1]),
            "fit_seconds": round(t1 - t0, 2), "perturb_seconds": round(t2 - t1, 2), "total_seconds": round(t2 - t0, 2),
            "fit_info": method.fit_info, **image_quality(train.images, protected),
            "device": device_name(self.device), "run_id": self.run_id,
            "finished_at": now_iso(),
        }
        self.cache.mkdir(parents=True, exist_ok=True)
        save_file({"images": (protected * 255).round().to(torch.uint8).contiguous()}, str(path))
        records = read_methods(self.out)
        records[label] = record
        write_json_atomic(self.out / "methods.json", records)
        self.log(f"  '{label}': {record['total_seconds']} s, PSNR {record['psnr_mean']}, SSIM {record['ssim_mean']}, "
                 f"L-inf {record['linf_max_255']}/255")
        return protected


# ---------------------------------------------------------------- running

def make_attacker(cfg: dict, victim: str, seed: int, device: torch.device):
    """The grid's ``victims`` entry as an attacker: a label under ``attackers:`` (a spec with a
    registered ``name``), a registered attacker name, or a model name (trained from scratch with
    the config's ``victim`` protocol)."""
    from segue.attackers import ATTACKERS, create_attacker

    spec = dict((cfg.get("attackers") or {}).get(victim) or {})
    name = spec.pop("name", victim)
    if name in ATTACKERS and name != "scratch":
        return create_attacker(name, seed=seed, device=device, **spec)
    vcfg = cfg["victim"]
    model = spec.pop("model", name if name != "scratch" else "resnet18")
    return create_attacker("scratch", model=model, epochs=int(vcfg.get("epochs", 15)),
                           batch_size=int(vcfg.get("batch_size", 16)), lr=float(vcfg.get("lr", 5e-4)),
                           seed=seed, device=device, **spec)



def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_deadline(text: str | None, now: datetime | None = None) -> datetime | None:
    """``HH:MM`` (UTC, the next such time) or an ISO timestamp; no new cell starts after it.

    The next such time, not today's: "00:10" given at 22:52 means tonight, and read as today
    it had already passed, so the run skipped every cell (session 14).
    """
    if not text:
        return None
    now = now or datetime.now(timezone.utc)
    if len(text) <= 5 and ":" in text:
        hh, mm = (int(t) for t in text.split(":"))
        at = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
        return at if at > now else at + timedelta(days=1)
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def select(cells: list[Cell], only: list[str] | None) -> list[Cell]:
    """The cells matching any ``--only`` pattern, in the patterns' order (so a run can put its
    most wanted cells first); cells that one pattern matches keep the grid's order."""
    if not only:
        return cells
    pats = [p for arg in only for p in arg.split(",") if p]
    picked: dict[str, Cell] = {}
    for pat in pats:
        for c in cells:
            if fnmatch.fnmatchcase(c.id, pat):
                picked.setdefault(c.id, c)
    return list(picked.values())


def load_data(cfg: dict):
    """``(train, test)`` of ``cfg['data']``: ImageFolder paths (``train`` / ``test``), or a named set -
    ``{name: orl, train_per_class: 8}`` (the embedded ORL faces) or ``{name: celeba234, split: test,
    test_per_class: 5}`` (one identity split of CelebA234: people kept apart from every other choice)."""
    from segue.data import load_celeba234, load_image_folder, load_orl

    data = cfg["data"]
    size = int(data.get("image_size", 112))
    if data.get("name") == "orl":
        return load_orl(size, int(data.get("train_per_class", 8)), data.get("num_classes"))
    if data.get("name") == "celeba234":
        return load_celeba234(data.get("split", "test"), size, int(data.get("test_per_class", 5)),
                              data.get("num_classes"))
    train = load_image_folder(resolve_data_path(data["train"]), size)
    test = load_image_folder(resolve_data_path(data["test"]), size, classes=train.classes)
    return train, test


def run_benchmark(cfg: dict, only: list[str] | None = None, max_cells: int | None = None,
                  deadline: datetime | None = None, wait_while_exists: str | None = None,
                  device: str | None = None, data=None, log=None) -> dict:
    """Run the pending cells of ``cfg``; returns ``{"ran": [...], "skipped": [...], "pending": [...]}``.

    ``data`` = ``(train, test)`` FaceSets to use instead of reading ``cfg['data']`` (tests).
    """
    from segue.countermeasures import apply_data, batch_transforms, build_countermeasures
    from segue.runtime import resolve_device, versions

    log = log or (lambda msg: print(f"segue benchmark: {msg}", file=sys.stderr, flush=True))
    out = Path(cfg["output"])
    out.mkdir(parents=True, exist_ok=True)
    if not (out / ".gitignore").exists():
        (out / ".gitignore").write_text(GITIGNORE)  # in case the cache is set inside OUTPUT
    dev = resolve_device(device or cfg.get("device", "auto"))
    cells = select(cells_of(cfg), only)
    done = {r["cell"] for r in read_results(out)}
    skipped = [c.id for c in cells if c.id in done]
    todo = [c for c in cells if c.id not in done]
    ran: list[str] = []
    run_id = now_iso()
    if todo:
        train, test = data if data is not None else load_data(cfg)
        sets = ProtectedSets(cfg, out, train, dev, run_id, log)
        for cell in todo:
            if max_cells is not None and len(ran) >= max_cells:
                break
            if deadline is not None and datetime.now(timezone.utc) >= deadline:
                log(f"deadline {deadline:%H:%M} UTC reached: not starting {cell.id}")
                break
            if wait_while_exists and Path(wait_while_exists).exists():
                t_wait = time.perf_counter()
                log(f"waiting while {wait_while_exists} exists ...")
                while Path(wait_while_exists).exists():
                    time.sleep(20)
                log(f"  waited {time.perf_counter() - t_wait:.0f} s")
                if deadline is not None and datetime.now(timezone.utc) >= deadline:
                    log(f"deadline {deadline:%H:%M} UTC reached: not starting {cell.id}")
                    break
            log(f"cell {cell.id}")
            protected = sets.get(cell.method)
            cms = build_countermeasures(cfg["countermeasures"][cell.countermeasure])
            t0 = time.perf_counter()
            images = apply_data(cms, protected, train.labels)
            cm_seconds = time.perf_counter() - t0
            attacker = make_attacker(cfg, cell.victim, cell.seed, dev)
            groups = partial_groups(cfg, cell.method, train, test)
            t0 = time.perf_counter()
            res = attacker.run(train.with_images(images), test, groups=groups,
                               on_epoch=lambda r: log(f"  {cell.id} epoch {r['epoch']}: test {r['test_acc']:.3f} "
                                                      f"train {r['train_acc']:.3f}"),
                               batch_transforms=batch_transforms(cms) or None)
            row = {
                "cell": cell.id, "method": cell.method, "victim": cell.victim, "countermeasure": cell.countermeasure,
                "seed": cell.seed, "final_acc": res["final_acc"], "peak_acc": res["peak_acc"],
                "peak_epoch": res["peak_epoch"], "chance": res["chance"],
                "countermeasures": [c.describe() for c in cms], "countermeasure_seconds": round(cm_seconds, 2),
                "train_seconds": round(time.perf_counter() - t0, 1), "victim_config": attacker.config(),
                **({"groups": {g: group_summary(res["history"], g) for g in groups}} if groups else {}),
                "n_train": len(train), "n_test": len(test), "image_size": int(train.images.shape[-1]),
                "device": device_name(dev), "finished_at": now_iso(), "versions": versions(),
                "history": res["history"],
            }
            append_result(out, row)
            ran.append(cell.id)
            log(f"done {cell.id}: final {row['final_acc']:.3f} peak {row['peak_acc']:.3f} (epoch {row['peak_epoch']})")
            write_report(cfg, out)
        if cfg.get("samples", True):
            try:
                write_samples(cfg, out, train)
            except Exception as exc:  # a figure must never lose a finished cell
                log(f"samples.png not written: {exc}")
    write_report(cfg, out)
    pending = [c.id for c in cells if c.id not in done and c.id not in ran]
    return {"ran": ran, "skipped": skipped, "pending": pending}


# ---------------------------------------------------------------- report

def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def aggregate(rows: list[dict]) -> dict:
    peaks, finals = [r["peak_acc"] for r in rows], [r["final_acc"] for r in rows]
    return {"n": len(rows), "peak": statistics.mean(peaks), "final": statistics.mean(finals),
            "peak_min": min(peaks), "peak_max": max(peaks), "chance": rows[0]["chance"]}


def fmt_cell(agg: dict | None) -> str:
    if agg is None:
        return "-"
    spread = f" [{pct(agg['peak_min'])}-{pct(agg['peak_max'])}]" if agg["n"] > 1 else ""
    return f"{pct(agg['peak'])} ({pct(agg['final'])}){spread} n={agg['n']}"


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
               "| method | PSNR dB | SSIM | LPIPS | max L-inf /255 | fit s | perturb s | total s | device | notes |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        for m in method_order:
            rec = records.get(m)
            if not rec:
                continue
            md.append(f"| {m} | {rec['psnr_mean'] if rec['psnr_mean'] is not None else '-'} | "
                      f"{rec['ssim_mean'] if rec['ssim_mean'] is not None else '-'} | skipped | {rec['linf_max_255']} | "
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
    for r in rows:
        md.append(f"| {r['method']} | {r['victim']} | {r['countermeasure']} | {r['seed']} | {pct(r['peak_acc'])} | "
                  f"{r['peak_epoch']} | {pct(r['final_acc'])} | {r['train_seconds']} | {r.get('device', '-')} | "
                  f"{r['finished_at']} |")
    md.append("")
    text = "\n".join(md)
    (out / "table.md").write_text(text)
    if cfg.get("table"):
        from segue.attack_table import write_attack_table

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


# ---------------------------------------------------------------- CLI

def cmd_benchmark(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.output:
        cfg["output"] = args.output
    out = Path(cfg["output"])
    if args.list:
        done = {r["cell"] for r in read_results(out)}
        for cell in select(cells_of(cfg), args.only):
            print(f"{'done   ' if cell.id in done else 'pending'} {cell.id}")
        return 0
    if args.report_only:
        print(write_report(cfg, out))
        return 0
    summary = run_benchmark(cfg, only=args.only, max_cells=args.max_cells, deadline=parse_deadline(args.deadline),
                            wait_while_exists=args.wait_while_exists, device=args.device)
    print(json.dumps({"output": str(out), **{k: len(v) for k, v in summary.items()}, "ran": summary["ran"]}))
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``segue benchmark`` on the CLI's subparsers."""
    b = subparsers.add_parser("benchmark", help="grid of noise methods x victims x countermeasures x seeds (resumable)")
    b.add_argument("config", help="YAML/JSON grid config (see benchmarks/grids/)")
    b.add_argument("-o", "--output", help="results folder (default: the config's 'output')")
    b.add_argument("--only", action="append", help="run only cells whose id 'method|victim|countermeasure|seed' "
                                                   "matches one of these globs (comma-separated, repeatable)")
    b.add_argument("--max-cells", type=int, help="stop after running this many cells")
    b.add_argument("--deadline", help="HH:MM (UTC, the next such time) or ISO time after which no new cell starts")
    b.add_argument("--wait-while-exists", metavar="FILE", help="before each cell, wait while FILE exists (a CPU lock)")
    b.add_argument("--list", action="store_true", help="list the cells and whether each is done, run nothing")
    b.add_argument("--report-only", action="store_true", help="rewrite table.md and curves.png from results.jsonl")
    b.add_argument("--device", help="override the config's device (auto|cpu|cuda)")
    b.set_defaults(func=cmd_benchmark)
    return b
