"""Known vulnerabilities in the locked dependencies: pip-audit over uv.lock, less the written exceptions.

Reads:  uv.lock (through `uv export`: every package, extras and the dev group included) and
        audit-exceptions.toml: each accepted vulnerability with its package, a reason, the date it
        was written and the date by which to look again.
Writes: a table of the findings to stdout; nothing on disk.
Run:    uv run python -m tools.audit [--allow-unreachable]

Exit 0 when every locked package was checked and each finding has a valid exception; 1 on a
finding without one, an exception without its reason or dates or past its review date, or an
audit that could not run (the vulnerability service unreachable, or answering for no package),
unless --allow-unreachable: then a warning says so and the exit is 0, findings still failing.
pip-audit asks PyPI's JSON API by default; PIP_AUDIT_VULNERABILITY_SERVICE=osv asks OSV instead.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import UserError, run_cli

REPO = Path(__file__).resolve().parents[1]
EXCEPTIONS = REPO / "audit-exceptions.toml"
PIP_AUDIT_TIMEOUT_S = 900  # ~200 packages, one request each


class Accepted(BaseModel):
    """One accepted vulnerability: what, in which package, why, and until when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)  # as pip-audit reports it, or one of its aliases (a CVE)
    package: str = Field(min_length=1)
    reason: str = Field(pattern=r"\S")  # why it cannot hurt here, or why it cannot be fixed yet
    written: datetime.date
    review_by: datetime.date  # then: upgrade, or write the exception again with a new reason and date


def load_exceptions(path: Path, today: datetime.date) -> list[Accepted]:
    """The file's exceptions; one UserError listing every entry that lacks a field or is past its date."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{path}: not found; it lists the accepted vulnerabilities (none: a file of comments)"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML: {error}") from None
    entries = document.get("exception", [])
    if set(document) - {"exception"} or not isinstance(entries, list):
        raise UserError(f"{path}: holds [[exception]] entries only, got {', '.join(document)}")
    accepted, problems = [], []
    for number, entry in enumerate(entries, start=1):
        name = f"exception {number} ({entry.get('id', 'no id')})" if isinstance(entry, dict) else f"exception {number}"
        try:
            exception = Accepted.model_validate(entry)
        except ValidationError as error:
            problems += [
                f"{name}: {'.'.join(map(str, e['loc'])) or 'entry'}: "
                + ("required key is missing" if e["type"] == "missing" else e["msg"])
                for e in error.errors()
            ]
            continue
        if exception.review_by < today:
            problems.append(
                f"{name}: its review date {exception.review_by} has passed: upgrade {exception.package}, "
                "or write the exception again with a new reason and dates"
            )
        elif exception.written > today:
            problems.append(f"{name}: written {exception.written}, a date still to come")
        accepted.append(exception)
    if problems:
        keys = ", ".join(Accepted.model_fields)
        raise UserError(f"{path}: " + "; ".join(problems) + f" (each [[exception]] has {keys})")
    return accepted


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    id: str
    aliases: tuple[str, ...]
    fix_versions: tuple[str, ...]
    exception: Accepted | None  # the one that accepts it; None: it fails the audit


@dataclass(frozen=True)
class Assessment:
    audited: tuple[str, ...]  # packages checked against the service
    skipped: dict[str, str]  # package -> why pip-audit could not check it
    findings: tuple[Finding, ...]
    unused: tuple[Accepted, ...]  # exceptions no finding needed

    @property
    def ran(self) -> bool:
        return bool(self.audited)

    @property
    def failing(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.exception is None)


def assess(report: dict, exceptions: list[Accepted]) -> Assessment:
    """pip-audit's JSON report (`--format json`) against the exceptions."""
    audited, skipped, findings, used = [], {}, [], set()
    for dependency in report["dependencies"]:
        name = dependency["name"]
        if "skip_reason" in dependency:
            skipped[name] = dependency["skip_reason"]
            continue
        audited.append(name)
        for vuln in dependency["vulns"]:
            ids = {vuln["id"], *vuln.get("aliases", [])}
            accepting = next(
                (e for e in exceptions if e.id in ids and canonicalize_name(e.package) == canonicalize_name(name)),
                None,
            )
            used.add(accepting)
            findings.append(
                Finding(
                    name,
                    dependency["version"],
                    vuln["id"],
                    tuple(vuln.get("aliases", [])),
                    tuple(vuln["fix_versions"]),
                    accepting,
                )
            )
    unused = tuple(e for e in exceptions if e not in used)
    return Assessment(tuple(audited), skipped, tuple(findings), unused)


