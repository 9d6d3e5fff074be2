"""``segue benchmark CONFIG``: noise methods x victims x countermeasures x seeds on any ImageFolder set.

The config (YAML or JSON) names every ingredient once and lists the grid blocks to run::

    data: {train: webface10:train_clean, test: webface10:test_clean, image_size: 112}
    output: benchmarks/results/table1_cpu
    victim: {epochs: 15, batch_size: 16, lr: 0.0005}
    methods:                       # label -> segue.methods spec (eps_255 for eps in /255)
      clean: {name: none}
      segue: {name: segue}
      em_classwise: {name: em, mode: classwise, max_seconds: 600}
    countermeasures:               # label -> list of segue.countermeasures specs (composed)
      none: []
      jpeg_q10: [{name: jpeg, quality: 10}]
    grid:                          # blocks; each is the product of its lists
      - {methods: [clean, segue, em_classwise], victims: [resnet18], countermeasures: [none], seeds: [0]}

``webface10:SUB`` resolves under :func:`segue.data.webface10_root`; other paths are taken
relative to the current directory. A cell is ``method|victim|countermeasure|seed``.

Resumable: each finished cell is one line of ``OUTPUT/results.jsonl``; a rerun skips the
cells already there (``--only`` globs pick cells, ``--max-cells`` and ``--deadline`` bound
a run). A method's protected training set is generated once and cached (config ``cache``;
default ``~/.cache/segue/benchmark/<output>``, outside the repository: the sets are copies of
the photos), with its generation time and image quality in ``OUTPUT/methods.json``.
``OUTPUT/table.md`` and ``OUTPUT/curves.png`` are rewritten after every cell; ``samples.png``
(clean / protected / amplified delta: real photos) is written next to the cached sets.

Modules: :mod:`.config` (the grid, data, partial protection), :mod:`.results` (results files),
:mod:`.sets` (protected sets), :mod:`.runner` (cells), :mod:`.report` (tables, plots),
:mod:`.attack_table`, :mod:`.cli`.
"""

from __future__ import annotations

from segue.benchmark.config import (Cell, cache_dir, cells_of, load_config, load_data, method_kwargs, partial_groups,
                                    protected_classes, protected_mask, resolve_data_path)
from segue.benchmark.results import append_result, group_summary, read_methods, read_results
from segue.benchmark.sets import ProtectedSets, image_quality
from segue.benchmark.report import write_report
from segue.benchmark.runner import make_attacker, parse_deadline, run_benchmark, select
from segue.benchmark.cli import add_parser, cmd_benchmark
from segue.runtime import device_name, now_iso, write_json_atomic

__all__ = ["Cell", "ProtectedSets", "add_parser", "append_result", "cache_dir", "cells_of", "cmd_benchmark", "device_name",
           "group_summary", "image_quality", "load_config", "load_data", "make_attacker", "method_kwargs", "now_iso",
           "parse_deadline", "partial_groups", "protected_classes", "protected_mask", "read_methods", "read_results",
           "resolve_data_path", "run_benchmark", "select", "write_json_atomic", "write_report"]
