"""Networks that misbehave: a scripted server on 127.0.0.1 between the fetch stage and its files.

Transient faults (5xx, a refused, broken or silent connection) are retried and then the
file is used; persistent ones end in one message, with nothing left that a later run would
trust, and the later run, against a healed server, succeeds. Most cases run in-process; a few
run the real stage CLI for its one line on stderr and its exit code.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.data.datasets import DATASETS
from pipeline.data.download import DownloadError, DownloadSettings, fetch_dataset
from pipeline.data.transfer import MARGIN_BYTES
from tests.faults.scripted_http import DRIP_PIECES, serve_scripted
from tests.helpers import REPO
from tools.fake_data import md5, write_fashion_mnist

DATASET = "fashion_mnist"
FIRST, *_, LAST = DATASETS[DATASET].md5  # the files in the order they are fetched
PATIENT = DownloadSettings(timeout_s=30, deadline_s=120, backoff_s=0.01, attempts=4)  # no timeout fires by chance
QUICK = DownloadSettings(timeout_s=0.5, deadline_s=120, backoff_s=0.01, attempts=2)  # for servers that go silent


def fault(case: str, holds: str):
    return pytest.mark.fault(area="network", case=case, holds=holds)


@pytest.fixture(scope="module")
def mirror_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("mirror") / DATASET
    folder.mkdir()
    write_fashion_mnist(folder, train=60, test=20)
    return {name: folder / name for name in DATASETS[DATASET].md5}


@pytest.fixture
def sums(mirror_files) -> dict[str, dict[str, str]]:
    return {DATASET: {name: md5(path) for name, path in mirror_files.items()}}


@pytest.fixture
def server(mirror_files):
    with serve_scripted({f"/{DATASET}/{name}": path.read_bytes() for name, path in mirror_files.items()}) as scripted:
        yield scripted


@pytest.fixture
def refusing_port():
    """A port bound but not listening: a connection to it is refused, and no other process can take it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def fetch(tmp_path, mirror, sums, settings=PATIENT, **kwargs):
    return fetch_dataset(
        DATASET,
        tmp_path / "raw",
        mirror=mirror,
        overrides=sums,
        cache_dir=tmp_path / "cache",
        settings=settings,
        **kwargs,
    )


