"""Deliver what cells kept in the tracking spool: each run's data goes to its MLflow server, then its end.

Reads:  <repo>/.bnbench/tracking-spool/<run id>/ (pipeline/tracking/spool.py): what a cell logged
        that its tracking server did not take while the cell ran.
Writes: each run's params, metrics, tags, artifacts and final status to MLflow (nothing twice);
        a run's folder goes once all of it is delivered. A run whose cell was killed before it
        ended is ended KILLED. Runs of cells still running are left to them.
Run:    uv run bnbench sync                    (or python -m pipeline.tracking.sync)
        uv run bnbench sync --tracking-uri http://127.0.0.1:5000
        (the same server under another address: runs logged from compose's pipeline name it
        http://mlflow:5000, which the host does not resolve)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mlflow.tracking import MlflowClient

from pipeline.errors import UserError, command_main, run_cli
from pipeline.repo import repo_root
from pipeline.tracking.runs import bounded_http_retries, check_reachable
from pipeline.tracking.settings import read_tracking_settings
from pipeline.tracking.spool import RunSpool, spooled_runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="deliver to this address instead of the one each run was logged to")


def sync_run(spool: RunSpool, uri: str) -> str:
    """Deliver one spooled run (its lock held); returns what was done, in words."""
    check_reachable(uri)
    if spool.ended() is None:  # its cell died before it ended (its lock is free)
        spool.add_end("KILLED", spool.last_written_ms())
    status = spool.ended()
    sent = spool.deliver(MlflowClient(uri))
    return f"{sent} entries delivered, ended {status}"


def run_command(args: argparse.Namespace) -> int:
    folder = read_tracking_settings(repo_root()).spool_dir
    runs = list(spooled_runs(folder))
    if not runs:
        print(f"sync: nothing to deliver ({folder} holds no runs)")
        return 0
    left = []
    for spool in runs:
        name = f"run {spool.run_id} ({spool.label})"
        if not spool.lock(wait=False):
            print(f"sync: {name}: left alone, its cell is still running")
            continue
        uri = args.tracking_uri or spool.tracking_uri
        try:
            with bounded_http_retries():
                print(f"sync: {name}: {sync_run(spool, uri)} at {uri}")
        except UserError as error:
            left.append(f"{name}: {error}")
        except Exception as error:  # the server refused an entry: it stays, with the reason
            left.append(f"{name}: {uri} refused it: {' '.join(str(error).split())}")
        finally:
            spool.unlock()
    if left:
        raise UserError(
            f"{len(left)} of {len(runs)} spooled run(s) stay in {folder}; the first: {left[0]}. "
            "Run this again once the server takes them."
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return command_main(__doc__, add_arguments, run_command, argv)


if __name__ == "__main__":
    sys.exit(run_cli(main))
