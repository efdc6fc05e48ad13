"""The Open Inference Protocol v2 over REST: the request handler and the threading HTTP server."""
from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import select
import socket
import socketserver
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote, urlsplit

from . import binary
from .config import Config
from .model import Model, _describe
from .signature import InvalidInput, OutputError, SignatureError

log = logging.getLogger("aegis")


RUNTIME_VERSION = "1.0.0"
SERVER_NAME = "aegis"
EXTENSIONS = ("binary_tensor_data",)  # the Open Inference Protocol extensions the server metadata lists
# After refusing a body it did not read (411, 413), the server keeps reading and discarding for this long before
# closing, so that a client still sending gets to read the error instead of a connection reset.
LINGER_SECONDS = 1.0
_MODEL_PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/(?P<action>ready|infer))?$")
_DIGITS = re.compile(r"^[0-9]{1,19}$")


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
