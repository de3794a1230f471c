"""bnbench: a reproducible benchmark of batch normalization, activations and dropout.

The package by role (docs/architecture.md has a line per module):
- stage command lines, where dvc.yaml calls them: preflight, stage_code, fetch, prepare, train_code, train,
  choose, report (pipeline/report/__main__.py), and the generator of the dvc.yaml files, dvcfile;
- the commands besides dvc's (pipeline/cli.py): new_study, repro;
- study/: the settings (schema, overlays, axes), the cells, the generated pipeline, the chosen rates;
- cell/: one cell, from its settings to its outputs: models, training, probes, checkpoints;
- data/: dataset descriptors, download and verification, parsers, the prepared arrays;
- tracking/: MLflow runs, the spool, the sync command;
- runner/: many cells at once, in local slots or on Ray;
- report/: the page, its statistics and figures;
- errors, repo, provenance: what every part shares.
"""

import os

# Keep TensorFlow's C++ start-up chatter (CUDA probing, CPU flags) out of every stage's log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# KERAS_BACKEND=jax without JAX installed: one line, not a traceback from every stage's first import.
if os.environ.get("KERAS_BACKEND") == "jax":
    import importlib.util

    if importlib.util.find_spec("jax") is None:
        raise SystemExit(
            "bnbench: KERAS_BACKEND=jax but JAX is not installed: `uv sync --extra jax` (or unset KERAS_BACKEND)"
        )
