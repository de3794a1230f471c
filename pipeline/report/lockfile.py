"""The digest of the dvc.lock entries a report was built from.

DVC writes a stage's lock entry after the stage succeeds, so while the report stage
runs, dvc.lock holds every upstream stage's entry as of this run and the report's
own entry from a previous run (or none on the first run). Hashing the whole file
would make the page depend on its own previous output; the digest therefore covers
every stage's entry except the report's, in a canonical form (JSON, sorted keys).

Reads:  a dvc.lock file.
Run:    uv run bnbench lock-digest studies/quick/dvc.lock   (prints the digest the page shows; or
        python -m pipeline.report.lockfile studies/quick/dvc.lock)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from pipeline.errors import command_main

REPORT_STAGE = "report"


@dataclass(frozen=True)
class LockDigest:
    sha256: str | None  # None when there is no lock file to hash
    stages: int  # lock entries covered
    note: str  # what the digest covers, or why there is none


def lock_digest(path: Path | None) -> LockDigest:
    if path is None or not path.is_file():
        where = path if path is not None else "no lock file given"
        return LockDigest(None, 0, f"no dvc.lock ({where}): this report was built outside `dvc repro`")
    lock = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8")) or {}
    entries = {name: entry for name, entry in (lock.get("stages") or {}).items() if name != REPORT_STAGE}
    canonical = json.dumps({"schema": lock.get("schema"), "stages": entries}, sort_keys=True, separators=(",", ":"))
    return LockDigest(
        hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
        len(entries),
        f"sha256 of the {len(entries)} stage entries of {path.name} other than `{REPORT_STAGE}` "
        "(DVC writes the report's own entry after the page)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lock", nargs="?", default="dvc.lock", help="a dvc.lock file (default: dvc.lock)")


def run_command(args: argparse.Namespace) -> int:
    print(lock_digest(Path(args.lock)).sha256 or "no dvc.lock")
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main(__doc__, add_arguments, run_command, argv)


if __name__ == "__main__":
    sys.exit(main())
