"""The inference server every Aegis image runs: KServe's Open Inference Protocol v2 over REST.

    PYTHONPATH=/app python3.11 -m aegis_runtime.server

It is shared by every model and uses the standard library only; the model author's `/app/server/handler.py`
supplies `SIGNATURE` (see signature.py) and `Handler(model_dir)` with `predict(inputs) -> outputs`. Tensors reach
`predict` as (nested) Python lists shaped as the request says; outputs may be lists or anything with `tolist()`.
`predict` also gets the request's `parameters` dict (less the protocol's own `binary_data_output`) if it accepts
a `parameters` argument. It is called concurrently from request threads unless the handler sets `thread_safe =
False`, which serializes the calls. To reject input that the signature cannot describe, `predict` raises
`aegis_runtime.InvalidInput("what is wrong")`: the client gets 400 with that message. Any other exception
(ValueError too: numpy raises it for bugs) is the model's fault: 500.

Tensor data travels as JSON or, with the binary tensor data extension (binary.py; what `tritonclient` sends by
default), as raw bytes after the JSON; a request may mix both, and asks for binary outputs per output
(`binary_data`) or for all (`binary_data_output`).

Endpoints (GET unless noted; every error body is `{"error": "..."}`):

    /v2/health/live                                200 {"live": true}
    /v2/health/ready                               200 {"ready": true} | 503 {"ready": false}
    /v2                                            200 {"name", "version", "extensions"}
    /v2/models/NAME[/versions/VERSION]             200 {"name", "versions", "platform", "inputs", "outputs"}
    /v2/models/NAME[/versions/VERSION]/ready       200 | 503 {"name", "ready"}
    POST /v2/models/NAME[/versions/VERSION]/infer  200 {"model_name", "model_version", "id", "outputs"}
                                                   (+ binary outputs, with Inference-Header-Content-Length)

Status codes: 400 a request that is not JSON, not an object, or breaks the signature (the message names the
tensor and the problem), binary tensor data that does not add up, input the handler rejects with InvalidInput,
an invalid Content-Length, or an HTTP/1.1 request without exactly one Host header; 404 an unknown path, model or
version; 405 the wrong method (with `Allow`); 408 headers or a body that do not arrive in time (see the timeouts
below); 411 a POST without Content-Length, or any request with Transfer-Encoding (chunked bodies are refused, never
waited for); 413 a body over the limit (refused from its headers, before reading it; also answers `Expect:
100-continue`); 500 the handler raised or returned outputs that break its own signature (the body carries an
error id; the log has the same id and the traceback); 501 an unknown method; 503 the model is loading, or cannot
run (a CUDA image without a usable GPU: it never falls back to the CPU), or the server already holds
AEGIS_MAX_CONNECTIONS connections (sent as soon as the connection is accepted, with `Retry-After`). Responses
after a 400 for Host, 408, 411 or 413 close the connection.

Each connection has a worker thread, at most AEGIS_MAX_CONNECTIONS of them. A request's line and headers must
arrive within AEGIS_HEADER_TIMEOUT (counted from the connection's accept for its first request, from the first
byte for the next ones), its body within AEGIS_BODY_TIMEOUT, however steadily the bytes trickle in; a connection
that sends nothing is closed after AEGIS_HEADER_TIMEOUT, an idle keep-alive one after AEGIS_IDLE_TIMEOUT.

Not ready means: still constructing the handler, shutting down, or the declared accelerator is missing. The
process exits 1 at once (one JSON log line saying why) when the manifest or the handler cannot be loaded, when
the handler's constructor raises, or when the port cannot be bound; 2 when an AEGIS_* setting is invalid.
SIGTERM or SIGINT start a graceful shutdown: readiness turns false, the listening socket closes, idle keep-alive
connections are closed, in-flight requests finish (for at most AEGIS_SHUTDOWN_TIMEOUT seconds; a second signal
cuts the wait short), then the process exits 0.

Every line on stdout is one JSON object (`time`, `level`, `message` and fields such as `method`, `path`,
`status`, `duration_ms`, `request_id`, `error_id`); text that the handler or its libraries print, log or warn
goes through the same formatter. Nothing is written to the filesystem (no bytecode either).

Environment (times in seconds):

    AEGIS_APP_DIR            /app      manifest.yaml, server/handler.py and model/ live here
    AEGIS_HOST               0.0.0.0   address to listen on (an IPv6 address such as :: works too)
    AEGIS_PORT               8080      port to listen on; 0 picks a free one (logged in the `listening` line)
    AEGIS_MAX_BODY_BYTES     16777216  largest request body accepted
    AEGIS_MAX_CONNECTIONS    256       connections served at once (one worker thread each); more get 503
    AEGIS_HEADER_TIMEOUT     10        total time for a request's line and headers to arrive
    AEGIS_BODY_TIMEOUT       60        total time for a request's body to arrive
    AEGIS_IO_TIMEOUT         30        time one socket read or write may block inside a request
    AEGIS_IDLE_TIMEOUT       75        time an idle keep-alive connection stays open
    AEGIS_SHUTDOWN_TIMEOUT   8         time in-flight requests get to finish after SIGTERM/SIGINT
    For tests only (they stand in for the GPU probe, which otherwise looks at the real devices):
    AEGIS_NVIDIA_DEVICE_DIR  /dev      where to look for nvidiactl and nvidia<N> device nodes
    AEGIS_LIBCUDA            libcuda.so.1  the CUDA driver library that must load (ctypes)

This module is the process (signals, start-up, shutdown); `config.py` reads the environment above, `model.py`
loads the handler and checks the accelerator, `http_api.py` serves the protocol and `logs.py` writes the logs.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any, List, Mapping

from .config import Config, ConfigError
from .http_api import InferenceServer
from .logs import configure_logging
from .model import LoadError, Model

log = logging.getLogger("aegis")


class _Wakeup:
    """A self-pipe: safe to set from a signal handler (no locks), and what the main thread sleeps on."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)

    def set(self) -> None:
        try:
            os.write(self._write, b"!")
        except BlockingIOError:
            pass  # the pipe is full: the main thread has plenty to wake up for

    @property
    def write_fd(self) -> int:
        return self._write

    def wait(self) -> None:
        os.read(self._read, 1)

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


