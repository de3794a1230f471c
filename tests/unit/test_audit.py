"""The dependency audit (tools/audit.py): findings against written exceptions, and an audit that did not run.

Its input is pip-audit's JSON report. The reports in pip_audit_reports/ are what pip-audit's own JSON
formatter writes for each case (checked below against the installed pip-audit); all_skipped.json is
also, entry for entry, what pip-audit wrote on a machine where PyPI's per-version JSON answers 404.
End to end, pip-audit itself runs over uv.lock against an OSV-compatible service on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import datetime
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from packaging.version import Version
from pip_audit._format.json import JsonFormat
from pip_audit._service.interface import ResolvedDependency, SkippedDependency, VulnerabilityResult

from pipeline.errors import UserError
from tests.helpers import REPO
from tools.audit import main

REPORTS = Path(__file__).parent / "pip_audit_reports"
TODAY = datetime.date(2026, 11, 20)
NOT_FOUND = "Dependency not found on PyPI and could not be audited: {} ({})"


def _resolved(name: str, version: str) -> ResolvedDependency:
    return ResolvedDependency(name=name, version=Version(version))


def _vuln(ids: list[str], fixed: list[str]) -> VulnerabilityResult:
    return VulnerabilityResult.create(
        ids=ids, description="N/A", fix_versions=[Version(v) for v in fixed], published=None
    )


CASES = {
    "clean": {_resolved("Jinja2", "3.1.6"): [], _resolved("numpy", "2.4.6"): [], _resolved("pydantic", "2.12.5"): []},
    "finding": {
        _resolved("Jinja2", "3.1.6"): [_vuln(["GHSA-aaaa-bbbb-cccc", "PYSEC-2099-1", "CVE-2099-0001"], ["3.1.7"])],
        _resolved("numpy", "2.4.6"): [],
        _resolved("pydantic", "2.12.5"): [_vuln(["GHSA-dddd-eeee-ffff"], [])],
    },
    "some_skipped": {
        _resolved("Jinja2", "3.1.6"): [],
        SkippedDependency(name="numpy", skip_reason=NOT_FOUND.format("numpy", "2.4.6")): [],
    },
    "all_skipped": {
        SkippedDependency(name=n, skip_reason=NOT_FOUND.format(n, v)): []
        for n, v in (("absl-py", "2.5.1"), ("aiohappyeyeballs", "2.7.1"), ("aiohttp", "3.14.5"))
    },
}


def _aliases_sorted(report: dict) -> dict:
    for dependency in report["dependencies"]:
        for vuln in dependency.get("vulns", []):
            vuln["aliases"] = sorted(vuln["aliases"])  # a set in pip-audit: any order
    return report


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_reports_are_what_pip_audit_writes(case):
    written = JsonFormat(output_desc=False, output_aliases=True).format(CASES[case], [])
    assert _aliases_sorted(json.loads(written)) == json.loads((REPORTS / f"{case}.json").read_text())


def _exceptions(tmp_path: Path, *entries: dict) -> Path:
    lines = []
    for entry in entries:
        lines.append("[[exception]]")
        lines += [f"{key} = {value}" if key in ("written", "review_by") else f"{key} = {json.dumps(value)}"
                  for key, value in entry.items()]  # fmt: skip
    path = tmp_path / "audit-exceptions.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _entry(**changes) -> dict:
    entry = {
        "id": "GHSA-aaaa-bbbb-cccc",
        "package": "Jinja2",
        "reason": "only its sandbox is affected, which bnbench never uses",
        "written": "2026-11-01",
        "review_by": "2027-02-01",
    }
    return {k: v for k, v in {**entry, **changes}.items() if v is not None}


def _audit(capsys, report: str, exceptions: Path, *flags: str) -> tuple[int, str, str]:
    code = main(["--report", str(REPORTS / f"{report}.json"), "--exceptions", str(exceptions), *flags], today=TODAY)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_clean_report_passes(tmp_path, capsys):
    code, out, err = _audit(capsys, "clean", _exceptions(tmp_path))
    assert code == 0 and "3 of 3 locked packages checked; 0 finding(s)" in out and err == ""


def test_a_finding_without_an_exception_fails_and_is_in_the_table(tmp_path, capsys):
    code, out, _ = _audit(capsys, "finding", _exceptions(tmp_path))
    assert code == 1
    header, *rows = out.splitlines()[:3]
    assert header.split() == ["package", "version", "vulnerability", "fixed", "in", "status"]
    assert rows[0].split()[:3] == ["jinja2", "3.1.6", "PYSEC-2099-1"] and "3.1.7" in rows[0]
    assert "NOT EXCEPTED" in rows[0] and "NOT EXCEPTED" in rows[1] and "GHSA-dddd-eeee-ffff" in rows[1]
    assert "2 finding(s), 0 excepted" in out


def test_a_finding_with_its_exception_passes_matched_by_alias_and_package(tmp_path, capsys):
    both = _exceptions(tmp_path, _entry(), _entry(id="GHSA-dddd-eeee-ffff", package="pydantic"))
    code, out, _ = _audit(capsys, "finding", both)
    assert code == 0 and "2 finding(s), 2 excepted" in out
    assert "excepted until 2027-02-01: only its sandbox is affected" in out


def test_an_exception_for_another_package_does_not_count(tmp_path, capsys):
    code, out, _ = _audit(capsys, "finding", _exceptions(tmp_path, _entry(package="numpy")))
    assert code == 1 and "2 finding(s), 0 excepted" in out
    assert "GHSA-aaaa-bbbb-cccc (numpy) is no longer reported: remove its exception" in out


@pytest.mark.parametrize("missing", ["id", "package", "reason", "written", "review_by"])
def test_an_exception_without_each_of_its_fields_is_refused(tmp_path, missing):
    with pytest.raises(UserError, match=rf"exception 1 \(.*\): {missing}: required key is missing"):
        main(["--report", str(REPORTS / "clean.json"), "--exceptions", str(_exceptions(tmp_path, _entry(**{missing: None})))], today=TODAY)  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"reason": "  "}, "reason: String should match pattern"),
        ({"written": '"last week"'}, "written: Input should be a valid date"),
        ({"review_by": "2026-11-19"}, "its review date 2026-11-19 has passed: upgrade Jinja2"),
        ({"written": "2026-11-21", "review_by": "2027-01-01"}, "written 2026-11-21, a date still to come"),
        ({"severity": '"low"'}, "severity: Extra inputs are not permitted"),
    ],
)
def test_a_bad_or_expired_exception_is_refused(tmp_path, changes, words):
    entry = {**_entry(), **changes}
    with pytest.raises(UserError, match=r"exception 1 \(GHSA-aaaa-bbbb-cccc\): ") as error:
        main(
            ["--report", str(REPORTS / "finding.json"), "--exceptions", str(_exceptions(tmp_path, entry))], today=TODAY
        )
    assert words in str(error.value)


@pytest.mark.parametrize("text", ["[[exceptions]]\nid = 'x'\n", "[exception]\nid = 'x'\n"])
def test_entries_under_another_name_are_refused_not_ignored(tmp_path, text):
    path = tmp_path / "audit-exceptions.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=r"holds \[\[exception\]\] entries only"):
        main(["--report", str(REPORTS / "clean.json"), "--exceptions", str(path)], today=TODAY)


def test_an_exception_holds_to_its_review_date_included(tmp_path, capsys):
    entries = (_entry(review_by="2026-11-20"), _entry(id="GHSA-dddd-eeee-ffff", package="pydantic"))
    code, _, _ = _audit(capsys, "finding", _exceptions(tmp_path, *entries))
    assert code == 0


def test_no_package_audited_is_a_warning_not_a_clean_audit(tmp_path, capsys):
    code, out, err = _audit(capsys, "all_skipped", _exceptions(tmp_path))
    assert code == 1 and out == ""  # no table, no "0 findings": nothing was checked
    assert "audit: WARNING: the audit did not run: none of the 3 locked packages could be checked" in err
    assert NOT_FOUND.format("absl-py", "2.5.1") in err and "--allow-unreachable" in err
    code, out, err = _audit(capsys, "all_skipped", _exceptions(tmp_path), "--allow-unreachable")
    assert code == 0 and out == "" and "the audit did not run" in err and "passing anyway" in err


def test_a_package_not_audited_is_named_and_fails_unless_allowed(tmp_path, capsys):
    code, out, err = _audit(capsys, "some_skipped", _exceptions(tmp_path))
    assert code == 1 and "1 of 2 locked packages checked" in out
    assert f"not checked, so not known to be clean: numpy ({NOT_FOUND.format('numpy', '2.4.6')})" in err
    assert _audit(capsys, "some_skipped", _exceptions(tmp_path), "--allow-unreachable")[0] == 0


def test_findings_fail_even_when_an_unreachable_service_is_allowed(tmp_path, capsys):
    assert _audit(capsys, "finding", _exceptions(tmp_path), "--allow-unreachable")[0] == 1


# --- end to end: pip-audit over uv.lock, against a vulnerability service on 127.0.0.1 -----------------

VULNERABLE = "jinja2"  # in uv.lock; the service below reports a vulnerability for any version of it


class OsvHandler(http.server.BaseHTTPRequestHandler):
    """OSV's query API (POST /v1/query, https://google.github.io/osv.dev/post-v1-query/), one advisory."""

    def do_POST(self):  # noqa: N802 - the base class's name
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = {}
        if query["package"]["name"] == VULNERABLE:
            affected = {"package": {"name": VULNERABLE, "ecosystem": "PyPI"},
                        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "99.0"}]}]}  # fmt: skip
            advisory = {"id": "GHSA-aaaa-bbbb-cccc", "aliases": ["CVE-2099-0001"], "summary": "a test advisory"}
            answer = {"vulns": [{**advisory, "affected": [affected]}]}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@contextlib.contextmanager
