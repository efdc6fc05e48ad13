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
"""
from __future__ import annotations

import datetime
import importlib.util
import inspect
import io
import json
import logging
import math
import os
import re
import select
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple
from urllib.parse import unquote, urlsplit

from . import binary
from . import manifest as manifest_file
from .signature import InvalidInput, OutputError, Signature, SignatureError

RUNTIME_VERSION = "1.0.0"
SERVER_NAME = "aegis"
EXTENSIONS = ("binary_tensor_data",)  # the Open Inference Protocol extensions the server metadata lists
# After refusing a body it did not read (411, 413), the server keeps reading and discarding for this long before
# closing, so that a client still sending gets to read the error instead of a connection reset.
LINGER_SECONDS = 1.0
_MODEL_PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/(?P<action>ready|infer))?$")
_DIGITS = re.compile(r"^[0-9]{1,19}$")
_ACCELERATOR = re.compile(r"^cuda-\d+\.\d+$")

log = logging.getLogger("aegis")


# --- Configuration --------------------------------------------------------------------------------------------


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Config:
    app_dir: str = "/app"
    host: str = "0.0.0.0"
    port: int = 8080
    max_body_bytes: int = 16 * 1024 * 1024
    max_connections: int = 256
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    shutdown_timeout: float = 8.0
    idle_timeout: float = 75.0
    io_timeout: float = 30.0
    nvidia_device_dir: str = "/dev"
    libcuda: str = "libcuda.so.1"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "Config":
        defaults = cls()

        def number(name: str, default: Any, kind: type, low: float, high: float = math.inf) -> Any:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a number") from None
            if not low <= value <= high:
                raise ConfigError(f"{name}={raw!r} is out of range [{low}, {high}]")
            return value

        return cls(
            app_dir=environ.get("AEGIS_APP_DIR") or defaults.app_dir,
            host=environ.get("AEGIS_HOST") or defaults.host,
            port=number("AEGIS_PORT", defaults.port, int, 0, 65535),
            max_body_bytes=number("AEGIS_MAX_BODY_BYTES", defaults.max_body_bytes, int, 0),
            max_connections=number("AEGIS_MAX_CONNECTIONS", defaults.max_connections, int, 1, 65536),
            header_timeout=number("AEGIS_HEADER_TIMEOUT", defaults.header_timeout, float, 0.01, 86400),
            body_timeout=number("AEGIS_BODY_TIMEOUT", defaults.body_timeout, float, 0.01, 86400),
            shutdown_timeout=number("AEGIS_SHUTDOWN_TIMEOUT", defaults.shutdown_timeout, float, 0, 86400),
            idle_timeout=number("AEGIS_IDLE_TIMEOUT", defaults.idle_timeout, float, 0.01, 86400),
            io_timeout=number("AEGIS_IO_TIMEOUT", defaults.io_timeout, float, 0.01, 86400),
            nvidia_device_dir=environ.get("AEGIS_NVIDIA_DEVICE_DIR") or defaults.nvidia_device_dir,
            libcuda=environ.get("AEGIS_LIBCUDA") or defaults.libcuda,
        )


# --- The model -------------------------------------------------------------------------------------------------


class LoadError(Exception):
    """The model cannot be served; the message says why, in one line (plus the traceback of the handler's error)."""

    def __init__(self, message: str, cause: Optional[BaseException] = None) -> None:
        super().__init__(message)
        self.traceback = (
            "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)).rstrip() if cause else None
        )

    def log(self) -> None:
        log.error(str(self), extra={"fields": {"traceback": self.traceback} if self.traceback else {}})


class Model:
    """The handler plus what the protocol needs to know about it.

    `state` is "loading" until the handler is constructed, then "ready"; "unavailable" (with `problem`) when the
    declared accelerator is missing, in which case the handler is never constructed.
    """

    def __init__(self, manifest: Dict[str, str], signature: Signature, handler_class: type, model_dir: str) -> None:
        self.manifest = manifest
        self.name = manifest["model_id"]
        self.version = manifest["version"]
        self.accelerator = manifest.get("accelerator") or "cpu"
        self.signature = signature
        self.handler_class = handler_class
        self.model_dir = model_dir
        self.state = "loading"
        self.problem: Optional[str] = None
        self.handler: Any = None
        self._lock: Optional[threading.Lock] = None
        self._pass_parameters = False

    @classmethod
    def load(cls, config: Config) -> "Model":
        """Read the manifest, import the handler and check its SIGNATURE; raise LoadError on any problem."""
        manifest_path = os.path.join(config.app_dir, "manifest.yaml")
        try:
            manifest = manifest_file.load(manifest_path)
        except OSError as e:
            raise LoadError(f"cannot read the manifest {manifest_path}: {e.strerror or e}") from e
        except ValueError as e:
            raise LoadError(f"invalid manifest: {e}") from e
        for key in ("model_id", "version"):
            if not manifest.get(key):
                raise LoadError(f"invalid manifest: {manifest_path} has no {key}")
        handler_path = os.path.join(config.app_dir, "server", "handler.py")
        module = _import_handler(handler_path)
        raw_signature = getattr(module, "SIGNATURE", None)
        if raw_signature is None:
            raise LoadError(f"the model handler {handler_path} defines no SIGNATURE")
        try:
            signature = Signature.from_dict(raw_signature)
        except ValueError as e:
            raise LoadError(f"the SIGNATURE in {handler_path} is invalid: {e}") from e
        handler_class = getattr(module, "Handler", None)
        if not isinstance(handler_class, type):
            raise LoadError(f"the model handler {handler_path} defines no Handler class")
        if not callable(getattr(handler_class, "predict", None)):
            raise LoadError(f"the Handler class in {handler_path} has no predict(inputs) method")
        model = cls(manifest, signature, handler_class, os.path.join(config.app_dir, "model"))
        model.problem = accelerator_problem(model.accelerator, config.nvidia_device_dir, config.libcuda)
        if model.problem:
            model.state = "unavailable"
        return model

    def construct(self) -> None:
        """Build the handler (may take long: weights load here); raise LoadError if it raises."""
        try:
            handler = self.handler_class(self.model_dir)
        except BaseException as e:  # the model author's code: SystemExit included
            if isinstance(e, KeyboardInterrupt):
                raise
            raise LoadError(
                f"the model handler failed to load: Handler({self.model_dir!r}) raised {_describe(e)}", e
            ) from None
        try:
            parameters = inspect.signature(handler.predict).parameters
        except (TypeError, ValueError):
            parameters = {}  # type: ignore[assignment]
        self._pass_parameters = "parameters" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        )
        self._lock = None if getattr(handler, "thread_safe", True) else threading.Lock()
        self.handler = handler
        self.state = "ready"

    def predict(self, inputs: Dict[str, list], parameters: dict) -> Any:
        kwargs = {"parameters": parameters} if self._pass_parameters else {}
        if self._lock is None:
            return self.handler.predict(inputs, **kwargs)
        with self._lock:
            return self.handler.predict(inputs, **kwargs)

    def metadata(self) -> dict:
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.manifest.get("framework") or "python",
            **self.signature.to_metadata(),
        }


