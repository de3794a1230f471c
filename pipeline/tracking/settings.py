"""Where runs are tracked: read from the environment once, by the command, then passed on as an argument.

MLFLOW_TRACKING_URI names the store: an http(s) MLflow server, or any store URI MLflow takes
(`sqlite:///path`). Unset, it is the repository's own SQLite file, `sqlite:///<repo>/mlflow.db`,
with artifacts in `<repo>/mlruns`. A value without a store's scheme (`127.0.0.1:5000`) is refused in
one line that names the fix. BNBENCH_MLFLOW_UI_URL says where a person opens the MLflow UI over a
store that is not a server (default http://127.0.0.1:5000, where `mlflow ui` listens): the report
links each run there. What a server does not take while a cell runs waits in
`<repo>/.bnbench/tracking-spool/` (pipeline/tracking/spool.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import UserError

URI_ENV = "MLFLOW_TRACKING_URI"
# Where a person opens the MLflow UI over a store that is not a server (the report links each run there).
UI_URL_ENV = "BNBENCH_MLFLOW_UI_URL"
DEFAULT_UI_URL = "http://127.0.0.1:5000"  # what `mlflow ui` serves when given no --host or --port
DEFAULT_UI_COMMAND = "uv run mlflow ui --backend-store-uri sqlite:///mlflow.db"  # from the repository root
SPOOL_DIR = Path(".bnbench") / "tracking-spool"
# The stores MLflow opens by URI scheme (a SQL store's scheme may name its driver: postgresql+psycopg).
# Anything else MLflow would take for a folder of its deprecated file store, and fail deep inside it.
STORE_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "file", "databricks")


def is_server(uri: str) -> bool:
    """Whether `uri` is a tracking server (reached over HTTP), rather than a store opened in this process."""
    return uri.startswith(("http://", "https://"))


@dataclass(frozen=True)
class TrackingSettings:
    uri: str
    spool_dir: Path  # the journals of runs not yet all delivered
    artifact_location: str | None = None  # a new experiment's artifact root; None: the store's default
    ui_url: str = DEFAULT_UI_URL  # where a person opens the runs: the server itself, or `mlflow ui` over the store
    ui_command: str = DEFAULT_UI_COMMAND  # how to start that UI over a store that is not a server

    @property
    def is_server(self) -> bool:
        return is_server(self.uri)


def check_store_uri(uri: str) -> None:
    """Refuse, in one line naming the fix, a tracking URI whose scheme names no store MLflow opens."""
    scheme = urlsplit(uri).scheme.split("+", 1)[0].lower() if "://" in uri or uri.startswith("sqlite:") else ""
    if scheme in STORE_SCHEMES:
        return
    raise UserError(
        f"{URI_ENV}={uri} names no tracking store (it needs a scheme such as http:// or sqlite:///): "
        f"write {URI_ENV}=http://{uri.split('://', 1)[-1]} for a tracking server, or "
        f"sqlite:///path/to/mlflow.db for a local file, or unset it to log to the repository's mlflow.db"
    )


def read_tracking_settings(root: Path, environ: Mapping[str, str] = os.environ) -> TrackingSettings:
    """The tracking settings of the repository at `root`, from `environ`; a URI without a store's scheme is refused."""
    uri = environ.get(URI_ENV) or f"sqlite:///{root / 'mlflow.db'}"
    check_store_uri(uri)
    # A local SQLite store keeps artifacts beside the repository, not in the working directory of a stage.
    artifacts = (root / "mlruns").as_uri() if uri.startswith("sqlite:") else None
    if is_server(uri):
        return TrackingSettings(uri, root / SPOOL_DIR, artifacts, uri.rstrip("/"), "")
    own_store = uri == f"sqlite:///{root / 'mlflow.db'}"
    command = DEFAULT_UI_COMMAND if own_store else f"uv run mlflow ui --backend-store-uri {uri}"
    ui_url = (environ.get(UI_URL_ENV) or DEFAULT_UI_URL).rstrip("/")
    return TrackingSettings(uri, root / SPOOL_DIR, artifacts, ui_url, command)
