"""The local engine: lanes of threads, each taking one batch from decoding to writing (``segue protect``)."""

from __future__ import annotations

import ctypes
import gc
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from segue.faces import FaceDetector
from segue.generator import Generator
from segue.imageio import BadImage, Photo, write_atomic
from segue.protect.jobs import Job, ProtectOptions, load_job, prepare_run
from segue.protect.protector import Protector
from segue.protect.report import build_report, report_error


def settle_process() -> None:
    """Settings for a process that protects a folder and exits (``segue protect`` calls this; the
    Python API leaves its caller's process alone):

    - ``gc.freeze()``: what is alive now (torch, the modules, the generator) lives until exit anyway;
      frozen, no collection walks it again, the interpreter's shutdown included (0.6 s -> 0.2 s).
    - glibc keeps freed blocks of up to 32 MiB for reuse (``mallopt``): by default it hands each
      batch's tensors back to the kernel and takes them again as fresh, zeroed pages, about a
      million page faults per 1300 photos (a tenth of the run's CPU time).
    """
    gc.freeze()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks below it come from (and return to) the heap
            libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: free heap top kept up to 1 GiB
        except (OSError, AttributeError):  # another C library (musl): its defaults
            pass


def finish_and_write(protector: Protector, job: Job, photo: Photo, out: np.ndarray | None, boxes) -> dict:
    """Encode and atomically write one output (with its input's permissions); a failure here is that
    file's error row, not the run's."""
    try:
        data, row = protector.finish(job, photo, out, boxes)
        write_atomic(data, job.dst, like=job.src)
        return row
    except BadImage as exc:  # refused by the L-inf check
        return {"input": job.rel, "status": "error", "error": str(exc)}
    except Exception as exc:
        return {"input": job.rel, "status": "error", "error": f"cannot write output: {type(exc).__name__}: {exc}".splitlines()[0]}


def protect_batch(protector: Protector, batch: list[Job], stop: threading.Event | None = None,
                  torch_threads: int | None = None) -> tuple[list[dict], list[tuple[str, str]]]:
    """One batch from start to end: decode, protect, encode, check and write each file. Returns the
    report rows and the (input, reason) of the files that could not be read; stops between files
    once ``stop`` is set. ``torch_threads``: this thread's torch threads (it runs next to others)."""
    if torch_threads and torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)  # this thread's own (OpenMP threads are per calling thread)
    loaded = [load_job(job, protector.opts) for job in batch]
    unreadable = [(job.rel, error) for job, _, error in loaded if error is not None]
    good = [(job, photo) for job, photo, _ in loaded if photo is not None]
    rows = []
    if good and not (stop and stop.is_set()):
        for (job, photo), (out, boxes) in zip(good, protector.perturb(good)):
            if stop and stop.is_set():
                break
            rows.append(finish_and_write(protector, job, photo, out, boxes))
    return rows, unreadable


def protect_folder(generator: Generator, in_dir: str | Path, out_dir: str | Path, opts: ProtectOptions | None = None,
                   progress: bool = True, detector: FaceDetector | None = None) -> dict:
    """Protect every image under ``in_dir`` into ``out_dir``; returns (and writes) the report.

    Labels: one per subfolder, the files directly in ``in_dir`` one more (a flat folder: 0).
    ``generator`` may also be a :class:`segue.protect.cloaker.Cloaker` (``segue protect --cloak``),
    which has a generator's call; ``report.json`` then records its settings under ``protection``.

    ``opts.workers`` threads each take one batch at a time through :func:`protect_batch`, with
    an equal share of torch's threads (on 2 cores: one each). Whole batches side by side keep
    every core busy with no hand-offs: a generator spread over all cores next to decoding and
    encoding threads waits at each layer for the core those took. Ctrl-C finishes the files
    being written, writes the report (``interrupted: true``) and stops; a rerun skips what is done.
    """
    opts = opts or ProtectOptions()
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    todo, done, errors = prepare_run(in_dir, out_dir, opts)
    protector = Protector(generator, opts, detector)
    results: list[dict] = []
    t0 = time.perf_counter()
    batches = [todo[i : i + opts.batch_size] for i in range(0, len(todo), opts.batch_size)]
    lanes = max(1, min(opts.workers, len(batches)))
    threads_before = torch.get_num_threads()
    stop = threading.Event()
    bar = tqdm(total=len(todo), desc="protect", unit="img", disable=not progress, file=sys.stderr)
    pool = ThreadPoolExecutor(max_workers=lanes)

    collected: set = set()

    def collect(future) -> None:
        collected.add(future)
        rows, unreadable = future.result()
        for rel, reason in unreadable:
            report_error(errors, rel, reason)
        results.extend(rows)
        bar.update(len(rows) + len(unreadable))

    interrupted = False
    futures = [pool.submit(protect_batch, protector, b, stop, max(1, threads_before // lanes)) for b in batches]
    try:
        for future in as_completed(futures):
            collect(future)
    except KeyboardInterrupt:
        interrupted = True
        stop.set()  # the batches being protected end after the file each is writing, the rest are dropped
        for future in futures:
            if future not in collected and not future.cancel():
                try:
                    collect(future)
                except Exception:
                    pass
    finally:
        stop.set()  # on any error too: the other lanes stop after their current file
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads_before)  # the default for threads started later, as it was
        bar.close()
    report = build_report(in_dir, out_dir, protector.work_size, results, errors, done, time.perf_counter() - t0,
                          engine="local", interrupted=interrupted,
                          protection=generator.describe() if hasattr(generator, "describe") else None)
    if interrupted:
        raise KeyboardInterrupt
    return report
