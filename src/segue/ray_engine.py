"""Bulk protection on Ray Data: ``segue protect IN -o OUT --engine ray``.

read_binary_files(include_paths=True) -> map_batches(actor that loads the weights once) ->
each actor writes its outputs by relative path (atomically) and returns report rows. The
per-photo work is the local engine's :class:`segue.protect.Protector`, so both engines write
byte-identical files. Ray is an optional extra: ``pip install 'segue[ray]'``.

On a 2-CPU machine an actor pool that takes every CPU starves the read stage and the job
hangs, so one CPU is always left for reading: ``actors = max(1, cpus - 1)``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from segue.protect import Job, ProtectOptions, Protector, build_report, finish_and_write, load_job, prepare_run


class ProtectActor:
    """One Ray actor: the generator is loaded once, then batches of raw files stream through."""

    def __init__(self, weights: str | None, options: dict, device: str, jobs: dict[str, tuple[str, str, int | None, int]]):
        import torch

        from segue.checkpoint import load_protector

        torch.set_num_threads(1)  # one CPU per actor: Ray schedules the parallelism
        generator, side_info = load_protector(weights, device)
        self.opts = ProtectOptions(**options)
        self.opts.side_info = side_info
        self.protector = Protector(generator, self.opts)
        self.jobs = jobs

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, good = [], []
        for path, data in zip(batch["path"], batch["bytes"]):
            rel, dst, label, index = self.jobs[_local_path(path)]
            job, photo, error = load_job(Job(Path(_local_path(path)), Path(dst), rel, label, index), self.opts,
                                         bytes(data))
            if error is not None:
                rows.append({"input": rel, "status": "error", "error": error})
            else:
                good.append((job, photo))
        if good:
            for (job, photo), (out, boxes) in zip(good, self.protector.perturb(good)):
                rows.append(finish_and_write(self.protector, job, photo, out, boxes))
        return {"row": np.array([json.dumps(r) for r in rows], dtype=object)}


def _local_path(path: str) -> str:
    return str(Path(path.removeprefix("local://").removeprefix("file://")).resolve())


def protect_folder_ray(weights: str | Path | None, in_dir: str | Path, out_dir: str | Path,
                       opts: ProtectOptions | None = None, device: str = "cpu", num_cpus: int | None = None,
                       progress: bool = True) -> dict:
    """Protect ``in_dir`` into ``out_dir`` with Ray Data; same outputs and report as the local engine."""
    try:
        import ray
    except ImportError:
        raise ImportError("--engine ray needs Ray: pip install 'segue[ray]'") from None
    opts = opts or ProtectOptions()
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    todo, done, errors = prepare_run(in_dir, out_dir, opts)
    readable = []
    for job in todo:  # a file Ray cannot open would fail the whole dataset: report it here instead
        try:
            with open(job.src, "rb"):
                readable.append(job)
        except OSError as exc:
            errors.append({"input": job.rel, "error": f"cannot read the file: {exc.strerror or exc}"})
    options = {k: v for k, v in asdict(opts).items() if k != "side_info"}
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    t0 = time.perf_counter()
    rows: list[dict] = []
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        if readable:
            jobs = {str(j.src.resolve()): (j.rel, str(j.dst), j.label, j.index) for j in readable}
            ds = ray.data.read_binary_files([str(j.src.resolve()) for j in readable], include_paths=True)
            ds = ds.map_batches(
                ProtectActor, batch_size=opts.batch_size, batch_format="numpy",
                fn_constructor_kwargs={"weights": None if weights is None else str(weights), "options": options,
                                       "device": device, "jobs": jobs},
                concurrency=max(1, cpus - 1), num_cpus=1, num_gpus=1 if device.startswith("cuda") else 0,
            )
            rows = [json.loads(r["row"]) for r in ds.iter_rows()]
    finally:
        if started_here:
            ray.shutdown()
    return build_report(in_dir, out_dir, opts.work_size, rows, errors, done, time.perf_counter() - t0, engine="ray")