def osv_service():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OsvHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    finally:
        server.shutdown()
        server.server_close()


def _run_audit(osv_url: str, exceptions: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_AUDIT_") and "proxy" not in k.lower()}
    env.update(PIP_AUDIT_VULNERABILITY_SERVICE="osv", PIP_AUDIT_OSV_URL=osv_url, NO_PROXY="127.0.0.1")
    command = [sys.executable, "-m", "tools.audit", "--exceptions", str(exceptions), *flags]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_pip_audit_over_the_lock_file_finds_what_the_service_reports(tmp_path):
    with osv_service() as url:
        found = _run_audit(url, _exceptions(tmp_path))
        assert found.returncode == 1, found.stdout + found.stderr
        (row,) = [line for line in found.stdout.splitlines() if line.startswith(VULNERABLE)]
        assert "CVE-2099-0001 (GHSA-aaaa-bbbb-cccc)" in row and "99.0" in row and "NOT EXCEPTED" in row
        assert "1 finding(s), 0 excepted" in found.stdout
        excepted = _run_audit(url, _exceptions(tmp_path, _entry(package=VULNERABLE)))
    assert excepted.returncode == 0, excepted.stdout + excepted.stderr
    assert "excepted until 2027-02-01" in excepted.stdout


def test_an_unreachable_service_is_said_and_fails_unless_allowed(tmp_path):
    with socket.socket() as closed:  # bound, never listening: every connection is refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1/query"
        refused = _run_audit(url, _exceptions(tmp_path))
        allowed = _run_audit(url, _exceptions(tmp_path), "--allow-unreachable")
    assert refused.returncode == 1 and "audit: WARNING: the audit did not run" in refused.stderr
    assert "pip-audit wrote no report" in refused.stderr and "Traceback" not in refused.stderr + refused.stdout
    assert allowed.returncode == 0 and "the audit did not run" in allowed.stderr and allowed.stdout == ""
