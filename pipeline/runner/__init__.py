"""The runner: a study's out-of-date cells trained in warm workers (local slots, or a Ray cluster), recorded in
DVC exactly as a sequential `dvc repro` would record them. Run it with `python -m pipeline.runner`."""
