"""Recipes: every shipped generator rebuilt from scratch, stage by stage (``configs/recipes/NAME.yaml``).

A recipe is an ordered list of training stages. Each stage is one ``segue train`` run: a config
(``config:``, plus ``set:`` overrides merged as ``base:`` is), trained for the epochs its shipped
counterpart ran, starting from the previous stage's weights (the first stage of a recipe with
``after: OTHER`` starts from OTHER's last stage, which runs first). ``recorded:`` says how the
committed weights were made (their provenance: init, --epochs/--max-seconds, epochs run, seconds,
device); tests/test_recipes.py checks the configs and the chain against those files.

    segue rebuild robust_rem -o runs/rebuild --device cuda     # 11 stages: default, robust, robust_rem
    segue rebuild default -o /tmp/r --data faces/ --tiny       # every stage at 32 px, width 16, 1 epoch

Each stage writes ``OUT/NAME.config.yaml`` (the config it ran), ``OUT/NAME.safetensors`` (+ ``.json``)
and ``OUT/NAME.results.json`` (``segue train``'s); ``OUT/RECIPE.recipe.json`` lists the stages, their
commands and results. A stage whose weights and results are already in OUT with the same config is
kept, so an interrupted rebuild continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segue.runtime import load_config_file, merge_config, now_iso, versions, write_json_atomic

# --tiny: every stage at 32 px with a 16-wide generator for one epoch (a test of the chain, not a generator)
TINY: dict[str, Any] = {"image_size": 32, "batch_size": 8, "generator": {"width": 16}}


@dataclass
class Stage:
    """One training stage of a recipe."""

    name: str
    recipe: str
    config_file: Path
    config: dict  # config_file's config with ``set:`` merged in (no epochs / max_seconds / init_generator yet)
    epochs: int
    recorded: dict = field(default_factory=dict)


def recipe_dirs() -> list[Path]:
    """Where recipe names are looked up: ``./configs/recipes``, then the repository this module is in."""
    return [Path.cwd() / "configs" / "recipes", Path(__file__).resolve().parents[2] / "configs" / "recipes"]


def recipe_path(name: str | Path) -> Path:
    """A recipe file: ``name`` itself if it is a file, else ``configs/recipes/NAME.yaml``."""
    if Path(name).is_file():
        return Path(name)
    for folder in recipe_dirs():
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    known = sorted({p.stem for d in recipe_dirs() if d.is_dir() for p in d.glob("*.yaml")})
    raise FileNotFoundError(f"no recipe {name!r} (configs/recipes/NAME.yaml); known: {', '.join(known) or 'none'}")


def load_recipe(name: str | Path) -> tuple[dict, list[Stage]]:
    """A recipe file's contents and its stages in order, those of ``after:`` recipes first."""
    path = recipe_path(name)
    recipe = yaml.safe_load(path.read_text()) or {}
    stages = load_recipe(recipe["after"])[1] if recipe.get("after") else []
    for spec in recipe.get("stages", []):
        config_file = (path.parent / spec["config"]).resolve()
        config = merge_config(load_config_file(config_file), spec.get("set") or {})
        stages.append(Stage(spec["name"], path.stem, config_file, config, int(spec["epochs"]), spec.get("recorded") or {}))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: stage names repeat: {names}")
    return recipe, stages


def stage_config(stage: Stage, init: str | None, tiny: bool = False, time_budget: bool = False) -> dict:
    """The whole config a stage trains with: epochs (or the recorded time budget), the start weights,
    and with ``tiny`` the :data:`TINY` scale."""
    cfg = merge_config(stage.config, TINY) if tiny else dict(stage.config)
    if tiny:
        cfg.update(epochs=1, max_seconds=None)
    elif time_budget:
        cfg.update(epochs=stage.recorded["epochs"], max_seconds=stage.recorded["max_seconds"])
    else:
        cfg.update(epochs=stage.epochs, max_seconds=None)
    cfg["init_generator"] = init
    return cfg


def default_data(recipe: dict) -> str:
    """The recipe's training data: a shared set's name (``webface10:SUBDIR``, ``celeba234:SPLIT``) or a
    folder, as ``segue train`` reads it (:func:`segue.data.load_photos`)."""
    return str(recipe.get("data", "webface10:train_clean"))