def assert_nothing_untrusted(tmp_path: Path, sums, missing: str) -> None:
    """No stage output at all, and in the cache only whole files that match their md5 (no temporary ones)."""
    assert not (tmp_path / "raw").exists()
    cached = {p.name: md5(p) for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    assert missing not in cached
    assert all(sums[DATASET].get(name) == digest for name, digest in cached.items()), cached


def assert_fetched(tmp_path: Path, sums) -> None:
    assert {p.name: md5(p) for p in (tmp_path / "raw").iterdir()} == sums[DATASET]


@pytest.mark.parametrize(
    ("script", "settings"),
    [
        pytest.param(
            ("500", "503", "ok"), PATIENT,
            marks=fault("HTTP 500, then 503, then the file", "retried after a pause each time; the file is used"),
            id="5xx",
        ),
        pytest.param(
            ("truncated", "ok"), PATIENT,
            marks=fault("a body cut short (Content-Length larger than what is sent)", "retried; the whole file is used"),
            id="truncated",
        ),
        pytest.param(
            ("silent", "ok"), QUICK,
            marks=fault("a server that accepts and sends nothing", "given up after the read timeout, retried"),
            id="silent",
        ),
        pytest.param(
            ("stall", "ok"), QUICK,
            marks=fault("a server that stops mid-body", "given up after the read timeout, retried"),
            id="stall",
        ),
    ],
)  # fmt: skip
def test_a_transient_fault_is_retried_and_the_file_used(tmp_path, server, sums, script, settings):
    server.script(f"/{DATASET}/{LAST}", *script)
    fetch(tmp_path, server.url, sums, settings)
    assert_fetched(tmp_path, sums)
    if settings is PATIENT:  # nothing can time out: each answer of the script was asked for once
        assert server.hits[f"/{DATASET}/{LAST}"] == len(script)


@pytest.mark.parametrize(
    ("step", "settings", "needles"),
    [
        pytest.param(
            "404", PATIENT, ["answered HTTP 404", "check BNBENCH_DATA_MIRROR"],
            marks=fault("404 Not Found", "asked once; one message naming the URL; nothing kept; a later run succeeds"),
            id="404",
        ),
        pytest.param(
            "500", PATIENT, ["HTTP 500", "all 4 attempts failed"],
            marks=fault("HTTP 500 on every attempt", "4 attempts, then one message; nothing kept; a later run succeeds"),
            id="500",
        ),
        pytest.param(
            "503", PATIENT, ["HTTP 503", "all 4 attempts failed"],
            marks=fault("HTTP 503 on every attempt", "4 attempts, then one message; nothing kept; a later run succeeds"),
            id="503",
        ),
        pytest.param(
            "truncated", PATIENT, ["the connection broke mid-file", "all 4 attempts failed"],
            marks=fault("a body cut short on every attempt", "no partial file kept; a later run succeeds"),
            id="truncated",
        ),
        pytest.param(
            "silent", QUICK, ["the server sent nothing for 0.5 s (BNBENCH_DOWNLOAD_TIMEOUT_S)", "all 2 attempts"],
            marks=fault("a server silent on every attempt", "the read timeout bounds each wait; nothing kept"),
            id="silent",
        ),
        pytest.param(
            "stall", QUICK, ["the server sent nothing for 0.5 s", "all 2 attempts"],
            marks=fault("a server that stops mid-body on every attempt", "no partial file kept; a later run succeeds"),
            id="stall",
        ),
    ],
)  # fmt: skip
def test_a_persistent_fault_stops_cleanly_and_a_later_run_succeeds(tmp_path, server, sums, step, settings, needles):
    path = f"/{DATASET}/{LAST}"
    server.script(path, step)
    with pytest.raises(DownloadError) as raised:
        fetch(tmp_path, server.url, sums, settings)
    message = str(raised.value)
    assert message.startswith(f"{DATASET}: ") and f"{server.url}{path}" in message and "\n" not in message
    assert all(needle in message for needle in needles), message
    if step == "404":
        assert server.hits[path] == 1  # not asked again: the mirror lacks the file
    elif settings is PATIENT:
        assert server.hits[path] == settings.attempts
    assert_nothing_untrusted(tmp_path, sums, LAST)
    server.script(path, "ok")
    fetch(tmp_path, server.url, sums, settings)
    assert_fetched(tmp_path, sums)


@fault("wrong bytes, of the right length", "refused at once, naming the file and both md5s; not kept; not retried")
def test_wrong_bytes_are_refused_with_both_checksums(tmp_path, server, sums, mirror_files):
    path = f"/{DATASET}/{LAST}"
    server.script(path, "wrong")
    flipped = tmp_path / "flipped"
    flipped.write_bytes(bytes(b ^ 0xFF for b in mirror_files[LAST].read_bytes()))
    with pytest.raises(DownloadError) as raised:
        fetch(tmp_path, server.url, sums)
    message = str(raised.value)
    assert f"{LAST} from {server.url}{path} failed verification" in message
    assert f"its md5 is {md5(flipped)}, expected {sums[DATASET][LAST]}" in message
    # Not retried: a mirror that serves these bytes serves them again (see is_transient).
    assert server.hits[path] == 1
    assert_nothing_untrusted(tmp_path, sums, LAST)
    server.script(path, "ok")
    fetch(tmp_path, server.url, sums)
    assert_fetched(tmp_path, sums)


@fault("connection refused (nothing listens on the port)", "retried, then one message naming the URL; nothing kept")
def test_a_refused_connection_is_retried_then_reported(tmp_path, server, sums, refusing_port):
    settings = DownloadSettings(timeout_s=30, deadline_s=120, backoff_s=0.01, attempts=3)
    mirror = f"http://127.0.0.1:{refusing_port}"
    with pytest.raises(DownloadError) as raised:
        fetch(tmp_path, mirror, sums, settings)
    message = str(raised.value)
    assert f"could not download {mirror}/{DATASET}/{FIRST}: Connection refused; all 3 attempts failed" in message
    assert_nothing_untrusted(tmp_path, sums, FIRST)
    fetch(tmp_path, server.url, sums, settings)
    assert_fetched(tmp_path, sums)


@fault("HTTP 503 for longer than the deadline allows", "no attempt starts that the deadline would cut; one message")
def test_the_deadline_stops_the_retries(tmp_path, server, sums):
    # Pauses of 0.05, 0.1, 0.2, ... s: before an 8th attempt they add up to 6.35 s, far past the
    # 0.5 s deadline, so only the deadline can end this early, whatever the machine's speed.
    settings = DownloadSettings(timeout_s=30, deadline_s=0.5, backoff_s=0.05, attempts=8)
    path = f"/{DATASET}/{LAST}"
    server.script(path, "503")
    with pytest.raises(DownloadError) as raised:
        fetch(tmp_path, server.url, sums, settings)
    assert "the deadline (BNBENCH_DOWNLOAD_DEADLINE_S=0.5 s) would pass before the next" in str(raised.value)
    assert 1 <= server.hits[path] < settings.attempts
    assert_nothing_untrusted(tmp_path, sums, LAST)


@fault("a body that trickles in past the deadline", "the download is cut at the deadline, not at its end; not kept")
def test_the_deadline_cuts_a_slow_body(tmp_path, server, sums, mirror_files):
    # The server sends the file in 100 pieces, one per 0.05 s: 5 s in all, ten times the deadline,
    # and never silent for the 30 s read timeout, so only the deadline can stop it. The first file
    # is big enough for 100 pieces.
    settings = DownloadSettings(timeout_s=30, deadline_s=0.5, backoff_s=0.01, attempts=4)
    path = f"/{DATASET}/{FIRST}"
    server.script(path, "drip")
    with pytest.raises(DownloadError) as raised:
        fetch(tmp_path, server.url, sums, settings)
    assert f"{server.url}{path}: not complete 0.5 s after the fetch began" in str(raised.value)
    assert server.hits[path] == 1 and mirror_files[FIRST].stat().st_size >= DRIP_PIECES
    assert_nothing_untrusted(tmp_path, sums, FIRST)


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("cache", marks=fault("too little free space in the download cache", "refused before a byte is written, naming the folder, what is needed and what is free"), id="cache"),
        pytest.param("out", marks=fault("too little free space in the stage's output folder", "refused before a byte is copied; the folder is not even created"), id="out"),
        pytest.param("local-mirror", marks=fault("too little free space for a copy from a local mirror", "refused the same way as a download"), id="local-mirror"),
    ],
)  # fmt: skip
def test_too_little_free_space_is_refused_before_writing(tmp_path, server, sums, mirror_files, where):
    # Free space is injected, not made: the folder checked is told it has room for the margin only.
    tight = tmp_path if where == "out" else tmp_path / "cache" / DATASET
    measured = []

    def disk_usage(folder):
        measured.append(folder)
        return SimpleNamespace(free=MARGIN_BYTES if folder == tight else 2**50)

    mirror = str(mirror_files[FIRST].parent.parent) if where == "local-mirror" else server.url
    with pytest.raises(DownloadError) as raised:
        fetch(tmp_path, mirror, sums, disk_usage=disk_usage)
    folder = tmp_path / "raw" if where == "out" else tight
    size = (
        sum(p.stat().st_size for p in mirror_files.values()) if where == "out" else mirror_files[FIRST].stat().st_size
    )
    assert str(raised.value).startswith(f"{DATASET}: {folder}: not enough free disk space")
    assert f"needs {size} bytes plus 64.0 MiB to spare, but 64.0 MiB is free" in str(raised.value)
    assert tight in measured
    assert not (tmp_path / "raw").exists()
    if where != "out":
        assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))
    # The same fetch with room to spare succeeds.
    fetch(tmp_path, mirror, sums, disk_usage=lambda folder: SimpleNamespace(free=2**50))
    assert_fetched(tmp_path, sums)


