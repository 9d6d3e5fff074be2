"""Running a grid: each pending cell = protected set -> countermeasures -> attacker -> one results line."""

from __future__ import annotations

import fnmatch
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import torch

from segue.benchmark.config import Cell, cells_of, load_data, partial_groups
from segue.benchmark.report import write_report, write_samples
from segue.benchmark.results import append_result, group_summary, read_results
from segue.benchmark.sets import ProtectedSets
from segue.runtime import device_name, now_iso

GITIGNORE = ".cache/\nsamples.png\n"


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

def parse_deadline(text: str | None, now: datetime | None = None) -> datetime | None:
    """``HH:MM`` (UTC, the next such time) or an ISO timestamp; no new cell starts after it.

    The next such time, not today's: "00:10" given at 22:52 means tonight, and read as today
    it had already passed, so the run skipped every cell. A run started after its deadline therefore
    goes on until the same time the next day: give an ISO time to stop a restarted run.
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


def measure_visibility(cfg: dict, methods: list[str] | None = None, device: str | None = None, log=None) -> dict:
    """Record the visibility medians of each method's protected training set (``methods``: these labels,
    default every method that is not a partial one) in ``methods.json``, generating the sets not cached,
    and rewrite the report: the attack table's visibility column without training a victim again."""
    from segue.runtime import resolve_device

    log = log or (lambda msg: print(f"segue benchmark: {msg}", file=sys.stderr, flush=True))
    out = Path(cfg["output"])
    labels = methods or [m for m, spec in cfg["methods"].items() if "partial_of" not in spec]
    train, _ = load_data(cfg)
    sets = ProtectedSets(cfg, out, train, resolve_device(device or cfg.get("device", "auto")), now_iso(), log)
    measured = {m: sets.measure(m) for m in labels}
    write_report(cfg, out)
    return {m: {k: r.get(k) for k in ("haarpsi_median", "delta_e_p95_median", "psnr_mean")} for m, r in measured.items()}

