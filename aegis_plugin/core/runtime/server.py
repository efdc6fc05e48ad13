"""The inference server every Aegis image runs: KServe's Open Inference Protocol v2 over REST.

It is shared by every model and uses the standard library only; the model author's `handler.py` supplies
`SIGNATURE` and `Handler(model_dir).predict(inputs)`. Tensors reach the handler as (nested) Python lists.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import manifest as manifest_file
from .signature import SignatureError, Signature

MAX_BODY_BYTES = int(os.environ.get("AEGIS_MAX_BODY_BYTES", str(16 * 1024 * 1024)))
_MODEL_PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<rest>/ready|/infer)?$")

log = logging.getLogger("aegis")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": round(record.created, 3), "level": record.levelname.lower(), "message": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, sort_keys=True)


class Model:
    """The loaded handler plus what the protocol needs to know about it."""

    def __init__(self, app_dir: str) -> None:
        self.manifest = manifest_file.load(os.path.join(app_dir, "manifest.yaml"))
        self.name = self.manifest["model_id"]
        self.version = self.manifest["version"]
        module = _load_module(os.path.join(app_dir, "server", "handler.py"))
        self.signature = Signature.from_dict(module.SIGNATURE)
        self.ready_error = _accelerator_problem(self.manifest.get("accelerator", "cpu"))
        self.handler = None if self.ready_error else module.Handler(os.path.join(app_dir, "model"))

    def metadata(self) -> dict:
        return {"name": self.name, "versions": [self.version], "platform": self.manifest.get("framework", ""),
                **self.signature.to_metadata()}


def _load_module(path: str):
    spec = importlib.util.spec_from_file_location("handler", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _accelerator_problem(accelerator: str) -> str | None:
    """A CUDA image must see a GPU: serving it on the CPU would silently change latency and results."""
    if accelerator == "cpu":
        return None
    if not os.path.exists("/dev/nvidiactl"):
        return f"accelerator {accelerator} declared but no NVIDIA device is visible; refusing to serve on the CPU"
    return None


class RequestHandler(BaseHTTPRequestHandler):
    server_version = "aegis"
    protocol_version = "HTTP/1.1"
    model: Model  # set on the subclass made by serve()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # access lines go through _send as structured logs

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        model = self.model
        if path == "/v2/health/live":
            return self._send(HTTPStatus.OK, {"live": True})
        if path == "/v2/health/ready":
            return self._send(HTTPStatus.OK if model.handler else HTTPStatus.SERVICE_UNAVAILABLE,
                              {"ready": model.handler is not None})
        if path == "/v2":
            return self._send(HTTPStatus.OK, {"name": "aegis", "version": "2", "extensions": []})
        match = self._match_model(path)
        if match is None:
            return
        if match.group("rest") == "/ready":
            return self._send(HTTPStatus.OK if model.handler else HTTPStatus.SERVICE_UNAVAILABLE,
                              {"name": model.name, "ready": model.handler is not None})
        if match.group("rest") is None:
            return self._send(HTTPStatus.OK, model.metadata())
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, "use POST for inference")

    def do_POST(self) -> None:
        match = self._match_model(self.path.split("?", 1)[0])
        if match is None:
            return
        if match.group("rest") != "/infer":
            return self._error(HTTPStatus.METHOD_NOT_ALLOWED, "only /infer accepts POST")
        if self.model.handler is None:
            return self._error(HTTPStatus.SERVICE_UNAVAILABLE, f"model not ready: {self.model.ready_error}")
        try:
            length = int(self.headers.get("Content-Length", "-1"))
        except ValueError:
            length = -1
        if length < 0:
            return self._error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"request body of {length} bytes exceeds the limit of {MAX_BODY_BYTES}")
        body = self.rfile.read(length)
        try:
            request = json.loads(body)
            inputs = self.model.signature.parse_inputs(request)
        except json.JSONDecodeError as e:
            return self._error(HTTPStatus.BAD_REQUEST, f"invalid JSON: {e}")
        except SignatureError as e:
            return self._error(HTTPStatus.BAD_REQUEST, str(e))
        try:
            outputs = self.model.handler.predict(inputs)
            response = self.model.signature.format_outputs(outputs)
        except Exception as e:  # the handler is the model author's code: never let it hang a request
            error_id = uuid.uuid4().hex[:12]
            log.exception("handler failed", extra={"fields": {"error_id": error_id, "error": repr(e)}})
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"inference failed (error id {error_id})")
        response.update({"model_name": self.model.name, "model_version": self.model.version})
        if isinstance(request, dict) and "id" in request:
            response["id"] = request["id"]
        self._send(HTTPStatus.OK, response)

    def _match_model(self, path: str):
        match = _MODEL_PATH.match(path)
        if match is None:
            self._error(HTTPStatus.NOT_FOUND, f"no route for {path}")
            return None
        if match.group("name") != self.model.name:
            self._error(HTTPStatus.NOT_FOUND, f"unknown model {match.group('name')!r}")
            return None
        if match.group("version") not in (None, self.model.version):
            self._error(HTTPStatus.NOT_FOUND, f"unknown version {match.group('version')!r}")
            return None
        return match

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, {"error": message})

    def _send(self, status: HTTPStatus, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        log.info("request", extra={"fields": {"method": self.command, "path": self.path, "status": int(status)}})


def serve(app_dir: str, host: str, port: int) -> int:
    model = Model(app_dir)
    if model.ready_error:
        log.error("not ready", extra={"fields": {"reason": model.ready_error}})
    handler_class = type("BoundRequestHandler", (RequestHandler,), {"model": model})
    server = ThreadingHTTPServer((host, port), handler_class)
    server.daemon_threads = False  # in-flight requests finish before exit
    server.block_on_close = True

    def stop(signum: int, frame: Any) -> None:
        log.info("shutting down", extra={"fields": {"signal": signum}})
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("serving", extra={"fields": {"model": model.name, "version": model.version, "port": port}})
    started = time.monotonic()
    server.serve_forever()
    server.server_close()
    log.info("stopped", extra={"fields": {"uptime_s": round(time.monotonic() - started, 3)}})
    return 0


def main() -> int:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    app_dir = os.environ.get("AEGIS_APP_DIR", "/app")
    host = os.environ.get("AEGIS_HOST", "0.0.0.0")
    port = int(os.environ.get("AEGIS_PORT", "8080"))
    return serve(app_dir, host, port)


if __name__ == "__main__":
    sys.exit(main())
