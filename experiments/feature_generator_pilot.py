"""Pilot: can a generator learn the per-image feature cloak? G trained on the feature objective alone.

    python experiments/feature_generator_pilot.py [--people 20] [--max-seconds 1200] [--eps 16] [--psnr-floor 30]
    python experiments/feature_generator_pilot.py --data celeba234 --people 164 ...   # hundreds of codes
    python experiments/feature_generator_pilot.py ... --distill DELTAS.safetensors --distill-loss cos   # the cloak's deltas as targets

The cloak pilots (cloak_pilot.py) add a feature term to Alg. 1 and leave even the white-box
FaceNet at 100 % after 12 epochs (about 60 generator steps on 160 photos). Per-image PGD with the
same objective (:class:`segue.methods.feature_cloak.FeatureCloak`) fools dlib. This pilot asks
the question between the two: with the surrogate classifier taken out and every step spent on the
feature objective (the same extractors, decoys and input diversity as FeatureCloak), how close does
one forward pass of G get to per-image PGD?

G starts from the shipped ``default`` weights at L-inf ``eps`` with G's own PSNR floor
(GeneratorConfig.psnr_floor) and trains with Adam for ``--max-seconds`` on the training photos
of ORL people 0..people-1 (side label = person; decoy of person c: the clean centroid of c+1, as
in the PGD pilot). Measured twice: on those photos (G protects the people it was trained on) and
on ORL people ``people``..2*people-1, never seen by G, side codes 0..people-1 (G protects new
people). ``--data celeba234``: G trains on the CelebA234 training people and the new people are
the validation people (codes 0..K-1). dlib never enters training. Writes benchmarks/results/NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from _common import write_results
from feature_transfer_pilot import ATTACKERS, VariantFeatureCloak, partial_md, partial_rows, people
from segue.attackers import create_attacker
from segue.checkpoint import load_generator, save_generator
from segue.data import FaceSet, load_celeba234, load_orl
from segue.generator import Generator, GeneratorConfig
from segue.quality import rms_cap, set_quality
from segue.training import init_state


def measure(generator: Generator, train: FaceSet, test: FaceSet) -> dict:
    """Attackers fitted on G's protected training photos, scored on the clean test photos."""
    with torch.no_grad():
        protected = (generator.protect(train.images, train.labels) * 255).round() / 255
    rows = {name: {"clean": create_attacker(name).run(train, test)["final_acc"],
                   "protected": create_attacker(name).run(train.with_images(protected), test)["final_acc"]}
            for name in ATTACKERS}
    return {"quality": set_quality(train.images, protected), "attackers": rows,
            "partial": partial_rows(train, test, protected)}


class _Stop(Exception):
    """Raised by a forward hook to end a forward pass at the layer it hooks."""


