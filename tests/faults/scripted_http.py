"""An HTTP server on 127.0.0.1 that misbehaves on cue, for the network fault tests.

It serves a fixed set of files by path. Each request for a path takes the next step of that
path's script; the last step repeats, and a path without a script is served whole ("ok").
`hits[path]` counts the requests, so a test can tell whether a client retried.

Steps: "ok"; "404", "500", "503" (that status, no body); "truncated" (Content-Length of the
whole file, half of it sent, then the connection closed); "wrong" (as many bytes, each one
flipped); "silent" (the request is read, nothing is sent); "stall" (the headers and half the
body, then nothing); "drip" (the whole file in DRIP_PIECES pieces, one per DRIP_S); "huge" (headers announcing
2**60 bytes, then nothing). Whatever waits is released when the server stops.
"""

from __future__ import annotations

import collections
import contextlib
import http.server
import threading
from collections.abc import Iterator

DRIP_S = 0.05
DRIP_PIECES = 100  # so a file of 100 bytes or more takes DRIP_PIECES * DRIP_S = 5 s to arrive
HUGE_BYTES = 2**60  # an exbibyte: no disk has that much free


class ScriptedServer:
    def __init__(self, files: dict[str, bytes]):
        self.files = files  # URL path -> body
        self.scripts: dict[str, list[str]] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.url = ""

    def script(self, path: str, *steps: str) -> None:
        with self._lock:
            self.scripts[path] = list(steps)
            self.hits[path] = 0

    def next_step(self, path: str) -> str:
        with self._lock:
            self.hits[path] += 1
            steps = self.scripts.get(path, ["ok"])
            return steps.pop(0) if len(steps) > 1 else steps[0]


def _handler(scripted: ScriptedServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            pass

        def do_GET(self):  # noqa: N802 - the base class's name
            body = scripted.files.get(self.path)
            step = scripted.next_step(self.path) if body is not None else "404"
            if step in ("404", "500", "503"):
                self.send_response(int(step))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if step == "silent":
                scripted.stopping.wait()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(HUGE_BYTES if step == "huge" else len(body)))
            self.end_headers()
            if step == "ok":
                self.wfile.write(body)
            elif step == "wrong":
                self.wfile.write(bytes(b ^ 0xFF for b in body))
            elif step == "truncated":
                self.wfile.write(body[: len(body) // 2])
            elif step in ("stall", "huge"):
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                scripted.stopping.wait()
            elif step == "drip":
                piece = -(-len(body) // DRIP_PIECES)
                for start in range(0, len(body), piece):
                    if scripted.stopping.wait(DRIP_S):
                        return
                    self.wfile.write(body[start : start + piece])
                    self.wfile.flush()
            else:
                raise ValueError(f"unknown step {step!r}")

    return Handler


@contextlib.contextmanager
def serve_scripted(files: dict[str, bytes]) -> Iterator[ScriptedServer]:
    """Run a ScriptedServer on a free port of 127.0.0.1 for the block; its base URL is `.url`."""
    scripted = ScriptedServer(files)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(scripted))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    scripted.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield scripted
    finally:
        scripted.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()
