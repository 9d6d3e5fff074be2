"""``segue train`` for the experiments' options (supervised side labels: the class folders).

    python -m experiments.train "$SEGUE_WEBFACE10/train_clean" --config experiments/configs/robust_luma_112.yaml \\
        -o runs/robust_luma_112.safetensors --device cuda

Writes the weights (``load_variant`` reads them; ``segue.checkpoint.load_generator`` too when no
removed option is set) and ``NAME.results.json`` as ``segue train`` does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.training_variants import VariantTrainConfig, train_variant
from segue.cli.train import train_and_save
from segue.data import load_image_folder
from segue.runtime import load_config_file, resolve_device


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.train", description=__doc__.splitlines()[0])
    ap.add_argument("data", help="folder with one subfolder per identity")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--config", help="YAML/JSON with VariantTrainConfig fields (base: allowed)")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--max-seconds", dest="max_seconds", type=float)
    ap.add_argument("--init", dest="init_generator", help="start G from these weights (a path or a shipped name)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    raw = load_config_file(args.config) if args.config else {}
    for key in ("epochs", "max_seconds", "init_generator"):
        if getattr(args, key) is not None:
            raw[key] = getattr(args, key)
    cfg = VariantTrainConfig.from_dict(raw)
    device = resolve_device(args.device)
    data = load_image_folder(args.data, cfg.image_size)
    provenance = {"train_data": str(Path(args.data).resolve()), "classes": data.classes, "side_info": "labels",
                  "experiment": "experiments.train"}
    return train_and_save(train_variant, data, data.labels, len(data.classes), cfg, device, Path(args.output), provenance)


if __name__ == "__main__":
    sys.exit(main())