def _import_handler(path: str) -> Any:
    if not os.path.isfile(path):
        raise LoadError(f"the model handler {path} does not exist")
    sys.dont_write_bytecode = True  # the root filesystem is read-only: never try to write __pycache__
    spec = importlib.util.spec_from_file_location("handler", path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot load the model handler {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["handler"] = module  # dataclasses, pickle and typing look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # SyntaxError, ImportError, SystemExit: anything the handler's import raises
        sys.modules.pop("handler", None)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise LoadError(f"cannot import the model handler {path}: {_describe(e)}", e) from None
    return module


def accelerator_problem(accelerator: str, device_dir: str = "/dev", libcuda: str = "libcuda.so.1") -> Optional[str]:
    """Why the declared accelerator is not usable here, or None.

    A CUDA image must see an NVIDIA GPU (the device nodes the NVIDIA container runtime mounts, and a CUDA driver
    library that loads): serving it on the CPU would silently change latency and results. The probe loads the
    driver library but does not initialise CUDA, so a handler can still fork before its own CUDA initialisation.
    """
    if accelerator == "cpu":
        return None
    if not _ACCELERATOR.match(accelerator):
        return f"unknown accelerator {accelerator!r} in the manifest (expected `cpu` or `cuda-MAJOR.MINOR`)"
    control = os.path.join(device_dir, "nvidiactl")
    try:
        gpus = sorted(n for n in os.listdir(device_dir) if re.match(r"^nvidia\d+$", n))
    except OSError:
        gpus = []
    if not os.path.exists(control) or not gpus:
        return (
            f"accelerator {accelerator} is declared but no NVIDIA GPU is visible ({control} or "
            f"{os.path.join(device_dir, 'nvidia<N>')} missing); refusing to serve on the CPU"
        )
    nodes = [control] + [os.path.join(device_dir, g) for g in gpus]
    unusable = [p for p in nodes if not os.access(p, os.R_OK | os.W_OK)]
    if unusable:
        return (
            f"accelerator {accelerator} is declared but {', '.join(unusable)} cannot be opened; "
            "refusing to serve on the CPU"
        )
    try:
        import ctypes  # only CUDA images need it

        ctypes.CDLL(libcuda)
    except (ImportError, OSError) as e:
        return (
            f"accelerator {accelerator} is declared but the CUDA driver library {libcuda} cannot be loaded ({e}); "
            "refusing to serve on the CPU"
        )
    return None


def _describe(e: BaseException) -> str:
    text = str(e).strip().replace("\n", " ")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# --- HTTP ------------------------------------------------------------------------------------------------------


class HttpError(Exception):
    def __init__(self, status: int, message: str, *, close: bool = False, unread_body: bool = False,
                 headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.close = close or unread_body
        self.unread_body = unread_body
        self.headers = headers


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


@dataclass(frozen=True)
class _Body:
    """A response body that is not a JSON object: the binary tensor data extension's JSON + tensor bytes."""

    content: bytes
    content_type: str
    headers: Tuple[Tuple[str, str], ...] = ()


class _DeadlinePassed(Exception):
    """The part of the request being read (headers or body) did not arrive within its total time."""


class _DeadlineReader(io.RawIOBase):
    """The connection's reads, under a total deadline for the part of the request being read when one is set.

    Each read is also bounded by the socket's own timeout (AEGIS_IO_TIMEOUT, socket.timeout as usual); the deadline
    stops a client that sends a byte just before each read would time out from keeping a worker forever.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self.deadline: Optional[float] = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> Optional[int]:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            timeout = self._sock.gettimeout()
            wait = remaining if timeout is None else min(timeout, remaining)
            if remaining <= 0 or not _readable(self._sock, wait):
                if wait >= remaining:
                    raise _DeadlinePassed()
                raise socket.timeout("timed out")
        try:
            return self._sock.recv_into(buffer)
        except BlockingIOError:
            return None  # a non-blocking socket with nothing to read (see _wait_for_request)


def _readable(sock: socket.socket, timeout: float) -> bool:
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(max(timeout, 0) * 1000))


class RequestHandler(BaseHTTPRequestHandler):
    """One connection: HTTP/1.1 with keep-alive, handled in its own thread."""

    protocol_version = "HTTP/1.1"
    # What a request line too broken to name its version is answered with: status line and headers, not the bare
    # HTTP/0.9 body http.server would send.
    default_request_version = "HTTP/1.0"
    server_version = f"{SERVER_NAME}/{RUNTIME_VERSION}"
    disable_nagle_algorithm = True
    server: "InferenceServer"

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.config.io_timeout)
        self.rfile.close()  # the stdlib's reader: ours adds the header and body deadlines
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)
        self._accepted = self._started = time.monotonic()
        self._requests = 0
        self._fields: Dict[str, Any] = {}

    def version_string(self) -> str:
        return self.server_version

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass  # _send logs every response as JSON

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.info(format % args, extra={"fields": {"client": self.client_address[0]}})

    # Keep-alive: wait for the next request without blocking shutdown.

    def handle(self) -> None:
        self.close_connection = False
        while not self.close_connection:
            if not self._wait_for_request():
                return
            try:
                self.handle_one_request()
            except _DeadlinePassed:  # from the request line or the headers (the body's is handled in _read_body)
                timeout = self.server.config.header_timeout
                self._send_error(HttpError(
                    HTTPStatus.REQUEST_TIMEOUT,
                    f"the request line and headers did not arrive within {timeout:g} s (AEGIS_HEADER_TIMEOUT)",
                    unread_body=True,
                ))
            finally:
                self._reader.deadline = None

    def _wait_for_request(self) -> bool:
        """True once the next request starts arriving, with its header deadline set; False to close the connection.

        A new connection has AEGIS_HEADER_TIMEOUT from its accept to send its first request's headers; later
        requests may be AEGIS_IDLE_TIMEOUT apart, then have AEGIS_HEADER_TIMEOUT from their first byte.
        """
        config = self.server.config
        first = self._requests == 0
        self._requests += 1
        # What _send and the logs read, reset so that an early error never reports the previous request.
        self.command, self.path, self.request_version = None, "", self.default_request_version
        sock = self.connection
        try:
            sock.setblocking(False)
            try:
                pending = bool(self.rfile.peek(1))  # a pipelined request may already be buffered
            finally:
                sock.settimeout(self.server.config.io_timeout)
        except (OSError, ValueError):
            return False
        if not pending:
            poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLPRI)
            poller.register(self.server.wakeup_fd, select.POLLIN)  # readable once shutdown begins
            deadline = self._accepted + config.header_timeout if first else time.monotonic() + config.idle_timeout
            while True:
                events = poller.poll(max(deadline - time.monotonic(), 0) * 1000)
                if any(fd == sock.fileno() for fd, _ in events):
                    break  # a request (or the client closing) arrives: handle_one_request reads it
                if self.server.draining or time.monotonic() >= deadline:
                    return False
        self._started = time.monotonic()
        self._fields = {}
        self._reader.deadline = (self._accepted if first else self._started) + config.header_timeout
        return True

    # Requests.

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def parse_request(self) -> bool:
        """http.server's parsing, then the checks every request must pass before its body is read."""
        parsed = super().parse_request()  # reads the headers; answers `Expect: 100-continue` (below)
        self._reader.deadline = None
        if not parsed:
            return False
        try:
            self._check_host()
        except HttpError as e:
            self._send_error(e)
            return False
        return True

    def handle_expect_100(self) -> bool:
        """`Expect: 100-continue`: refuse an unacceptable request before the client sends its body."""
        try:
            self._check_host()
            self._body_length()
        except HttpError as e:
            self._send_error(e)
            return False
        return super().handle_expect_100()

    def _check_host(self) -> None:
        """RFC 9112 section 3.2: an HTTP/1.1 request has exactly one Host header; any request at most one."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:
            message = f"the request has {len(hosts)} Host headers; send one"
        elif not hosts and self.request_version not in ("HTTP/0.9", "HTTP/1.0"):
            message = f"the request has no Host header, which {self.request_version} requires"
        else:
            return
        has_body = self.headers.get("Content-Length") is not None or self.headers.get("Transfer-Encoding") is not None
        raise HttpError(HTTPStatus.BAD_REQUEST, message, close=True, unread_body=has_body)

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """http.server's own errors (malformed request line or headers, unknown method) as JSON, then close."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._send_error(HttpError(code, message or phrase, close=True))

    def _dispatch(self) -> None:
        try:
            try:
                body = self._read_body()
                status, payload = self._route(body)
            except HttpError as e:
                self._send_error(e)
                return
            self._send(status, payload)
        except (ConnectionError, socket.timeout) as e:  # the client went away or stopped reading
            self.close_connection = True
            log.info("connection lost", extra={"fields": {**self._request_fields(), "error": _describe(e)}})
        except Exception:  # a bug in the server itself: answer 500, log the traceback
            error_id = uuid.uuid4().hex[:16]
            self._fields["error_id"] = error_id
            log.error("internal server error", exc_info=True, extra={"fields": self._request_fields()})
            self.close_connection = True
            try:
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal server error (error id {error_id})"})
            except Exception:
                pass

    def _route(self, body: bytes) -> Tuple[int, Any]:
        path = self._path()
        model = self.server.model
        if path == "/v2/health/live":
            self._allow("GET")
            return HTTPStatus.OK, {"live": True}
        if path == "/v2/health/ready":
            self._allow("GET")
            ready = self.server.ready
            return (HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE), {"ready": ready}
        if path == "/v2":
            self._allow("GET")
            return HTTPStatus.OK, {"name": SERVER_NAME, "version": RUNTIME_VERSION, "extensions": list(EXTENSIONS)}
        match = _MODEL_PATH.match(path)
        if match is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such endpoint: {_short(path)}")
        name = unquote(match.group("name"))
        if name != model.name:
            raise HttpError(HTTPStatus.NOT_FOUND, f"unknown model {_short(name)!r}; this server serves {model.name!r}")
        version = match.group("version")
        if version is not None and unquote(version) != model.version:
            raise HttpError(
                HTTPStatus.NOT_FOUND,
                f"model {model.name!r} has no version {_short(unquote(version))!r} (versions: {model.version})",
            )
        action = match.group("action")
        if action is None:
            self._allow("GET")
            return HTTPStatus.OK, model.metadata()
        if action == "ready":
            self._allow("GET")
            ready = self.server.ready
            return (HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE), {"name": model.name, "ready": ready}
        self._allow("POST")
        return self._infer(body)

    def _infer(self, body: bytes) -> Tuple[int, Any]:
        model = self.server.model
        self._fields["request_id"] = uuid.uuid4().hex  # replaced by the request's own `id` once it is parsed
        if model.state == "loading":
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, f"model {model.name!r} is still loading")
        if model.state != "ready":
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, f"model {model.name!r} is not ready: {model.problem}")
        header = self.headers.get(binary.HEADER)
        try:
            text, binary_data = binary.split_body(body, header)
        except binary.BinaryDataError as e:
            raise HttpError(HTTPStatus.BAD_REQUEST, str(e)) from None
        try:
            request = json.loads(text.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, NaN, nesting too deep
            raise HttpError(HTTPStatus.BAD_REQUEST, f"invalid JSON: {_short(str(e), 200)}") from None
        if isinstance(request, dict) and isinstance(request.get("id"), str):
            self._fields["request_id"] = request["id"]
        try:
            chunks = binary.input_chunks(request, binary_data, has_header=header is not None)
            infer = model.signature.parse_request(request, chunks)
            names = infer.outputs if infer.outputs is not None else [o.name for o in model.signature.outputs]
            binary_outputs = binary.binary_outputs(request, names)
        except (SignatureError, binary.BinaryDataError) as e:
            raise HttpError(HTTPStatus.BAD_REQUEST, str(e)) from None
        # `binary_data_output` is the protocol's, not the model's.
        parameters = {k: v for k, v in infer.parameters.items() if k != "binary_data_output"}
        try:
            outputs = model.predict(infer.inputs, parameters)
            tensors = model.signature.format_outputs(outputs, infer.outputs)
        except InvalidInput as e:  # the handler's own validation: the client's fault, and the message says why
            message = _short(" ".join(str(e).split()), 1000) or "no reason given"
            self._fields["rejected"] = message
            raise HttpError(HTTPStatus.BAD_REQUEST, f"the model rejected the input: {message}") from None
        except OutputError as e:
            error_id = self._error_id()
            log.error(f"the model handler broke its signature: {e}", extra={"fields": self._request_fields()})
            raise HttpError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"the model returned outputs that break its signature (error id {error_id})",
            ) from None
        except (Exception, SystemExit) as e:  # the model author's code: never let it hang or kill a request
            error_id = self._error_id()
            log.error(
                f"the model handler raised {_describe(e)}", exc_info=True, extra={"fields": self._request_fields()}
            )
            raise HttpError(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"the model handler failed (error id {error_id}); the server log has the details",
            ) from None
        response: Dict[str, Any] = {"model_name": model.name, "model_version": model.version}
        if infer.id is not None:
            response["id"] = infer.id
        response["outputs"] = tensors
        if not binary_outputs:
            return HTTPStatus.OK, response
        chunks_out = []
        for tensor in tensors:
            if tensor["name"] in binary_outputs:
                chunks_out.append(binary.encode(tensor["datatype"], tensor.pop("data")))
                tensor["parameters"] = {"binary_data_size": len(chunks_out[-1])}
        head = json.dumps(response, allow_nan=False).encode()
        return HTTPStatus.OK, _Body(
            b"".join([head, *chunks_out]), "application/octet-stream", ((binary.HEADER, str(len(head))),)
        )

    # Bodies.

    def _body_length(self) -> int:
        """The request body's length from its headers; HttpError when it is missing, invalid or too large."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise HttpError(
                HTTPStatus.LENGTH_REQUIRED,
                "Transfer-Encoding (chunked bodies) is not supported: send the body with a Content-Length header",
                unread_body=True,
            )
        values = self.headers.get_all("Content-Length") or []
        if not values:
            if self.command == "POST":
                raise HttpError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
            return 0
        distinct = {part.strip() for value in values for part in value.split(",")}
        if len(distinct) != 1 or not _DIGITS.match(next(iter(distinct))):
            raise HttpError(HTTPStatus.BAD_REQUEST, f"invalid Content-Length {', '.join(values)!r}", unread_body=True)
        length = int(next(iter(distinct)))
        limit = self.server.config.max_body_bytes
        if length > limit:
            raise HttpError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the request body is {length} bytes; the limit is {limit} (AEGIS_MAX_BODY_BYTES)",
                unread_body=True,
            )
        return length

    def _read_body(self) -> bytes:
        length = self._body_length()
        if length == 0:
            return b""
        timeout = self.server.config.body_timeout
        self._reader.deadline = time.monotonic() + timeout
        try:
            body = self.rfile.read(length)
        except socket.timeout:
            raise HttpError(HTTPStatus.REQUEST_TIMEOUT, "timed out reading the request body", close=True) from None
        except _DeadlinePassed:
            raise HttpError(
                HTTPStatus.REQUEST_TIMEOUT,
                f"the request body did not arrive within {timeout:g} s (AEGIS_BODY_TIMEOUT)",
                unread_body=True,
            ) from None
        finally:
            self._reader.deadline = None
        if len(body) < length:
            raise HttpError(HTTPStatus.BAD_REQUEST, "the request body is shorter than its Content-Length", close=True)
        return body

    # Responses.

    def _allow(self, method: str) -> None:
        command = "GET" if self.command == "HEAD" else self.command
        if command != method:
            allow = "GET, HEAD" if method == "GET" else method
            raise HttpError(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{self.command} is not allowed on {_short(self._path())}; use {method}",
                headers=(("Allow", allow),),
            )

    def _send_error(self, error: HttpError) -> None:
        if error.close:
            self.close_connection = True
        self._fields["error"] = error.message
        self._send(error.status, {"error": error.message}, error.headers)
        if error.unread_body:
            self._discard_unread_body()

    def _send(self, status: int, payload: Any, headers: Tuple[Tuple[str, str], ...] = ()) -> None:
        if isinstance(payload, _Body):
            body, content_type, headers = payload.content, payload.content_type, payload.headers + headers
        else:
            body, content_type = json.dumps(payload, allow_nan=False).encode(), "application/json"
        if self.server.draining:
            self.close_connection = True  # one request per connection once shutdown begins
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        log.info(
            f"{self.command or '-'} {_short(getattr(self, 'path', '') or '-')} {int(status)}",
            extra={"fields": {**self._request_fields(), "status": int(status)}},
        )

    def _discard_unread_body(self) -> None:
        """Read and drop what the client still sends (bounded by LINGER_SECONDS) so that it sees the error."""
        deadline = time.monotonic() + LINGER_SECONDS
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.connection.settimeout(remaining)
                if not self.connection.recv(65536):
                    break
        except OSError:
            pass

    # Helpers.

    def _path(self) -> str:
        target = getattr(self, "path", "") or ""
        if not target.startswith("/"):
            target = urlsplit(target).path  # absolute-form request target
        return target.split("?", 1)[0]

    def _error_id(self) -> str:
        error_id = uuid.uuid4().hex[:16]
        self._fields["error_id"] = error_id
        return error_id

    def _request_fields(self) -> Dict[str, Any]:
        return {
            "method": self.command or "-",
            "path": _short(getattr(self, "path", "") or "-", 512),
            "duration_ms": round((time.monotonic() - self._started) * 1000, 3),
            **self._fields,
        }


class InferenceServer(ThreadingHTTPServer):
    """A thread per connection, at most AEGIS_MAX_CONNECTIONS of them; counts them so that shutdown can wait.

    A connection over the limit is answered 503 at once by the accepting thread, which then reads and drops
    whatever the client still sends for up to LINGER_SECONDS (so that it sees the 503, not a reset) before closing.
    """

    daemon_threads = True  # a handler stuck past the shutdown timeout must not keep the process alive
    request_queue_size = 128

    def __init__(self, config: Config, model: Model) -> None:
        self.config = config
        self.model = model
        self.draining = False
        self._wake_read, self._wake_write = os.pipe()
        self._connections = 0
        self._idle = threading.Condition()
        self._refused: List[Tuple[float, socket.socket]] = []  # answered 503, closing once the client is done
        self._refusals = 0  # refused since the last log line about it
        self._refusals_logged = -math.inf
        if ":" in config.host:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((config.host, config.port), RequestHandler)
        except BaseException:
            os.close(self._wake_read)
            os.close(self._wake_write)
            raise

    @property
    def ready(self) -> bool:
        return self.model.state == "ready" and not self.draining

    @property
    def wakeup_fd(self) -> int:
        return self._wake_read

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host's FQDN: a DNS lookup that can stall start-up.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._idle:
            full = self._connections >= self.config.max_connections
            if not full:
                self._connections += 1
        if full:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connection_done()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connection_done()

    def _refuse(self, sock: socket.socket) -> None:
        limit = self.config.max_connections
        body = json.dumps(
            {"error": f"the server is at its limit of {limit} connections (AEGIS_MAX_CONNECTIONS); retry later"}
        ).encode()
        head = (
            f"HTTP/1.1 503 Service Unavailable\r\nServer: {SERVER_NAME}/{RUNTIME_VERSION}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nRetry-After: 1\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        try:
            sock.setblocking(False)  # never let a client stall the accepting thread
            sock.send(head + body)  # a fresh socket's send buffer takes it whole
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if len(self._refused) < 1024:
            self._refused.append((time.monotonic() + LINGER_SECONDS, sock))
        else:
            sock.close()
        self._refusals += 1
        self._log_refusals()

    def _log_refusals(self) -> None:
        """At most one log line a second about refused connections, however many there are."""
        now = time.monotonic()
        if self._refusals and now - self._refusals_logged >= 1.0:
            log.warning(
                f"refused {self._refusals} connection(s): at the limit of {self.config.max_connections} "
                "(AEGIS_MAX_CONNECTIONS)",
                extra={"fields": {"refused": self._refusals, "max_connections": self.config.max_connections}},
            )
            self._refusals, self._refusals_logged = 0, now

    def service_actions(self) -> None:
        """Between accepts: close refused connections once their client is done (or their linger is over)."""
        now = time.monotonic()
        lingering = []
        for deadline, sock in self._refused:
            try:
                done = now >= deadline or not sock.recv(65536)
            except BlockingIOError:
                done = False
            except OSError:
                done = True
            if done:
                sock.close()
            else:
                lingering.append((deadline, sock))
        self._refused = lingering
        self._log_refusals()

    def _connection_done(self) -> None:
        with self._idle:
            self._connections -= 1
            self._idle.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, socket.timeout)):
            log.info("connection lost", extra={"fields": {"client": client_address[0], "error": _describe(error)}})
        else:
            log.error(
                "unexpected error on a connection", exc_info=True, extra={"fields": {"client": client_address[0]}}
            )

    def begin_shutdown(self) -> int:
        """Readiness turns false, the listening socket closes and idle connections close; returns open connections."""
        self.draining = True
        self.shutdown()  # serve_forever returns: no more accepts
        self.socket.close()
        os.write(self._wake_write, b"x")  # wakes every idle keep-alive connection, which then closes
        with self._idle:
            return self._connections

    def wait_for_connections(self, timeout: float, give_up: Callable[[], bool] = lambda: False) -> int:
        """Wait until every connection is closed, at most `timeout` seconds; returns how many are still open."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._connections and not give_up():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._idle.wait(min(remaining, 0.05))
            return self._connections

    def server_close(self) -> None:
        super().server_close()
        for _, sock in self._refused:
            sock.close()
        for fd in (self._wake_read, self._wake_write):
            try:
                os.close(fd)
            except OSError:
                pass


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- Logging ---------------------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, message, then the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        entry: Dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        if record.name != "aegis":
            entry["logger"] = record.name
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info and record.exc_info[0] is not None:
            entry["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, default=str)


class _LogStream(io.TextIOBase):
    """sys.stdout/sys.stderr while serving: whatever the handler or its libraries print becomes JSON log lines."""

    encoding = "utf-8"
    errors = "strict"
    _reentry = threading.local()

    def __init__(self, stream_name: str, level: int, original: Any) -> None:
        super().__init__()
        self._stream_name = stream_name
        self._level = level
        self._original = original
        self._buffer = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._original.fileno()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._buffer += text
            lines = self._buffer.split("\n")
            self._buffer = lines.pop()
            if len(self._buffer) > 65536:
                lines.append(self._buffer)
                self._buffer = ""
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            line, self._buffer = self._buffer, ""
        self._emit(line)

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip() or getattr(self._reentry, "active", False):
            return
        self._reentry.active = True
        try:
            logging.getLogger("aegis.handler").log(self._level, line, extra={"fields": {"stream": self._stream_name}})
        finally:
            self._reentry.active = False


def configure_logging(stream: Any) -> None:
    """JSON lines on `stream` for everything: our logs, the handler's logs, warnings, prints, uncaught errors."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.raiseExceptions = False  # a failing log call must not print to stderr
    logging.captureWarnings(True)
    sys.stdout = _LogStream("stdout", logging.INFO, sys.__stdout__ or stream)
    sys.stderr = _LogStream("stderr", logging.WARNING, sys.__stderr__ or stream)

    def thread_hook(args: Any) -> None:
        if args.exc_type is not SystemExit:
            log.error(
                f"uncaught exception in thread {args.thread.name if args.thread else '?'}",
                exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
            )

    def main_hook(exc_type: Any, exc_value: Any, exc_traceback: Any) -> None:
        log.critical("uncaught exception", exc_info=(exc_type, exc_value, exc_traceback))

    threading.excepthook = thread_hook
    sys.excepthook = main_hook


# --- The process -----------------------------------------------------------------------------------------------


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
