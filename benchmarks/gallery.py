"""The gallery: what every shipped protection does to a face, at 100 % and 2x, with its numbers.

    python benchmarks/gallery.py [--protections default robust robust_rem low medium high visible]

Each photo goes through ``segue protect`` (PNG output, visibility measured on every file); each
tile shows original | protected | difference x10 (grey = unchanged) for every protection, once at
100 % and once at 2x (nearest neighbour: the pixels as written), with HaarPSI, CIEDE2000 mean / p95,
PSNR and L-inf under each row. Look at the tiles whenever a protection changes: the numbers are a
proxy for what you see there.

Photos: two ORL faces (the embedded data set) and one larger photo made from an ORL face (3x, on a
soft background: the face detector finds it and only the face is protected); two CelebA234
validation people's photos and two WebFace10 test photos. ORL tiles are committed under
``docs/gallery/``; CelebA234 and WebFace10 are research-only, so their tiles are written to
``docs/gallery/local/`` (git-ignored) and only their numbers go into ``docs/gallery.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from segue.checkpoint import load_protector
from segue.data import celeba234_people, orl_root, shared_root, webface10_root
from segue.protect import ProtectOptions, protect_folder
from segue.visibility import GENERATOR_VISIBILITY, UNLIMITED, VisibilityBudget

DOCS = Path(__file__).resolve().parent.parent / "docs"
CAPTION_H = 26


def larger_photo(face: Image.Image) -> Image.Image:
    """A 640x560 photo with the face 3x on a plain, softly lit wall with a little sensor noise: big
    enough that ``--region auto`` searches it for faces and protects only the one it finds."""
    big = face.convert("RGB").resize((face.width * 3, face.height * 3), Image.BICUBIC)
    yy, xx = np.mgrid[0:560, 0:640]
    wall = 150 + 40 * np.exp(-((xx - 200) ** 2 + (yy - 120) ** 2) / (2 * 260.0**2))
    noise = np.random.default_rng(0).normal(0, 2.5, (560, 640))
    canvas = Image.fromarray(np.clip(wall + noise, 0, 255).astype(np.uint8)).convert("RGB")
    canvas.paste(big, ((640 - big.width) // 2, (560 - big.height) // 2))
    return canvas


def collect_photos(work: Path, orl_only: bool = False) -> dict[str, tuple[str, Path]]:
    """name -> (source set, path of a copy under ``work/in``), one subfolder per photo."""
    photos: dict[str, tuple[str, Path]] = {}

    def add(name: str, source: str, image: Image.Image | Path) -> None:
        d = work / "in" / name
        d.mkdir(parents=True)
        if isinstance(image, Path):
            dst = d / image.name
            shutil.copy(image, dst)
        else:
            dst = d / "photo.png"
            image.save(dst)
        photos[name] = (source, dst)

    orl = orl_root()
    add("orl_s1_1", "ORL", orl / "s1" / "1.pgm")
    add("orl_s7_3", "ORL", orl / "s7" / "3.pgm")
    add("orl_s12_2_larger", "ORL (3x, in a 640x560 photo)", larger_photo(Image.open(orl / "s12" / "2.pgm")))
    if orl_only:
        return photos
    try:
        celeba = shared_root("CelebA234", "SEGUE_CELEBA234")
        for person in celeba234_people("val")[:2]:
            first = sorted((celeba / person).iterdir())[0]
            add(f"celeba234_{person}", "CelebA234 validation", first)
        wf10 = webface10_root() / "test_clean"
        for person in ("0", "5"):
            add(f"webface10_{person}", "WebFace10 test (224 px)", sorted((wf10 / person).iterdir())[0])
    except FileNotFoundError as exc:  # the shared data sets are optional: ORL alone still makes a gallery
        warnings.warn(f"skipping CelebA234 / WebFace10: {exc}")
    return photos


def protect_all(work: Path, protections: list[str]) -> dict[str, dict]:
    """protection -> report rows by photo name, outputs under ``work/<protection>``."""
    rows: dict[str, dict] = {}
    for name in protections:
        base, native = name.removesuffix("-native"), name.endswith("-native")  # NAME-native: --native-size
        if base in ("low", "medium", "high", "visible"):  # the cloak's strengths (segue.protect.presets)
            from segue.protect.presets import create_cloaker

            protection, side = create_cloaker(base, native_size=native), None
        else:
            protection, side = load_protector(base, "cpu")
        opts = ProtectOptions(output_format="png", visibility_every=1, visibility_budget=UNLIMITED, side_info=side,
                              workers=1, ssim_every=1, work_size=0 if native else None)
        report = protect_folder(protection, work / "in", work / name, opts, progress=False)
        rows[name] = {r["input"].split("/")[0]: r for r in report["files"]}
    return rows


def caption(row: dict, budget: VisibilityBudget) -> str:
    v = row["visibility"]
    beyond = budget.violations(v)
    return (f"HaarPSI {v['haarpsi']}  dE00 {v['delta_e_mean']:.2f}/{v['delta_e_p95']:.2f}  shading {v['shading_p95']:.2f}  "
            f"{row['psnr']:.1f} dB  Linf {row['linf']}" + ("  BEYOND GENERATOR VISIBILITY" if beyond else ""))


def tile(original: np.ndarray, outputs: list[tuple[str, np.ndarray, str]], scale: int) -> Image.Image:
    """Rows of original | protected | |diff| x10 (about mid-grey), each with its caption, at ``scale``."""
    h, w = original.shape[:2]
    cw, ch = w * scale, h * scale
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = max(3 * cw + 8, *(int(measure.textlength(text)) + 4 for _, _, text in outputs))
    sheet = Image.new("RGB", (width, len(outputs) * (ch + CAPTION_H + 6)), "white")
    draw = ImageDraw.Draw(sheet)

    def up(a: np.ndarray) -> Image.Image:
        return Image.fromarray(a).resize((cw, ch), Image.NEAREST)

    for i, (name, protected, text) in enumerate(outputs):
        diff = np.clip(128 + 10 * (protected.astype(int) - original.astype(int)), 0, 255).astype(np.uint8)
        y = i * (ch + CAPTION_H + 6)
        for j, a in enumerate((original, protected, diff)):
            sheet.paste(up(a), (j * (cw + 4), y))
        draw.text((2, y + ch + 1), name, fill="black")
        draw.text((2, y + ch + 13), text, fill="black")
    return sheet


def strip(original: np.ndarray, outputs: list[tuple[str, np.ndarray, str]], scale: int = 2) -> Image.Image:
    """One row for the README: the original and each protection's output side by side, named, at ``scale``."""
    h, w = original.shape[:2]
    cw, ch = w * scale, h * scale
    sheet = Image.new("RGB", ((len(outputs) + 1) * (cw + 4), ch + 16), "white")
    draw = ImageDraw.Draw(sheet)
    for j, (name, a) in enumerate([("original", original)] + [(n, o) for n, o, _ in outputs]):
        sheet.paste(Image.fromarray(a).resize((cw, ch), Image.NEAREST), (j * (cw + 4), 0))
        draw.text((j * (cw + 4) + 2, ch + 2), name, fill="black")
    return sheet


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protections", nargs="+", default=["default", "robust", "robust_rem", "low", "medium", "high", "visible"],
                    help="shipped protections; NAME-native: a cloak strength at each face's own size (not shipped)")
    ap.add_argument("--docs", type=Path, default=DOCS, help="where gallery.md and gallery/ are written (default: docs/)")
    ap.add_argument("--orl-only", action="store_true", help="only the ORL photos (no shared data sets)")
    args = ap.parse_args()
    docs = args.docs
    gallery = docs / "gallery"
    warnings.simplefilter("ignore", UserWarning)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photos = collect_photos(work, args.orl_only)
        rows = protect_all(work, args.protections)
        shutil.rmtree(gallery, ignore_errors=True)
        (gallery / "local").mkdir(parents=True)
        table, results = [], {}
        for name, (source, src) in photos.items():
            original = rgb(src)
            boxes = rows[args.protections[0]][name].get("boxes")
            if boxes:  # a larger photo: show the protected face region, the rest is unchanged
                x0, y0, x1, y1 = boxes[0]
                crop = (slice(y0, y1), slice(x0, x1))
            else:
                crop = (slice(None), slice(None))
            outputs = []
            for p in args.protections:
                row = rows[p][name]
                out = rgb(work / p / name / Path(row["output"]).name)
                outputs.append((p, out[crop], caption(row, GENERATOR_VISIBILITY)))
                v = row["visibility"]
                results.setdefault(name, {})[p] = {"source": source, **v, "psnr": row["psnr"], "ssim": row["ssim"],
                                                   "linf": row["linf"], "boxes": boxes}
                table.append(f"| {name} | {source} | {p} | {v['haarpsi']} | {v['delta_e_mean']:.2f} / {v['delta_e_p95']:.2f} "
                             f"| {v['shading_p95']:.2f} "
                             f"| {row['psnr']:.1f} | {row['ssim']} | {row['linf']} |")
            where = gallery if source.startswith("ORL") else gallery / "local"
            for scale in (1, 2):
                tile(original[crop], outputs, scale).save(where / f"{name}_{scale}x.png")
            if name == "orl_s1_1":
                strip(original, outputs).save(gallery / "readme_strip.png")
        (gallery / "local" / ".gitignore").write_text("*\n")
        (gallery / "gallery.json").write_text(json.dumps(results, indent=2) + "\n")
        write_markdown(docs, photos, table)


