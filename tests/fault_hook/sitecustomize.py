"""Tests only: a fault planted at a chosen call of a process the tests start; the product has no test hooks.

Python imports `sitecustomize` at start-up from the first folder on sys.path that has one; the
tests put this folder first on PYTHONPATH of the processes they start (dvc, its stages, the
runner and its workers, a Ray cluster's nodes), with BNBENCH_TEST_FAULT set to JSON:

    {"target": "pipeline.cell.checkpoints:FileCheckpoint.save",  # module:attribute path of a callable
     "action": "pause",                                  # pause (sleep until killed) or raise (the call fails)
     "call": 2,                                          # the n-th matching call in a process
     "when": "before",                                   # pause before the call runs, or "after" it
     "argv": "pipeline.prepare",                         # optional: only where the command line has this
     "env": {"DVC_STAGE": "train@x"},                    # optional: only while these variables have these values
     "marker": "/tmp/.../paused"}                        # pause: written (with the pid) when the process pauses

The target is wrapped as its module is imported. A paused process sleeps until it is killed
(a signal handler, e.g. for SIGTERM, still runs); a raising call raises RuntimeError before it
runs. Without BNBENCH_TEST_FAULT nothing happens.
"""

from __future__ import annotations

import functools
import importlib.machinery
import json
import os
import sys
import time

ENV = "BNBENCH_TEST_FAULT"


def _matches(config: dict) -> bool:
    if config.get("argv") and config["argv"] not in " ".join(sys.orig_argv):
        return False
    return all(os.environ.get(name) == value for name, value in config.get("env", {}).items())


def _pause(config: dict) -> None:
    marker = config["marker"]
    with open(f"{marker}.{os.getpid()}.tmp", "w") as file:
        file.write(str(os.getpid()))
    os.replace(f"{marker}.{os.getpid()}.tmp", marker)
    while True:
        time.sleep(3600)


def _wrapped(function, config: dict):
    calls = 0

    @functools.wraps(function)
    def faulty(*args, **kwargs):
        nonlocal calls
        hit = _matches(config) and (calls := calls + 1) == config.get("call", 1)
        if hit and config.get("action", "pause") == "raise":
            raise RuntimeError(f"a fault planted by the tests at {config['target']} ({ENV})")
        if hit and config.get("when", "before") == "before":
            _pause(config)
        result = function(*args, **kwargs)
        if hit and config.get("when", "before") == "after":
            _pause(config)
        return result

    return faulty


def _patch(module, attribute_path: str, config: dict) -> None:
    *owners, name = attribute_path.split(".")
    owner = module
    for part in owners:
        owner = getattr(owner, part)
    setattr(owner, name, _wrapped(getattr(owner, name), config))


class _PatchOnImport:
    """A meta-path finder that lets the normal finder load the target module, then wraps the target in it."""

    def __init__(self, module: str, attribute_path: str, config: dict):
        self.module, self.attribute_path, self.config = module, attribute_path, config

    def find_spec(self, name, path, target=None):
        if name != self.module:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            _patch(module, self.attribute_path, self.config)

        spec.loader.exec_module = exec_module
        return spec


def _install() -> None:
    raw = os.environ.get(ENV)
    if not raw:
        return
    config = json.loads(raw)
    module, attribute_path = config["target"].split(":")
    if module in sys.modules:
        _patch(sys.modules[module], attribute_path, config)
    else:
        sys.meta_path.insert(0, _PatchOnImport(module, attribute_path, config))


_install()