def mid_features(model: torch.nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """FaceNet's feature map after ``layer`` (e.g. ``mixed_6a``), the forward pass cut there."""
    out = {}

    def hook(module, args, output):
        out["f"] = output
        raise _Stop

    handle = getattr(model.net, layer).register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return out["f"].flatten(1)


def cloak_deltas(path: str, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The shipped cloak's deltas (``segue protect --cloak``, seed ``seed``) of ``images``, in 1/255
    steps, computed once and kept at ``path`` (.safetensors; checked against the photos' pixels)."""
    import hashlib
    from pathlib import Path

    from safetensors.torch import load_file, save_file

    from segue.protect.cloaker import create_cloak

    digest = torch.tensor(list(hashlib.sha256((images * 255).round().to(torch.uint8).numpy().tobytes()).digest()))
    if Path(path).exists():
        saved = load_file(path)
        if not torch.equal(saved["photos_sha256"], digest):
            raise ValueError(f"{path} holds the deltas of other photos")
        return saved["delta_255"].float() / 255
    t0 = time.perf_counter()
    delta_255 = ((create_cloak("cpu", seed).perturb(images, torch.zeros(len(images), dtype=torch.long)) - images) * 255).round()
    print(f"cloaked {len(images)} photos in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    save_file({"delta_255": delta_255.to(torch.int8), "photos_sha256": digest}, path)
    return delta_255 / 255


def load_sets(data: str, count: int, new_people: str = "val") -> tuple[FaceSet, FaceSet, FaceSet, FaceSet]:
    """G's training people (training and test photos) and new people (the same), at 112 px."""
    if data == "orl":
        orl_train, orl_test = load_orl(size=112, train_per_class=8)
        return (people(orl_train, 0, count), people(orl_test, 0, count),
                people(orl_train, count, count), people(orl_test, count, count))
    train, test = load_celeba234("train", 112, num_classes=count)
    new_train, new_test = load_celeba234(new_people, 112)
    return train, test, new_train, new_test


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--data", choices=["orl", "celeba234"], default="orl",
                    help="orl: train on people 0..P-1, new people P..2P-1; celeba234: train on the first P train "
                         "people, new people = the validation people (the test people stay out of every choice)")
    ap.add_argument("--eps", type=float, default=16)
    ap.add_argument("--psnr-floor", type=float, default=30.0)
    ap.add_argument("--extractors", default="facenet-torch,celeba-cosface")
    ap.add_argument("--decoy", choices=["next", "none"], default="next",
                    help="none: G learns the away-only objective of `segue protect --cloak` (needs --away > 0)")
    ap.add_argument("--away", type=float, default=0.0, help="weight of 'away from the photo's own clean embedding'")
    ap.add_argument("--affine", action="store_true", help="affine input diversity, as the shipped cloak")
    ap.add_argument("--mid-layer", help="also push FaceNet's feature map after this layer (e.g. mixed_6a) away from "
                    "the clean photo's, on the undiversified photo (mid-layer features transfer across networks: LTP, "
                    "Salzmann et al. 2021)")
    ap.add_argument("--mid-weight", type=float, default=1.0)
    ap.add_argument("--distill", help="also pull G's delta toward the shipped cloak's per-photo deltas of the training "
                    "photos (computed once, kept at this .safetensors path): the PGD's transferable pattern as a target")
    ap.add_argument("--distill-weight", type=float, default=1.0,
                    help="weight of the distillation term (mse: in units of the PSNR floor's squared RMS)")
    ap.add_argument("--distill-loss", choices=["mse", "cos"], default="mse",
                    help="mse: G's delta regressed on the cloak's; cos: 1 - their cosine per photo (direction only: "
                         "G's own budget sets the size)")
    ap.add_argument("--objective-weight", type=float, default=1.0, help="weight of the feature objective (0: distil only)")
    ap.add_argument("--skip-seen", action="store_true", help="measure only the new people (saves ~15 min on celeba234)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-seconds", type=float, default=1200)
    ap.add_argument("--log-every", type=int, default=10, help="steps per history row")
    ap.add_argument("--name", default="feature_generator_pilot")
    ap.add_argument("--save", help="write G's weights here (.safetensors) after training")
    ap.add_argument("--load", help="G's weights to measure instead of training (--max-seconds ignored)")
    ap.add_argument("--init", help="G's weights to start training from (default: the shipped default generator)")
    ap.add_argument("--new-people", choices=["val", "test"], default="val",
                    help="celeba234: the new people G is measured on (test: only for a G already chosen on val)")
    args = ap.parse_args()
    torch.manual_seed(0)
    train, test, new_train, new_test = load_sets(args.data, args.people, args.new_people)
    cloak = VariantFeatureCloak(eps=args.eps / 255, extractors=args.extractors.split(","), decoy=args.decoy,
                                away=args.away, affine_diversity=args.affine).fit(train, train.labels)
    cfg = GeneratorConfig(eps=args.eps / 255, psnr_floor=args.psnr_floor, image_size=112)
    generator = Generator(cfg)
    generator.load_state_dict(init_state("default", cfg, load_generator))
    if args.load or args.init:
        generator, _ = load_generator(args.load or args.init, "cpu")
        args.max_seconds = 0 if args.load else args.max_seconds
    opt = torch.optim.Adam(generator.parameters(), lr=args.lr)
    with torch.no_grad():
        clean = [m(train.images) for m in cloak.models]
    target = cloak_deltas(args.distill, train.images) if args.distill else None
    history, losses, gaps, steps, t0 = [], [], [], 0, time.perf_counter()
    while time.perf_counter() - t0 < args.max_seconds:  # checked every step: one CelebA epoch outlasts the budget
        order = torch.randperm(len(train))
        for i in range(0, len(order) - args.batch + 1, args.batch):
            if time.perf_counter() - t0 >= args.max_seconds:
                break
            idx = order[i : i + args.batch]
            x, y = train.images[idx], train.labels[idx]
            protected = generator.protect(x, y)
            score = cloak.objective(cloak.step_input(protected), [c[idx] for c in clean], cloak.targets(y))
            if args.mid_layer:
                with torch.no_grad():
                    reference = mid_features(cloak.models[0], x, args.mid_layer)
                mid = F.cosine_similarity(mid_features(cloak.models[0], protected, args.mid_layer), reference).sum()
                score = score - args.mid_weight * mid
            feature = -score / (len(idx) * len(cloak.models))  # mean cosine to the decoy (minus away x own), negated
            loss = feature
            if target is not None:  # the feature objective is still what is logged; the loss mixes the two
                if args.distill_loss == "mse":
                    gap = ((protected - x) - target[idx]).pow(2).mean() / rms_cap(args.psnr_floor) ** 2
                else:
                    gap = 1 - F.cosine_similarity((protected - x).flatten(1), target[idx].flatten(1)).mean()
                loss = args.objective_weight * feature + args.distill_weight * gap
                gaps.append(gap.item())
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(-feature.item())
            steps += 1
            if steps % args.log_every == 0:
                history.append({"steps": steps, "objective": round(sum(losses) / len(losses), 4),
                                "seconds": round(time.perf_counter() - t0, 1)}
                               | ({f"distill_{args.distill_loss}": round(sum(gaps) / len(gaps), 4)} if gaps else {}))
                print(history[-1], file=sys.stderr, flush=True)
                losses, gaps = [], []
    generator.eval()
    if args.save:
        save_generator(generator, args.save, {"command": "python experiments/feature_generator_pilot.py " + " ".join(sys.argv[1:])})
    seen = None if args.skip_seen else measure(generator, train, test)
    unseen = measure(generator, new_train, new_test)
    payload = {"args": vars(args), "generator": cfg.to_dict(), "cloak": cloak.config(), "steps": steps,
               "history": history, "seen_people": seen, "unseen_people": unseen}
    md = [f"## Feature-only generator pilot: G on {args.data} ({len(train.classes)} people, new: "
          f"{len(new_train.classes)}), L-inf {args.eps:g}/255, "
          f"PSNR floor {args.psnr_floor:g} dB, {'+'.join(cloak.extractor_names)}", "",
          f"`python experiments/feature_generator_pilot.py {' '.join(sys.argv[1:])}` on a 2-core CPU: " + (
              f"{steps} Adam steps ({history[-1]['seconds']:.0f} s), the last {args.log_every} steps' mean objective "
              f"(cosine to the decoy - {args.away:g} x cosine to the clean photo"
              + (f" - {args.mid_weight:g} x {args.mid_layer} cosine" if args.mid_layer else "")
              + f") {history[-1]['objective']:.3f} "
              "(diversified photos)" + (
                  f"; loss {args.objective_weight:g} x that objective + {args.distill_weight:g} x "
                  + ("the mean squared difference to the shipped cloak's delta of each training photo (in units of "
                     "the PSNR floor's squared RMS)" if args.distill_loss == "mse" else
                     "(1 - cosine) between G's delta and the shipped cloak's delta of each training photo")
                  + f", last {history[-1]['distill_' + args.distill_loss]:.3f}" if args.distill else "")
              + "." if history else f"G loaded from {args.load}, not trained here."), "",
          "| attacker (fitted on protected training photos, scored on clean test photos) | "
          "people G trained on: clean | protected | new people: clean | protected |", "|---|---|---|---|---|"]
    pct = lambda row, key: "-" if row is None else f"{100 * row[key]:.1f} %"  # noqa: E731
    for name in unseen["attackers"]:
        a, b = None if seen is None else seen["attackers"][name], unseen["attackers"][name]
        box = "white-box" if name.startswith("facenet") and "facenet-torch" in cloak.extractor_names else "black-box"
        md.append(f"| {name} ({box}) | {pct(a, 'clean')} | {pct(a, 'protected')} | {pct(b, 'clean')} | "
                  f"{pct(b, 'protected')} |")
    quality = [] if seen is None else [f"trained-on people PSNR {seen['quality']['psnr_mean']} dB, "
                                       f"SSIM {seen['quality']['ssim_mean']}"]
    quality.append(f"new people PSNR {unseen['quality']['psnr_mean']} dB, SSIM {unseen['quality']['ssim_mean']}")
    md += ["", "Quality: " + "; ".join(quality) + ".", ""]
    if seen is not None:
        md += ["People G trained on. " + partial_md(seen["partial"])[0], *partial_md(seen["partial"])[1:], ""]
    md += ["New people. " + partial_md(unseen["partial"])[0], *partial_md(unseen["partial"])[1:]]
    write_results(args.name, payload, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
