"""How much protection do clustering mistakes cost? One generator, codes from labels vs from k-means.

    python benchmarks/cluster_errors.py --seeds 0 [--clusters unsupervised_clusters.json ...] [--codes raw]

The unsupervised generator's victim peaked at ~28 % where the supervised one reached ~15 %.
Two things differ: the generator (trained on pseudo-labels) and the codes (k-means puts ~4 %
of the photos in another person's cluster, so their shortcut points at the wrong person).
This isolates the second: the shipped supervised generator protects WebFace10's training
photos once with each photo's true identity as code and once per clusters file with its
k-means cluster, the clusters renamed to identities by the Hungarian matching - exactly the
identity codes except for the misclustered photos. (The renaming uses the true labels; it
is a measurement, not something a defender could do.) ``--codes raw`` instead gives each photo
its cluster index as code, unrenamed - label-free at protection time, as `segue protect` with
centroids does - and writes cluster_errors_raw.{json,md} (no true-identity row).
ResNet18 victims, 15 epochs, 112 px. Writes benchmarks/results/cluster_errors.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from _common import RESULTS, pct, summary, write_results
from segue.checkpoint import load_generator
from segue.protect import protect_images
from segue.pseudo_labels import matched_to_identities
from segue.runtime import resolve_device
from segue.victim import VictimConfig, train_victim
from unsupervised import webface10


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--clusters", nargs="+", default=["unsupervised_clusters.json"],
                    help="pseudo-label files under benchmarks/results/")
    ap.add_argument("--codes", choices=["matched", "raw"], default="matched",
                    help="clusters renamed to identities (matched) or cluster index as code (raw)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    train, test = webface10()
    true = train.labels.numpy()
    arms = {"true identities": (true, None)} if args.codes == "matched" else {}
    for name in args.clusters:
        info = json.loads((RESULTS / name).read_text())
        clusters = np.array(info["datasets"]["WebFace10"]["train_pseudo_labels"])
        codes = matched_to_identities(true, clusters) if args.codes == "matched" else clusters
        how = "" if args.codes == "matched" else ", raw"
        arms[f"k-means clusters{how} ({info['extractor']}, {name})"] = (codes, name)
    generator, meta = load_generator("default")
    rows, payload = [], {"generator": "shipped default", "codes": args.codes, "victim_epochs": args.epochs,
                         "device": str(device), "arms": {}}
    for arm, (codes, source) in arms.items():
        agree = float((matched_to_identities(true, codes) == true).mean())  # raw codes: same clusters
        protected = protect_images(generator, train.images, torch.from_numpy(codes).long())
        runs = []
        for seed in args.seeds:
            res = train_victim(train.with_images(protected), test, VictimConfig(epochs=args.epochs, seed=seed), device)
            print(f"  {arm} seed {seed}: final {res['final_acc']:.3f} peak {res['peak_acc']:.3f}", file=sys.stderr, flush=True)
            runs.append({"seed": seed, **res})
        s = summary(runs)
        payload["arms"][arm] = {"clusters_file": source, "codes_equal_identity": round(agree, 4), **s, "runs": runs}
        rows.append(f"| {arm} | {pct(agree)} | {pct(s['final_acc']['mean'])} | {pct(s['peak_acc']['mean'])} |")
    dev = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    md = [f"## Cost of clustering mistakes: shipped supervised generator, WebFace10 112 px, ResNet18 victim, "
          f"{args.epochs} epochs, seeds {args.seeds} ({dev})", "",
          "| codes given to the training photos | " + ("photos whose code is their identity's" if args.codes == "matched"
                                                        else "photos in their identity's cluster") + " | victim final | victim peak |",
          "|---|---|---|---|", *rows, ""]
    write_results("cluster_errors" + ("_raw" if args.codes == "raw" else ""), payload, "\n".join(md))


if __name__ == "__main__":
    main()
