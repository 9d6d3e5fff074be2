"""The frontier: how much each protection stops pretrained recognisers, against how visible it is.

    python benchmarks/cloak_frontier.py --data orl20 [--protections clean default noise cloak perceptual ...]
    python benchmarks/cloak_frontier.py --data celeba234-test --protections ... --name NAME

Each protection perturbs the training photos of every person (in memory, 112 px, 8-bit as a PNG
holds them); per photo its visibility (segue.visibility: HaarPSI, CIEDE2000 p95 between the
3x3-blurred images) is measured against the clean photo. Attackers fit on the protected training
photos and are scored on the clean test photos: dlib's 128-d embedding + logistic regression
(dlib-linear) and 1-NN (dlib-knn), FaceNet (OpenCV's frozen graph, not the PyTorch port the cloaks
attack) + logistic regression; "everyone" (all people protected) and "alone" (each person
protected in turn among the others' clean photos, mean over people), and both again after the
attacker re-encodes the protected photos as JPEG q75 and halves them. dlib is never used to make
or choose anything.

Data: ``orl20`` (ORL people 0-19, 8 train / 2 test photos: where settings are chosen),
``celeba234-test`` (the 35 CelebA234 test people, 5 test photos each), ``webface10`` (16 train
photos a person, the 20 test photos). Writes benchmarks/results/NAME.{json,md}.
"""

from __future__ import annotations

import argparse
import importlib
import io
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from _common import write_results
from segue.attackers.cache import EmbeddingCache
from segue.attackers.embedding import EmbeddingAttacker
from segue.data import FaceSet, load_celeba234, load_image_folder, load_orl, webface10_root
from segue.methods.base import quantise
from segue.visibility import visibility

ATTACKERS = {"dlib-linear": ("dlib-crop", "linear"), "dlib-knn": ("dlib-crop", "knn"),
             "facenet-linear": ("facenet", "linear")}


def first_per_person(data: FaceSet, n: int | None) -> FaceSet:
    """Each person's first ``n`` photos (all if None)."""
    if not n:
        return data
    return data.subset([i for c in range(len(data.classes)) for i in (data.labels == c).nonzero().flatten().tolist()[:n]])


def people_from(data: FaceSet, first: int) -> FaceSet:
    """The photos of people ``first``, ``first + 1``, ... of ``data``, labelled from 0."""
    keep = (data.labels >= first).nonzero().flatten().tolist()
    sub = data.subset(keep)
    return FaceSet(sub.images, sub.labels - first, list(data.classes[first:]), list(sub.paths))


def load_data(name: str, train_per_person: int | None = None, size: int = 112) -> tuple[FaceSet, FaceSet]:
    if name == "orl20":  # ORL people 0-19: where the strengths' settings were chosen
        return load_orl(size=size, train_per_class=8, num_classes=20)
    if name == "orl20-39":  # ORL people 20-39: nothing was chosen on them
        train, test = load_orl(size=size, train_per_class=8)
        return people_from(train, 20), people_from(test, 20)
    if name == "celeba234-test":
        train, test = load_celeba234("test", size=size)
        return first_per_person(train, train_per_person), test
    if name == "webface10":
        root = webface10_root()
        train = load_image_folder(root / "train_clean", size)
        return first_per_person(train, train_per_person or 16), load_image_folder(root / "test_clean", size)
    raise ValueError(f"unknown data {name!r}")