# --- the real stage CLI: exit code 1, one line on stderr, no traceback, no files ---------------

CLI_CASES = [
    pytest.param("404", "0.5", "answered HTTP 404", marks=fault("404, through the fetch stage's CLI", "exit 1; one line on stderr; no files"), id="404"),
    pytest.param("wrong", "0.5", "failed verification: its md5 is ", marks=fault("wrong bytes, through the fetch stage's CLI", "exit 1; one line on stderr; no files"), id="wrong"),
    pytest.param("503", "0.5", "HTTP 503 Service Unavailable; all 4 attempts failed", marks=fault("HTTP 503 throughout, through the fetch stage's CLI", "exit 1; one line on stderr; no files"), id="503"),
    pytest.param("truncated", "0.5", "the connection broke mid-file", marks=fault("a body cut short throughout, through the fetch stage's CLI", "exit 1; one line on stderr; no files"), id="truncated"),
    pytest.param("silent", "0.3", "the server sent nothing for 0.3 s", marks=fault("a silent server, through the fetch stage's CLI", "exit 1 within the set timeouts; one line on stderr; no files"), id="silent"),
    pytest.param("huge", "0.5", "not enough free disk space", marks=fault("a Content-Length larger than any disk, through the fetch stage's CLI", "exit 1 before writing; one line on stderr; no files"), id="disk"),
    pytest.param("refused", "0.5", "Connection refused; all 4 attempts failed", marks=fault("connection refused, through the fetch stage's CLI", "exit 1; one line on stderr; no files"), id="refused"),
]  # fmt: skip


