"""Where runs are tracked: read from the environment once, by the command, then passed on as an argument.

MLFLOW_TRACKING_URI names the store: an http(s) MLflow server, or any store URI MLflow takes
(`sqlite:///path`). Unset, it is the repository's own SQLite file, `sqlite:///<repo>/mlflow.db`,
with artifacts in `<repo>/mlruns`. What a server does not take while a cell runs waits in
`<repo>/.bnbench/tracking-spool/` (pipeline/tracking/spool.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

URI_ENV = "MLFLOW_TRACKING_URI"
SPOOL_DIR = Path(".bnbench") / "tracking-spool"


def is_server(uri: str) -> bool:
    """Whether `uri` is a tracking server (reached over HTTP), rather than a store opened in this process."""
    return uri.startswith(("http://", "https://"))


@dataclass(frozen=True)
class TrackingSettings:
    uri: str
    spool_dir: Path  # the journals of runs not yet all delivered
    artifact_location: str | None = None  # a new experiment's artifact root; None: the store's default

    @property
    def is_server(self) -> bool:
        return is_server(self.uri)


def read_tracking_settings(root: Path, environ: Mapping[str, str] = os.environ) -> TrackingSettings:
    """The tracking settings of the repository at `root`, from `environ`."""
    uri = environ.get(URI_ENV) or f"sqlite:///{root / 'mlflow.db'}"
    # A local SQLite store keeps artifacts beside the repository, not in the working directory of a stage.
    artifacts = (root / "mlruns").as_uri() if uri.startswith("sqlite:") else None
    return TrackingSettings(uri, root / SPOOL_DIR, artifacts)
