"""For the tests: servers on 127.0.0.1. A server process is started, awaited until it answers and stopped by
its PID; an in-process HTTP server runs on a thread. Stdlib only: the test helpers of several resolves
(the registry's, the Debian fetcher's, the remote-cache test's) share it."""
from __future__ import annotations

import base64
import contextlib
import http.server
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_process(argv: Sequence[str], log: Path, ready: Callable[[], bool], name: str,
                    timeout: float = 20, poll: float = 0.05, process_group: bool = False) -> Iterator[None]:
    """Runs `argv` (output to `log`) until the block ends; first waits until `ready()` says it answers (an
    OSError counts as not yet). Fails with the log if it exits or is not ready within `timeout` seconds.
    With `process_group`, the server runs in a session of its own and is stopped with every process it
    started (its group: the PID is the group id)."""
    with open(log, "wb") as out:
        process = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=process_group)
        stop = (lambda sig: os.killpg(process.pid, sig)) if process_group else (lambda sig: os.kill(process.pid, sig))
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if ready():
                        break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{name} did not start: {log.read_text(errors='replace')}")
                time.sleep(poll)
            yield
        finally:
            stop(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                stop(signal.SIGKILL)
                process.wait()
            if process_group:
                with contextlib.suppress(ProcessLookupError):
                    stop(signal.SIGKILL)  # children that outlived the leader


def accepts_connections(port: int) -> bool:
    socket.create_connection(("127.0.0.1", port), timeout=1).close()
    return True


@contextlib.contextmanager
def serving(server: http.server.HTTPServer) -> Iterator[int]:
    """Serves `server` on a thread until the block ends; yields its port."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def serving_guarded_file(path: str, content: bytes, username: str, password: str, query: str,
                         seen: list | None = None, echo: bool = False) -> Iterator[int]:
    """Serves `content` at `path` only to a GET with Basic `username:password` and exactly `query` (a signed
    URL's); 403 otherwise, 404 at any other path. With `echo`, each error message repeats the request's path, as
    some servers do (what a redacting client must not pass on). `seen` gets each request's (path, Authorization).
    Yields the port."""
    expected_auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if seen is not None:
                seen.append((self.path, self.headers.get("Authorization")))
            if not self.path.startswith(path):
                self.send_error(404, f"nothing at {self.path}" if echo else None)
            elif self.path != f"{path}?{query}" or self.headers.get("Authorization") != expected_auth:
                self.send_error(403, f"the signature of {self.path} does not match" if echo else None)
            else:
                self.send_response(200)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        def log_message(self, *args) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        yield port