@pytest.mark.parametrize(("step", "timeout_s", "needle"), CLI_CASES)
def test_the_fetch_stage_reports_a_network_fault_in_one_line(tmp_path, server, refusing_port, step, timeout_s, needle):
    # The first file is the faulty one and the published checksums apply (no override, so no
    # warning line): the stage fails before any other file is asked for.
    server.script(f"/{DATASET}/{FIRST}", step)
    mirror = f"http://127.0.0.1:{refusing_port}" if step == "refused" else server.url
    env = {k: v for k, v in os.environ.items() if not k.startswith("BNBENCH_")}
    env.update(
        BNBENCH_DATA_MIRROR=mirror,
        BNBENCH_CACHE_DIR=str(tmp_path / "cache"),
        BNBENCH_DOWNLOAD_TIMEOUT_S=timeout_s,
        BNBENCH_DOWNLOAD_DEADLINE_S="60",
        BNBENCH_DOWNLOAD_BACKOFF_S="0.01",
    )
    out = tmp_path / "raw"
    argv = ["--params", str(REPO / "params.yaml"), "--dataset", DATASET, "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.fetch", *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bnbench: {DATASET}: "), done.stderr
    assert f"{mirror}/{DATASET}/{FIRST}" in lines[0] and needle in lines[0], lines[0]
    assert not out.exists()
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


@fault("a download setting that is not a number of seconds", "one message naming the variable; exit 1")
def test_a_bad_download_setting_is_named(monkeypatch):
    monkeypatch.setenv("BNBENCH_DOWNLOAD_DEADLINE_S", "ten minutes")
    with pytest.raises(DownloadError, match=r"BNBENCH_DOWNLOAD_DEADLINE_S='ten minutes': expected a number of seconds"):
        DownloadSettings.from_env()
    monkeypatch.setenv("BNBENCH_DOWNLOAD_DEADLINE_S", "600")
    monkeypatch.setenv("BNBENCH_DOWNLOAD_TIMEOUT_S", "0")
    with pytest.raises(DownloadError, match="BNBENCH_DOWNLOAD_TIMEOUT_S='0'"):
        DownloadSettings.from_env()
    monkeypatch.setenv("BNBENCH_DOWNLOAD_TIMEOUT_S", "5")
    assert DownloadSettings.from_env() == DownloadSettings(timeout_s=5, deadline_s=600)