def at_work_size(fn, size: int):
    """``fn`` as ``segue protect`` runs a protection at a work size: each photo resized (8-bit, antialiased)
    to ``size``, protected there, and its delta resized back onto the photo
    (:func:`segue.protect.cloaker.delta_at_side`)."""
    from segue.protect.cloaker import delta_at_side

    def run(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return fn(x, y) if x.shape[-2:] == (size, size) else quantise(x, delta_at_side(fn, x, y, size), 1.0)
    return run


#: The perceptual cloak and the experiments built on it, by name prefix: (module, class, the option a
#: first unnamed part sets): ``perceptual:chroma=0.3``, ``layer:repeat_1,chroma=0.3``, ``tangent:...``.
PERCEPTUAL = {"perceptual": ("segue.methods.perceptual_cloak", "PerceptualCloak", None),
              "layer": ("experiments.layer_cloak", "LayerCloak", "layer"),  # the objective on FaceNet's map after LAYER
              "tangent": ("experiments.tangent_cloak", "TangentCloak", None),  # steps along HaarPSI's level set
              "highpass": ("experiments.highpass_cloak", "HighPassCloak", None),  # high-passed steps
              "sgm": ("experiments.sgm_cloak", "SGMCloak", None),  # FaceNet's backward pass reshaped (SGM, LinBP)
              "shading": ("experiments.shading_cloak", "ShadingCloak", None),  # a third bar term: mid-scale shading
              "relight": ("experiments.relight_cloak", "RelightCloak", None)}  # steps as smooth gain fields


def option(value: str) -> bool | int | float | str:
    """A ``key=value`` option's value: true / false, an int, a float, or the text itself."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def protection(name: str, train: FaceSet, seed: int = 0):
    """name -> callable(images, labels) -> protected 8-bit images, and a one-line description; ``seed``:
    the cloaks' (their input-diversity draws).

    ``NAME@SIZE`` runs protection NAME at work size SIZE and resizes its delta onto the photo
    (:func:`at_work_size`); without it every protection but the generators works at the photos' size."""
    if "@" in name:
        base, size = name.rsplit("@", 1)
        fn, desc = protection(base, train, seed)
        return at_work_size(fn, int(size)), f"{desc}, at {size} px and resized onto the photo"
    if name == "default":
        from segue.checkpoint import load_generator
        from segue.protect import protect_images

        g = load_generator("default")[0]
        return (lambda x, y: protect_images(g, x, y)), "the default generator (8/255)"
    if name == "noise":
        def noise(x, y):
            gen = torch.Generator().manual_seed(0)
            return quantise(x, (torch.rand(x.shape, generator=gen) * 2 - 1) * 8 / 255, 8 / 255)
        return noise, "uniform noise in +-8/255 (the generator's PSNR)"
    if name == "cloak":
        from segue.protect.cloaker import create_cloak

        c = create_cloak(seed=seed)
        return c.perturb, "segue protect --cloak (16/255, L2 steps, PSNR >= 30 dB)"
    if name.startswith("strength:"):
        from segue.protect.presets import create_preset

        c = create_preset(name.split(":", 1)[1], seed=seed)
        return c.perturb, f"segue protect --strength {name.split(':', 1)[1]}"
    if name.startswith("fawkes:"):  # fawkes:RHO - experiments/fawkes_style.py, decoys: CelebA234 validation people
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from experiments.fawkes_style import FawkesStyleCloak
        from segue.data import celeba234_photos

        rho = float(name.split(":", 1)[1])
        c = FawkesStyleCloak(rho=rho, decoy_pool=celeba234_photos("val")).fit(train, train.labels)
        return c.perturb, f"Fawkes-style: toward the farthest CelebA234 validation person on FaceNet, DSSIM <= {rho}"
    if name.split(":", 1)[0] in PERCEPTUAL:  # PREFIX[:[FIRST,]key=value,...]
        module, cls_name, first = PERCEPTUAL[name.split(":", 1)[0]]
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # experiments/ lives in the repository
        cls = getattr(importlib.import_module(module), cls_name)
        parts = name.split(":", 1)[1].split(",") if ":" in name else []
        kw = {first: parts.pop(0)} if first else {}
        kw.update((k, option(v)) for k, v in (part.split("=") for part in parts))
        c = cls(**{"seed": seed, **kw}).load()
        return c.perturb, f"{cls.__name__} {kw}"
    raise ValueError(f"unknown protection {name!r}")


def reencode(images: torch.Tensor) -> torch.Tensor:
    """What an attacker may do to downloaded photos first: JPEG q75, then half the size."""
    out = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(buf, "JPEG", quality=75)
        out.append(torch.from_numpy(np.asarray(Image.open(buf))).permute(2, 0, 1).float() / 255)
    x = torch.stack(out)
    return F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def scores(emb: dict, train: FaceSet, test: FaceSet, protected_key: str) -> dict:
    """Accuracy on the clean test photos: everyone protected, and each person alone."""
    out = {}
    ytr, yte = train.labels.numpy(), test.labels.numpy()
    for att, (extractor, clf) in ATTACKERS.items():
        a = EmbeddingAttacker(extractor=extractor, classifier=clf, cache=True)
        prot, clean, te = emb[extractor][protected_key], emb[extractor]["clean"], emb[extractor]["test"]
        pred, _ = a.fit_predict(prot, ytr, te)
        alone = []
        for p in range(len(train.classes)):
            mix = np.where((ytr == p)[:, None], prot, clean)
            pred_p, _ = a.fit_predict(mix, ytr, te[yte == p])
            alone.append(float((pred_p == p).mean()))
        out[att] = {"everyone": round(float((pred == yte).mean()), 4), "alone": round(statistics.mean(alone), 4),
                    "alone_above_25": sum(v > 0.25 for v in alone)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="orl20", choices=["orl20", "orl20-39", "celeba234-test", "webface10"])
    ap.add_argument("--protections", nargs="+", default=["clean", "default", "noise", "cloak"])
    ap.add_argument("--train-per-person", type=int, help="each person's first N training photos (all; WebFace10: 16)")
    ap.add_argument("--size", type=int, default=112, help="photo side in px (112; WebFace10's native size is 224)")
    ap.add_argument("--scratch", action="store_true",
                    help="also a ResNet18 trained from scratch on each row's photos (the paper's victim, 15 epochs; peak %%)")
    ap.add_argument("--seed", type=int, default=0, help="the cloaks' seed (their input-diversity draws; 0)")
    ap.add_argument("--name", default=None)
    args = ap.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    train, test = load_data(args.data, args.train_per_person, args.size)
    extractors = sorted({e for e, _ in ATTACKERS.values()})
    caches = {e: EmbeddingCache(e) for e in extractors}
    emb = {e: {"clean": caches[e].embed(train.images), "test": caches[e].embed(test.images)} for e in extractors}
    rows = {}
    for name in args.protections:
        t0 = time.perf_counter()
        if name == "clean":
            images, desc = train.images, "clean photos (reference)"
        else:
            fn, desc = protection(name, train, args.seed)
            images = fn(train.images, train.labels)
        seconds = (time.perf_counter() - t0) / len(train.images)
        vis = visibility(train.images, images) if name != "clean" else []
        for e in extractors:
            emb[e][name] = caches[e].embed(images)
            emb[e][name + "+jpeg75+half"] = caches[e].embed(reencode(images))
        row = {"description": desc, "seconds_per_photo": round(seconds, 4),
               "haarpsi_median": round(statistics.median(v["haarpsi"] for v in vis), 4) if vis else 1.0,
               "delta_e_p95_median": round(statistics.median(v["delta_e_p95"] for v in vis), 3) if vis else 0.0,
               "shading_p95_median": round(statistics.median(v["shading_p95"] for v in vis), 3) if vis else 0.0,
               "linf_max": int(((images - train.images).abs().max() * 255).round()),
               "attacks": scores(emb, train, test, name),
               "attacks_after_jpeg75_half": scores(emb, train, test, name + "+jpeg75+half")}
        if args.scratch:  # everyone protected only: a victim a person at a time is a run a person
            from segue.attackers import create_attacker

            result = create_attacker("scratch", seed=0).run(train.with_images(images), test)
            row["scratch_peak"], row["scratch_final"] = round(result["peak_acc"], 4), round(result["final_acc"], 4)
        rows[name] = row
        print(name, row, file=sys.stderr, flush=True)
    name = args.name or f"cloak_frontier_{args.data}"
    lines = [f"# Visibility against protection ({args.data})", "",
             f"`python benchmarks/cloak_frontier.py --data {args.data} --protections {' '.join(args.protections)}"
             f"{f' --train-per-person {args.train_per_person}' if args.train_per_person else ''}"
             f"{f' --size {args.size}' if args.size != 112 else ''}{' --scratch' if args.scratch else ''}"
             f"{' --name ' + args.name if args.name else ''}`", "",
             f"{len(train.classes)} people, {len(train.images)} training / {len(test.images)} clean test photos, {args.size} px, "
             "2-core CPU. "
             "Accuracy % on the clean test photos of attackers fitted on the protected training photos: everyone protected / "
             "each person alone among clean others (mean; people above 25 % alone in brackets); after = the attacker "
             "re-encodes the protected photos as JPEG q75 and halves them first. Visibility: median per photo "
             "(HaarPSI 1 = identical; CIEDE2000 p95 and shading p95, the mid-scale lightness change in L* that is "
             "reported and not budgeted, 0 = identical).", "",
             "| protection | HaarPSI | CIEDE2000 p95 | shading p95 | L-inf | dlib-linear | dlib-knn | FaceNet-linear | dlib-linear after "
             "| dlib-knn after | s/photo |" + (" from scratch, peak / final |" if args.scratch else ""),
             "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if args.scratch else "")]

    def cell(r: dict) -> str:
        return f"{100 * r['everyone']:.1f} / {100 * r['alone']:.1f} ({r['alone_above_25']})"

    for n, r in rows.items():
        a, b = r["attacks"], r["attacks_after_jpeg75_half"]
        lines.append(f"| {n} | {r['haarpsi_median']} | {r['delta_e_p95_median']} | {r['shading_p95_median']} | {r['linf_max']} "
                     f"| {cell(a['dlib-linear'])} "
                     f"| {cell(a['dlib-knn'])} | {cell(a['facenet-linear'])} | {cell(b['dlib-linear'])} | {cell(b['dlib-knn'])} "
                     f"| {r['seconds_per_photo']} |"
                     + (f" {100 * r['scratch_peak']:.1f} / {100 * r['scratch_final']:.1f} |" if args.scratch else ""))
    lines += ["", "Rows: " + "; ".join(f"`{n}`: {r['description']}" for n, r in rows.items())]
    write_results(name, {"data": args.data, "size": args.size, "protections": args.protections, "seed": args.seed,
                         "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