def run(environ: Mapping[str, str]) -> int:
    """Load, serve until SIGTERM/SIGINT (or a handler that fails to load), drain; the process's exit code."""
    try:
        config = Config.from_env(environ)
    except ConfigError as e:
        log.error(f"invalid configuration: {e}")
        return 2
    wakeup = _Wakeup()
    signals: List[int] = []
    failures: List[LoadError] = []

    def on_signal(signum: int, frame: Any) -> None:
        signals.append(signum)
        wakeup.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The OS may deliver a signal to any thread; the wakeup fd makes sure the main thread's read returns.
    signal.set_wakeup_fd(wakeup.write_fd)

    try:
        model = Model.load(config)
    except LoadError as e:
        e.log()
        return 1
    if signals:
        log.info("stopped before serving", extra={"fields": {"signal": signal.Signals(signals[0]).name}})
        return 0
    try:
        server = InferenceServer(config, model)
    except OSError as e:
        log.error(f"cannot listen on {config.host}:{config.port}: {e.strerror or e}")
        return 1
    accept = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="aegis-accept")
    accept.daemon = True
    accept.start()
    host, port = server.server_address[:2]
    log.info(
        "listening",
        extra={"fields": {"host": host, "port": port, "model": model.name, "version": model.version,
                          "accelerator": model.accelerator}},
    )
    if model.problem:
        log.error(
            f"model {model.name!r} is not ready: {model.problem}", extra={"fields": {"accelerator": model.accelerator}}
        )
    else:

        def construct() -> None:
            started = time.monotonic()
            try:
                model.construct()
            except LoadError as e:
                e.log()
                failures.append(e)
                wakeup.set()
                return
            log.info("ready", extra={"fields": {"load_seconds": round(time.monotonic() - started, 3)}})

        threading.Thread(target=construct, name="aegis-load", daemon=True).start()

    while not signals and not failures:
        wakeup.wait()

    reason = "the model handler failed to load" if failures else f"{signal.Signals(signals[0]).name} received"
    in_flight = server.begin_shutdown()
    log.info(
        f"shutting down: {reason}",
        extra={"fields": {"connections": in_flight, "timeout_s": config.shutdown_timeout}},
    )
    left = server.wait_for_connections(config.shutdown_timeout, give_up=lambda: len(signals) > 1)
    if left:
        log.warning(
            f"shutdown: {left} connection(s) still busy after waiting; exiting anyway",
            extra={"fields": {"connections": left}},
        )
    server.server_close()
    code = 1 if failures else 0
    log.info("stopped", extra={"fields": {"exit_code": code}})
    return code


def main() -> None:
    sys.dont_write_bytecode = True
    stdout = sys.stdout
    configure_logging(stdout)
    code = 1
    try:
        code = run(os.environ)
    except BaseException:
        log.critical("the server crashed", exc_info=True)
    finally:
        for stream in (stdout, sys.__stderr__):
            try:
                stream.flush()
            except Exception:
                pass
        # Exit now: a handler's non-daemon threads or a request stuck past the shutdown timeout must not hang it.
        os._exit(code)


if __name__ == "__main__":
    main()