def write_markdown(docs: Path, photos: dict, table: list[str]) -> None:
    orl = [n for n, (s, _) in photos.items() if s.startswith("ORL")]
    images = "\n\n".join(f"**{n}** at 100 % and 2x\n\n![{n} 1x](gallery/{n}_1x.png)\n\n![{n} 2x](gallery/{n}_2x.png)"
                         for n in orl)
    text = f"""# Gallery: what each protection does to a face

Made by `python benchmarks/gallery.py` (every shipped protection through `segue protect`, PNG
output; rows `low` ... `visible` are the cloak's strengths, `segue protect --strength NAME`).
Each tile: original | protected | difference x10 about mid-grey, once at 100 % and once at 2x
(nearest neighbour: the pixels as written). Under each row: HaarPSI (1 = identical), CIEDE2000
mean / p95 between the 3x3-blurred images, shading p95 (the mid-scale lightness change, reported and not
budgeted: segue.visibility), PSNR and L-inf (/255), measured on the written
file over the protected region. "BEYOND GENERATOR VISIBILITY" marks a row outside
`segue.visibility.GENERATOR_VISIBILITY` (HaarPSI >= {GENERATOR_VISIBILITY.haarpsi_min}, CIEDE2000 p95
<= {GENERATOR_VISIBILITY.delta_e_p95_max}): `segue protect` would refuse that file unless the protection
declares a wider budget (`robust`, `robust_rem` and the cloak's `medium`, `high` and `visible` do, and are
labelled visible: [visibility.md](visibility.md)).

CelebA234 and WebFace10 photos are research-only: their tiles are made locally under
`docs/gallery/local/` and not committed; their numbers are below.

{images}

| photo | set | protection | HaarPSI | CIEDE2000 mean / p95 | shading p95 | PSNR dB | SSIM | L-inf |
|---|---|---|---|---|---|---|---|---|
""" + "\n".join(table) + "\n"
    (docs / "gallery.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