def _same_run(results_file: Path, cfg: dict) -> bool:
    """Whether a stage's results.json was written by a run of exactly this config."""
    from segue.training import TrainConfig

    want = TrainConfig.from_dict(cfg)
    want.generator.image_size = want.image_size  # as train_generator records it
    try:  # compared as JSON: the results file has lists where the config has tuples
        return json.loads(results_file.read_text()).get("train_config") == json.loads(json.dumps(want.to_dict()))
    except (OSError, ValueError):
        return False


def rebuild(name: str, out: str | Path, device: str = "auto", data: str | Path | None = None, tiny: bool = False,
            time_budget: bool = False, overwrite: bool = False, dry_run: bool = False) -> list[dict]:
    """Run every stage of recipe ``name`` in order into ``out``; returns one row per stage.

    ``dry_run``: write each stage's config and print its ``segue train`` command, train nothing.
    """
    from segue.cli import build_parser

    recipe, stages = load_recipe(name)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(data) if data is not None else default_data(recipe)
    summary = {"recipe": str(name), "ships": recipe.get("ships"), "data": str(data), "device": device, "tiny": tiny,
               "time_budget": time_budget, "started": now_iso(), "versions": versions(), "stages": []}
    init: str | None = None
    for number, stage in enumerate(stages, 1):
        weights = out / f"{stage.name}.safetensors"
        results = weights.with_name(f"{stage.name}.results.json")
        config_file = weights.with_name(f"{stage.name}.config.yaml")
        cfg = stage_config(stage, init, tiny, time_budget)
        argv = ["train", str(data), "--config", str(config_file), "-o", str(weights), "--device", device]
        row = {"stage": number, "name": stage.name, "recipe": stage.recipe, "config": str(stage.config_file),
               "command": "segue " + shlex.join(argv), "weights": str(weights), "results": str(results)}
        kept = weights.is_file() and results.is_file() and not overwrite
        if kept and not _same_run(results, cfg):
            raise ValueError(f"{weights} exists but was trained with another config than stage {stage.name!r} "
                             "(another recipe, --tiny or --time-budget?): choose another -o or pass --overwrite")
        if not kept:
            config_file.write_text(f"# stage {number} of recipe {name}: {stage.name} ({stage.config_file})\n"
                                   + yaml.safe_dump(cfg, sort_keys=False))
        print(f"segue rebuild {name}: stage {number}/{len(stages)} {stage.name}"
              f"{' (kept: already in ' + str(out) + ')' if kept else ''}\n  {row['command']}", file=sys.stderr, flush=True)
        if not kept and not dry_run:
            args = build_parser().parse_args(argv)
            args.func(args)
        if kept or not dry_run:
            res = json.loads(results.read_text())
            row.update({k: res.get(k) for k in ("epochs_run", "train_seconds", "final_protected_loss", "device")})
        row["kept"] = kept
        summary["stages"].append(row)
        if not dry_run:
            write_json_atomic(out / f"{Path(str(name)).stem}.recipe.json", summary)
        init = str(weights.resolve())
    if not dry_run:
        print(f"segue rebuild {name}: {len(stages)} stages done; the generator: {init}", file=sys.stderr)
    return summary["stages"]


def cmd_rebuild(args: argparse.Namespace) -> int:
    rebuild(args.recipe, args.output, args.device, args.data, args.tiny, args.time_budget, args.overwrite, args.dry_run)
    return 0


def add_parser(sub) -> None:
    """The ``segue rebuild`` subcommand."""
    r = sub.add_parser("rebuild", help="rebuild a shipped generator from scratch: every training stage of "
                                       "configs/recipes/NAME.yaml in order (default, robust, robust_rem)")
    r.add_argument("recipe", help="recipe name (configs/recipes/NAME.yaml) or a recipe file")
    r.add_argument("-o", "--output", required=True, help="folder for every stage's weights, config and results.json")
    r.add_argument("--data", help="training ImageFolder (default: the recipe's, $SEGUE_WEBFACE10/train_clean)")
    r.add_argument("--device", default="auto")
    r.add_argument("--tiny", action="store_true", help="each stage at 32 px, generator width 16, 1 epoch (a smoke test)")
    r.add_argument("--time-budget", dest="time_budget", action="store_true",
                   help="train each stage under its recorded --epochs/--max-seconds instead of its recorded epoch count")
    r.add_argument("--overwrite", action="store_true", help="retrain stages whose weights are already in the folder")
    r.add_argument("--dry-run", dest="dry_run", action="store_true",
                   help="write each stage's config and print its segue train command; train nothing")
    r.set_defaults(func=cmd_rebuild)