def table(findings: Sequence[Finding]) -> str:
    """One row per finding: package, version, vulnerability (aliases), fixed in, and whether it is excepted."""
    rows = [("package", "version", "vulnerability", "fixed in", "status")]
    for f in findings:
        ids = f.id + (f" ({', '.join(f.aliases)})" if f.aliases else "")
        status = (
            f"excepted until {f.exception.review_by}: {f.exception.reason}"
            if f.exception
            else "NOT EXCEPTED: upgrade, or add an exception to audit-exceptions.toml"
        )
        rows.append((f.package, f.version, ids, ", ".join(f.fix_versions) or "-", status))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)), row[4]]) for row in rows)


def not_run_warning(assessment: Assessment | None, why: str) -> str:
    total = "" if assessment is None else f" none of the {len(assessment.skipped)} locked packages could be checked;"
    return (
        f"audit: WARNING: the audit did not run:{total} {why}. The vulnerability service did not answer "
        "(PyPI's JSON API at https://pypi.org/pypi/<name>/<version>/json, or OSV's with "
        "PIP_AUDIT_VULNERABILITY_SERVICE=osv): blocked on this network, or down. Nothing is known about "
        "vulnerabilities: this is not a clean audit. Run it where the service answers."
    )


def report(assessment: Assessment, allow_unreachable: bool) -> int:
    """Print the outcome; the exit code."""
    if not assessment.ran:
        why = next(iter(assessment.skipped.values()), "pip-audit listed no package")
        print(not_run_warning(assessment, f"pip-audit: {why}"), file=sys.stderr)
        return _unaudited_exit(allow_unreachable)
    if assessment.findings:
        print(table(assessment.findings))
    checked = f"{len(assessment.audited)} of {len(assessment.audited) + len(assessment.skipped)} locked packages"
    excepted = len(assessment.findings) - len(assessment.failing)
    print(f"audit: {checked} checked; {len(assessment.findings)} finding(s), {excepted} excepted")
    for exception in assessment.unused:
        print(f"audit: {exception.id} ({exception.package}) is no longer reported: remove its exception")
    code = 1 if assessment.failing else 0
    if assessment.skipped:
        names = ", ".join(f"{n} ({why})" for n, why in assessment.skipped.items())
        print(f"audit: WARNING: not checked, so not known to be clean: {names}", file=sys.stderr)
        code = max(code, _unaudited_exit(allow_unreachable))
    return code


def _unaudited_exit(allow_unreachable: bool) -> int:
    if allow_unreachable:
        print("audit: passing anyway (--allow-unreachable)", file=sys.stderr)
        return 0
    print(
        "audit: failing: a package not checked is not a clean one (--allow-unreachable accepts that)", file=sys.stderr
    )
    return 1


def run_pip_audit(folder: Path) -> tuple[dict | None, str]:
    """pip-audit over the lock file's pins: its JSON report, or None and why it wrote none."""
    uv = shutil.which("uv")
    if uv is None:
        raise UserError("uv is not on PATH: run this as `uv run python -m tools.audit`")
    requirements, output = folder / "requirements.txt", folder / "pip-audit.json"
    export = [uv, "export", "--frozen", "--format", "requirements-txt", "--no-hashes", "--all-extras"]
    done = subprocess.run([*export, "--no-emit-project", "-o", str(requirements)], cwd=REPO, capture_output=True)
    if done.returncode != 0:
        raise UserError(f"uv export failed: {done.stderr.decode(errors='replace').strip()}")
    audit = [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--disable-pip", "--no-deps"]
    audit += ["--format", "json", "--aliases", "on", "--desc", "off", "--progress-spinner", "off", "-o", str(output)]
    done = subprocess.run(audit, capture_output=True, text=True, timeout=PIP_AUDIT_TIMEOUT_S)
    if not output.is_file():  # a network error ends pip-audit before it writes (a message or a traceback)
        lines = [line for line in done.stderr.splitlines() if line.strip() and "WARNING" not in line]
        return None, f"pip-audit wrote no report (exit {done.returncode}: {lines[-1] if lines else 'no message'})"
    return json.loads(output.read_text(encoding="utf-8")), ""


def main(argv: Sequence[str] | None = None, today: datetime.date | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exceptions", type=Path, default=EXCEPTIONS, help="the accepted vulnerabilities (TOML)")
    parser.add_argument("--allow-unreachable", action="store_true", help="exit 0 when the audit could not run")
    parser.add_argument("--report", type=Path, help="assess this pip-audit JSON report instead of running pip-audit")
    args = parser.parse_args(argv)
    exceptions = load_exceptions(args.exceptions, today or datetime.date.today())  # before any network
    if args.report:
        pip_audit_report, why = json.loads(args.report.read_text(encoding="utf-8")), ""
    else:
        with tempfile.TemporaryDirectory() as folder:
            pip_audit_report, why = run_pip_audit(Path(folder))
    if pip_audit_report is None:
        print(not_run_warning(None, why), file=sys.stderr)
        return _unaudited_exit(args.allow_unreachable)
    return report(assess(pip_audit_report, exceptions), args.allow_unreachable)


if __name__ == "__main__":
    sys.exit(run_cli(main))
