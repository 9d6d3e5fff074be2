"""CPU protocol on WebFace10 at 112 px: clean-trained vs Segue-protected ResNet18 victims.

    python benchmarks/cpu_protocol.py [--weights W] [--seeds 0 1 2] [--epochs 15]

Protects the WebFace10 training set with the generator (default: the shipped one), trains a
ResNet18 victim per seed on clean and on protected photos, and tests it on the clean test
photos after every epoch. Writes benchmarks/results/cpu_protocol.{json,md}.
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import compare_victims, pct, summary, write_results
from segue.checkpoint import load_generator
from segue.data import load_image_folder, webface10_root
from segue.imageio import to_uint8
from segue.protect import protect_images, quality_metrics
from segue.quality import set_quality


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--name", default="cpu_protocol")
    args = ap.parse_args()
    device = torch.device("cpu")
    generator, prov = load_generator(args.weights, device)
    root = webface10_root()
    train = load_image_folder(root / "train_clean", args.size)
    test = load_image_folder(root / "test_clean", args.size, classes=train.classes)
    t0 = time.perf_counter()
    protected = protect_images(generator, train.images, train.labels)
    protect_s = time.perf_counter() - t0
    q = [quality_metrics(to_uint8(a), to_uint8(b)) for a, b in zip(train.images, protected)]
    runs = compare_victims(train, protected, test, args.epochs, args.seeds, device)
    s_clean, s_prot = summary(runs["clean"]), summary(runs["protected"])
    psnr = sum(r["psnr"] for r in q) / len(q)
    ssim = sum(r["ssim"] for r in q) / len(q)
    seen = set_quality(train.images, protected)  # the visibility every written file is held to
    payload = {
        "protocol": f"WebFace10 {args.size}px, ResNet18 victim, Adam 5e-4 cosine, batch 16, no augmentation, {args.epochs} epochs",
        "generator": {"weights": args.weights or "shipped", "train_seconds": prov.get("train_seconds"),
                      "epochs_run": prov.get("epochs_run"), "final_protected_loss": prov.get("final_protected_loss"),
                      "train_config": prov.get("train_config")},
        "protect_seconds_in_memory": round(protect_s, 2), "psnr": round(psnr, 2), "ssim": round(ssim, 4),
        "linf_max_255": max(r["linf"] for r in q),
        "haarpsi_median": seen["haarpsi_median"], "delta_e_p95_median": seen["delta_e_p95_median"],
        "clean": s_clean, "protected": s_prot, "runs": runs,
    }
    md = [f"## CPU protocol: WebFace10 at {args.size} px, ResNet18 victim, {args.epochs} epochs, seeds {args.seeds}", "",
          "| victim trained on | final acc (mean, min-max) | peak acc (mean, min-max) |", "|---|---|---|"]
    for label, s in (("clean photos", s_clean), ("Segue-protected photos", s_prot)):
        f, p = s["final_acc"], s["peak_acc"]
        md.append(f"| {label} | {pct(f['mean'])} ({pct(f['min'])}-{pct(f['max'])}) | {pct(p['mean'])} ({pct(p['min'])}-{pct(p['max'])}) |")
    md += ["", f"Protected training set: PSNR {psnr:.2f} dB, SSIM {ssim:.4f}, max L-inf {payload['linf_max_255']}/255, "
           f"visibility HaarPSI {seen['haarpsi_median']} / CIEDE2000 p95 {seen['delta_e_p95_median']} (median per photo). "
           f"Generator training: {prov.get('train_seconds')} s ({prov.get('epochs_run')} epochs, "
           f"on {prov.get('device', 'a device not recorded in its provenance')}).", ""]
    write_results(args.name, payload, "\n".join(md))


if __name__ == "__main__":
    main()
