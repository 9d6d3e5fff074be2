"""Protected training sets: generated once per method, cached outside the repository."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from segue.benchmark.config import cache_dir, method_kwargs, protected_classes, protected_mask
from segue.benchmark.results import read_methods
from segue.runtime import device_name, now_iso, write_json_atomic

LPIPS_NOTE = "skipped (no offline LPIPS backbone weights)"


def image_quality(clean: torch.Tensor, protected: torch.Tensor) -> dict:
    """Mean PSNR (dB, finite images only) and SSIM (kornia, 11x11 window), max L-inf in /255 steps
    (:func:`segue.quality.set_quality`, the metrics ``segue protect`` reports too)."""
    from segue.quality import set_quality

    return {**set_quality(clean, protected), "lpips": LPIPS_NOTE}


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

    def measure(self, label: str) -> dict:
        """Add the visibility medians (HaarPSI, CIEDE2000 p95) to ``label``'s record if it lacks them,
        regenerating its set if it is not cached; the record's other fields (its timing) are kept."""
        records = read_methods(self.out)
        if label in records and records[label].get("haarpsi_median") is not None:
            return records[label]
        old = records.get(label)
        protected = self._generate(label)
        records = read_methods(self.out)
        quality = image_quality(self.train.images, protected)
        records[label] = {**(old or records[label]), **quality, "quality_run_id": self.run_id}
        write_json_atomic(self.out / "methods.json", records)
        self.log(f"  '{label}': HaarPSI {quality['haarpsi_median']}, CIEDE2000 p95 {quality['delta_e_p95_median']}")
        return records[label]

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
