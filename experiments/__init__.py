"""Options of the generator and of its training that were measured and not kept.

Not part of the ``segue`` package (not installed with it): run from the repository root, e.g.
``python -m experiments.train DATA --config experiments/configs/robust_luma_112.yaml -o out.safetensors``.
Each module subclasses the package's classes; ``README.md`` lists every experiment, its config and
the committed result that records its outcome.
"""
