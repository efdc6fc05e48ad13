"""The inference server over real HTTP, started as the image starts it: `python -m aegis_runtime.server`.

Each server gets an `/app`-like directory (manifest.yaml, server/handler.py, model/) and a copy of the runtime
package as `aegis_runtime/` on PYTHONPATH, listens on 127.0.0.1 with an ephemeral port (AEGIS_PORT=0; the port is
read from the `listening` log line) and is driven with http.client or raw sockets.
"""
from __future__ import annotations

import ctypes.util
import http.client
import json
import math
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from aegis_plugin.core.runtime import http_api
from aegis_plugin.core.runtime.config import Config
from aegis_plugin.core.runtime.model import accelerator_problem

RUNTIME_DIR = Path(__file__).resolve().parent
MODEL = "toy"
VERSION = "1.2.3"
INFER = f"/v2/models/{MODEL}/infer"

MANIFEST = {
    "model_id": MODEL,
    "version": VERSION,
    "git_sha": "0" * 40,
    "framework": "numpy",
    "framework_version": "1.26.4",
    "accelerator": "cpu",
    "signed_by": "",
}

SIGNATURE = {
    "inputs": [
        {"name": "x", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "n", "datatype": "INT32", "shape": [-1]},
        {"name": "u", "datatype": "UINT8", "shape": [-1]},
        {"name": "flag", "datatype": "BOOL", "shape": [-1]},
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
    ],
    "outputs": [
        {"name": "sum", "datatype": "FP32", "shape": [-1]},
        {"name": "total", "datatype": "INT64", "shape": [-1]},
        {"name": "inverted", "datatype": "BOOL", "shape": [-1]},
        {"name": "upper", "datatype": "BYTES", "shape": [-1]},
        {"name": "peak", "datatype": "INT32", "shape": [1]},
        {"name": "params", "datatype": "BYTES", "shape": [1]},
    ],
}

# A small model whose behaviour the request's `parameters` steer (the server passes them through).
HANDLER = '''
import json, math, os, sys, threading, time

from aegis_runtime import InvalidInput

SIGNATURE = __SIGNATURE__

_barriers = {}
_barriers_lock = threading.Lock()


class Handler:
    thread_safe = __THREAD_SAFE__

    def __init__(self, model_dir):
        print("constructing handler")
        with open(os.path.join(model_dir, "scale.txt")) as f:
            self.scale = float(f.read())
        delay = os.path.join(model_dir, "load_delay.txt")
        if os.path.exists(delay):
            with open(delay) as f:
                time.sleep(float(f.read()))
        if os.path.exists(os.path.join(model_dir, "fail.txt")):
            raise ValueError("weights are corrupt")
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def predict(self, inputs, parameters):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            return self._predict(inputs, parameters)
        finally:
            with self.lock:
                self.active -= 1

    def _predict(self, inputs, parameters):
        if "print" in parameters:
            print(parameters["print"])
        if "stderr" in parameters:
            print(parameters["stderr"], file=sys.stderr)
        if "warn" in parameters:
            import warnings
            warnings.warn(parameters["warn"])
        if "log" in parameters:
            import logging
            logging.getLogger("some.library").warning(parameters["log"])
        if "sleep" in parameters:
            time.sleep(parameters["sleep"])
        if "barrier" in parameters:
            with _barriers_lock:
                barrier = _barriers.setdefault(parameters["barrier"], threading.Barrier(parameters["parties"]))
            barrier.wait(timeout=3)
        if "raise" in parameters:
            raise RuntimeError(parameters["raise"])
        if "reject" in parameters:
            raise InvalidInput(parameters["reject"])
        if "value_error" in parameters:
            raise ValueError(parameters["value_error"])
        if "exit" in parameters:
            sys.exit(parameters["exit"])
        outputs = {
            "sum": [self.scale * sum(row) for row in inputs["x"]],
            "total": [n + u for n, u in zip(inputs["n"], inputs["u"])],
            "inverted": [not f for f in inputs["flag"]],
            "upper": [t.upper() for t in inputs["text"]],
            "peak": [self.peak],
            "params": [json.dumps(parameters, sort_keys=True)],
        }
        broken = parameters.get("break")
        if broken == "shape":
            outputs["sum"] = [outputs["sum"]]
        elif broken == "datatype":
            outputs["total"] = [0.5 for _ in outputs["total"]]
        elif broken == "missing":
            del outputs["upper"]
        elif broken == "extra":
            outputs["bogus"] = [1]
        elif broken == "nan":
            outputs["sum"] = [math.nan for _ in outputs["sum"]]
        elif broken == "not_dict":
            return list(outputs.values())
        return outputs
'''

# A handler without a `parameters` argument: the server must not pass them.
PLAIN_HANDLER = '''
SIGNATURE = {"inputs": [{"name": "a", "datatype": "INT64", "shape": [-1]}],
             "outputs": [{"name": "b", "datatype": "INT64", "shape": [-1]}]}


class Handler:
    def __init__(self, model_dir):
        print("constructing handler")

    def predict(self, inputs):
        return {"b": [v * 2 for v in inputs["a"]]}
'''


def handler_source(thread_safe: bool = True) -> str:
    return HANDLER.replace("__SIGNATURE__", repr(SIGNATURE)).replace("__THREAD_SAFE__", repr(thread_safe))


def valid_request(**extra: Any) -> dict:
    return {
        "id": "req-1",
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [[1, 2, 3], [4, 5, 6.5]]},
            {"name": "n", "datatype": "INT32", "shape": [2], "data": [1, -2]},
            {"name": "u", "datatype": "UINT8", "shape": [2], "data": [0, 255]},
            {"name": "flag", "datatype": "BOOL", "shape": [2], "data": [True, False]},
            {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["ab", "Cd"]},
        ],
        **extra,
    }


# --- Running the server ----------------------------------------------------------------------------------------


def snapshot(root: Path) -> Dict[str, Tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


class Server:
    """One server process: its app directory, its log lines (parsed) and its exit."""

    def __init__(
        self,
        root: Path,
        handler: Optional[str] = None,
        manifest: Optional[Dict[str, str]] = None,
        env: Optional[Dict[str, Optional[str]]] = None,
        model_files: Optional[Dict[str, str]] = None,
        manifest_text: Optional[str] = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.app = root / "app"
        (self.app / "server").mkdir(parents=True)
        (self.app / "model").mkdir()
        if manifest_text is None:
            values = {**MANIFEST, **(manifest or {})}
            manifest_text = "".join(f"{k}: {json.dumps(v)}\n" for k, v in values.items())
        (self.app / "manifest.yaml").write_text(manifest_text)
        (self.app / "server" / "handler.py").write_text(handler if handler is not None else handler_source())
        for name, content in {"scale.txt": "2", **(model_files or {})}.items():
            (self.app / "model" / name).write_text(content)
        # The image's layout: the runtime package at /app/aegis_runtime (healthcheck.py goes to /app/server).
        package = root / "lib" / "aegis_runtime"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        for source in RUNTIME_DIR.glob("*.py"):
            if not source.name.endswith("_test.py") and source.name != "healthcheck.py":
                shutil.copy(source, package / source.name)
        self.cwd = root / "cwd"
        self.cwd.mkdir()
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(root / "lib"),
            "PYTHONDONTWRITEBYTECODE": "1",  # as the image sets it
            "AEGIS_APP_DIR": str(self.app),
            "AEGIS_HOST": "127.0.0.1",
            "AEGIS_PORT": "0",
        }
        for key, value in (env or {}).items():
            if value is None:
                environment.pop(key, None)
            else:
                environment[key] = value
        self.lines: List[str] = []
        self.stderr: List[str] = []
        self._changed = threading.Condition()
        self._open_streams = 2
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aegis_runtime.server"],
            cwd=str(self.cwd),
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for pump in self._pumps:
            pump.start()
        self.port = 0

    def _pump(self, stream: Any, sink: List[str]) -> None:
        for raw in iter(stream.readline, b""):
            with self._changed:
                sink.append(raw.decode("utf-8", "replace"))
                self._changed.notify_all()
        with self._changed:
            self._open_streams -= 1
            self._changed.notify_all()

    @property
    def logs(self) -> List[dict]:
        with self._changed:
            lines = list(self.lines)
        return [json.loads(line) for line in lines]

    def output(self) -> str:
        return "".join(self.lines) + "".join(self.stderr)

    def wait_log(self, predicate: Callable[[dict], bool], timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    entry = json.loads(line)
                    if predicate(entry):
                        return entry
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._open_streams == 0 and self.proc.poll() is not None):
                    raise AssertionError(f"no such log line; output so far:\n{self.output()}")
                self._changed.wait(remaining)

    def wait_message(self, prefix: str, timeout: float = 5.0) -> dict:
        return self.wait_log(lambda e: str(e.get("message", "")).startswith(prefix), timeout)

    def start(self, ready: bool = True) -> "Server":
        self.port = self.wait_message("listening")["port"]
        if ready:
            self.wait_message("ready")
        return self

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 5.0) -> int:
        code = self.proc.wait(timeout)
        for pump in self._pumps:
            pump.join(timeout)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class Reply:
    status: int
    headers: Dict[str, str]
    body: Any


def call(port: int, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None,
         timeout: float = 5.0, connection: Optional[http.client.HTTPConnection] = None) -> Reply:
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        headers_ = {k.lower(): v for k, v in response.getheaders()}
        return Reply(response.status, headers_, json.loads(data) if data else None)
    finally:
        if connection is None:
            conn.close()


def read_reply(stream: Any) -> Reply:
    """One HTTP response from a socket's file, without http.client (so pipelined responses can follow)."""
    status_line = stream.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    headers = {}
    while True:
        line = stream.readline().decode("latin-1")
        if line in ("\r\n", "\n", ""):
            break
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    data = stream.read(int(headers.get("content-length", "0")))
    return Reply(status, headers, json.loads(data) if data else None)


def connect(port: int, timeout: float = 3.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def assert_error(reply: Reply, status: int, *fragments: str) -> str:
    assert reply.status == status, reply
    assert isinstance(reply.body, dict) and list(reply.body) == ["error"], reply.body
    assert reply.headers["content-type"] == "application/json"
    for fragment in fragments:
        assert fragment in reply.body["error"], (fragment, reply.body)
    return reply.body["error"]


def error_id_of(message: str) -> str:
    return message.split("error id ", 1)[1].split(")", 1)[0]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the many request/response tests (a small body limit to test 413 cheaply)."""
    with Server(tmp_path_factory.mktemp("shared"), env={"AEGIS_MAX_BODY_BYTES": "65536"}) as server:
        yield server.start()


# --- Health and metadata ---------------------------------------------------------------------------------------


def test_health_endpoints(shared: Server) -> None:
    assert call(shared.port, "GET", "/v2/health/live").body == {"live": True}
    ready = call(shared.port, "GET", "/v2/health/ready")
    assert (ready.status, ready.body) == (200, {"ready": True})
    for path in (f"/v2/models/{MODEL}/ready", f"/v2/models/{MODEL}/versions/{VERSION}/ready"):
        reply = call(shared.port, "GET", path)
        assert (reply.status, reply.body) == (200, {"name": MODEL, "ready": True})
    assert call(shared.port, "GET", "/v2/health/ready?verbose=1").status == 200  # the query string is ignored


def test_server_metadata(shared: Server) -> None:
    reply = call(shared.port, "GET", "/v2")
    assert reply.status == 200
    assert reply.body == {
        "name": "aegis", "version": http_api.RUNTIME_VERSION, "extensions": ["binary_tensor_data"]
    }


def test_model_metadata(shared: Server) -> None:
    expected = {"name": MODEL, "versions": [VERSION], "platform": "numpy", **SIGNATURE}
    for path in (f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/versions/{VERSION}"):
        reply = call(shared.port, "GET", path)
        assert (reply.status, reply.body) == (200, expected)


def test_unknown_paths_models_and_versions_are_404(shared: Server) -> None:
    assert_error(call(shared.port, "GET", "/v2/models/other"), 404, "unknown model 'other'")
    assert_error(call(shared.port, "POST", "/v2/models/other/infer", valid_request()), 404, "unknown model 'other'")
    assert_error(call(shared.port, "GET", f"/v2/models/{MODEL}/versions/9.9.9/ready"), 404, "no version '9.9.9'")
    assert_error(call(shared.port, "GET", "/v1/models/toy"), 404, "no such endpoint")
    assert_error(call(shared.port, "GET", "/"), 404, "no such endpoint")


def test_wrong_methods(shared: Server) -> None:
    reply = call(shared.port, "GET", INFER)
    assert_error(reply, 405, "use POST")
    assert reply.headers["allow"] == "POST"
    reply = call(shared.port, "POST", "/v2/health/live", b"{}")
    assert_error(reply, 405, "use GET")
    assert reply.headers["allow"] == "GET, HEAD"
    assert_error(call(shared.port, "DELETE", f"/v2/models/{MODEL}"), 405)
    assert_error(call(shared.port, "BREW", "/v2"), 501)


def test_head_has_no_body_and_keeps_the_connection(shared: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", shared.port, timeout=3)
    try:
        conn.request("HEAD", "/v2/health/ready")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b""
        assert int(response.getheader("Content-Length")) == len(b'{"ready": true}')
        assert call(shared.port, "GET", "/v2/health/live", connection=conn).body == {"live": True}
    finally:
        conn.close()


# --- Inference -------------------------------------------------------------------------------------------------


def test_infer(shared: Server) -> None:
    reply = call(shared.port, "POST", INFER, valid_request())
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == "application/json"
    body = reply.body
    assert list(body) == ["model_name", "model_version", "id", "outputs"]
    assert (body["model_name"], body["model_version"], body["id"]) == (MODEL, VERSION, "req-1")
    outputs = {o["name"]: o for o in body["outputs"]}
    assert [o["name"] for o in body["outputs"]] == ["sum", "total", "inverted", "upper", "peak", "params"]
    assert outputs["sum"] == {"name": "sum", "datatype": "FP32", "shape": [2], "data": [12.0, 31.0]}  # scale 2
    assert outputs["total"] == {"name": "total", "datatype": "INT64", "shape": [2], "data": [1, 253]}
    assert outputs["inverted"] == {"name": "inverted", "datatype": "BOOL", "shape": [2], "data": [False, True]}
    assert outputs["upper"] == {"name": "upper", "datatype": "BYTES", "shape": [2], "data": ["AB", "CD"]}
    assert outputs["params"]["data"] == ["{}"]


def test_infer_flat_data_versioned_path_and_no_id(shared: Server) -> None:
    request = valid_request()
    del request["id"]
    request["inputs"][0]["data"] = [1, 2, 3, 4, 5, 6.5]
    reply = call(shared.port, "POST", f"/v2/models/{MODEL}/versions/{VERSION}/infer", request)
    assert reply.status == 200, reply
    assert "id" not in reply.body
    assert reply.body["outputs"][0]["data"] == [12.0, 31.0]


def test_requested_outputs_only_in_requested_order(shared: Server) -> None:
    request = valid_request(outputs=[{"name": "upper"}, {"name": "sum", "parameters": {"binary_data": False}}])
    reply = call(shared.port, "POST", INFER, request)
    assert reply.status == 200, reply
    assert [o["name"] for o in reply.body["outputs"]] == ["upper", "sum"]
    assert_error(call(shared.port, "POST", INFER, valid_request(outputs=[{"name": "nope"}])), 400, "output 'nope'")


def test_parameters_pass_through(shared: Server) -> None:
    request = valid_request(parameters={"temperature": 0.5, "mode": "fast", "debug": True})
    request["inputs"][0]["parameters"] = {"content_type": "np"}
    reply = call(shared.port, "POST", INFER, request)
    assert reply.status == 200, reply
    params = {o["name"]: o for o in reply.body["outputs"]}["params"]["data"][0]
    assert json.loads(params) == {"temperature": 0.5, "mode": "fast", "debug": True}


def change(index: int, **fields: Any) -> dict:
    request = valid_request()
    request["inputs"][index].update(fields)
    return request


def replace_element(index: int, position: int, value: Any) -> dict:
    request = valid_request()
    data = request["inputs"][index]["data"]
    if isinstance(data[0], list):
        data[0][position] = value
    else:
        data[position] = value
    return request


@pytest.mark.parametrize(
    "request_, fragments",
    [
        (change(0, datatype="FP64"), ["tensor 'x'", "datatype 'FP64'", "FP32"]),
        (change(0, shape=[6], data=[1, 2, 3, 4, 5, 6]), ["tensor 'x'", "rank 1, expected rank 2"]),
        (change(0, shape=[3, 2], data=[1, 2, 3, 4, 5, 6]), ["tensor 'x'", "dimension 1, expected 3"]),
        (change(0, data=[1, 2, 3, 4, 5]), ["tensor 'x'", "5 elements do not fill shape [2, 3]"]),
        (change(0, data=[[1, 2, 3], [4, 5]]), ["tensor 'x'", "nested `data`"]),
        (change(0, data="1 2 3"), ["tensor 'x'", "`data` must be an array"]),
        (change(0, shape=[2, -1]), ["tensor 'x'", "`shape` must be an array of non-negative integers"]),
        (replace_element(0, 1, "2"), ["tensor 'x'", "element 1 ('2') is a string, not a number (FP32)"]),
        (replace_element(0, 0, 1e39), ["tensor 'x'", "out of range for FP32"]),
        (replace_element(1, 0, 1.5), ["tensor 'n'", "element 0 (1.5) is a float, not an integer (INT32)"]),
        (replace_element(1, 0, 2**31), ["tensor 'n'", "out of range for INT32"]),
        (replace_element(1, 0, True), ["tensor 'n'", "is a boolean, not an integer"]),
        (replace_element(2, 1, 256), ["tensor 'u'", "element 1 (256) is out of range for UINT8 [0, 255]"]),
        (replace_element(2, 0, -1), ["tensor 'u'", "out of range for UINT8"]),
        (replace_element(3, 0, 1), ["tensor 'flag'", "not a boolean (BOOL)"]),
        (replace_element(4, 0, 7), ["tensor 'text'", "not a string (BYTES)"]),
        (replace_element(4, 0, None), ["tensor 'text'", "is null"]),
        ({"inputs": valid_request()["inputs"][1:]}, ["tensor 'x': missing from the request"]),
        (
            valid_request(inputs=valid_request()["inputs"] + [{"name": "zz", "datatype": "FP32", "shape": [1]}]),
            ["tensor 'zz': not an input of this model"],
        ),
        (
            valid_request(inputs=valid_request()["inputs"] + valid_request()["inputs"][:1]),
            ["tensor 'x': given more than once"],
        ),
        (valid_request(id=7), ["`id` must be a string"]),
        (valid_request(parameters="fast"), ["`parameters` must be an object"]),
        ({"id": "a"}, ["`inputs` array"]),
    ],
)
def test_requests_breaking_the_signature_are_400(shared: Server, request_: Any, fragments: List[str]) -> None:
    assert_error(call(shared.port, "POST", INFER, request_), 400, *fragments)


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"{not json", "invalid JSON"),
        (b'{"inputs": [NaN]}', "invalid JSON: NaN is not valid JSON"),
        (b"\xff\xfe{}", "invalid JSON"),
        (b"", "invalid JSON"),
        (b"[" * 30_000 + b"]" * 30_000, "invalid JSON"),  # deeper than the parser's recursion limit
        (b"[]", "must be a JSON object, not an array"),
        (b"3", "must be a JSON object, not an integer"),
        (b"null", "must be a JSON object, not null"),
        (b'"text"', "must be a JSON object, not a string"),
    ],
)
def test_bodies_that_are_not_json_objects_are_400(shared: Server, body: bytes, fragment: str) -> None:
    assert_error(call(shared.port, "POST", INFER, body), 400, fragment)


def test_handler_exception_is_500_with_an_error_id_in_the_log(shared: Server) -> None:
    reply = call(shared.port, "POST", INFER, valid_request(id="boom-1", parameters={"raise": "kaboom"}))
    message = assert_error(reply, 500, "the model handler failed", "error id")
    assert "kaboom" not in message  # the client gets the id, the log gets the details
    error_id = error_id_of(message)
    entry = shared.wait_log(lambda e: e.get("error_id") == error_id and e["level"] == "error")
    assert entry["message"] == "the model handler raised RuntimeError: kaboom"
    assert entry["request_id"] == "boom-1"
    assert 'raise RuntimeError(parameters["raise"])' in entry["traceback"]
    assert entry["traceback"].endswith("RuntimeError: kaboom")
    access = shared.wait_log(lambda e: e.get("error_id") == error_id and e.get("status") == 500)
    assert access["method"] == "POST" and access["path"] == INFER
    assert call(shared.port, "POST", INFER, valid_request()).status == 200  # and the server carries on


def test_handler_calling_sys_exit_is_500_not_a_dead_server(shared: Server) -> None:
    assert_error(call(shared.port, "POST", INFER, valid_request(parameters={"exit": 3})), 500, "error id")
    assert call(shared.port, "GET", "/v2/health/ready").status == 200


@pytest.mark.parametrize(
    "mode, problem",
    [
        ("shape", "output 'sum': nested deeper than its SIGNATURE shape"),
        ("datatype", "output 'total': element 0 (0.5) is a float, not an integer (INT64)"),
        ("missing", "the handler returned no output 'upper'"),
        ("extra", "the handler returned 'bogus', which is not an output in its SIGNATURE"),
        ("nan", "output 'sum': element 0 (nan) is not a finite number"),
        ("not_dict", "the handler returned list, expected a dict"),
    ],
)
def test_outputs_breaking_the_signature_are_500(shared: Server, mode: str, problem: str) -> None:
    reply = call(shared.port, "POST", INFER, valid_request(parameters={"break": mode}))
    error_id = error_id_of(assert_error(reply, 500, "break its signature"))
    entry = shared.wait_log(lambda e: e.get("error_id") == error_id and e["level"] == "error")
    assert entry["message"].startswith(f"the model handler broke its signature: {problem}")


# --- HTTP framing ----------------------------------------------------------------------------------------------


def test_missing_content_length_is_411_and_the_connection_stays_usable(shared: Server) -> None:
    with connect(shared.port) as sock:
        stream = sock.makefile("rb")
        sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\r\n".encode())
        assert_error(read_reply(stream), 411, "Content-Length header is required")
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        assert read_reply(stream).body == {"live": True}


def test_chunked_bodies_are_411_without_hanging(shared: Server) -> None:
    body = json.dumps(valid_request()).encode()
    with connect(shared.port, timeout=2) as sock:
        stream = sock.makefile("rb")
        started = time.monotonic()
        sock.sendall(
            f"POST {INFER} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{len(body):x}\r\n".encode()
            + body + b"\r\n0\r\n\r\n"
        )
        reply = read_reply(stream)
        assert_error(reply, 411, "Transfer-Encoding")
        assert reply.headers["connection"] == "close"
        assert stream.read() == b""  # closed: the unread chunks are never taken for a request
        assert time.monotonic() - started < 1.5


def test_oversized_body_is_413_without_reading_it(shared: Server) -> None:
    with connect(shared.port, timeout=2) as sock:
        stream = sock.makefile("rb")
        # Claims a gigabyte and sends none of it: the server answers from the headers alone.
        sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: t\r\nContent-Length: {2**30}\r\n\r\n".encode())
        reply = read_reply(stream)
        assert_error(reply, 413, f"{2**30} bytes", "limit is 65536")
        assert reply.headers["connection"] == "close"


def test_oversized_body_with_expect_100_continue_is_refused_before_it_is_sent(shared: Server) -> None:
    with connect(shared.port, timeout=2) as sock:
        stream = sock.makefile("rb")
        sock.sendall(
            f"POST {INFER} HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        assert_error(read_reply(stream), 413)


def test_expect_100_continue_for_an_acceptable_body(shared: Server) -> None:
    body = json.dumps(valid_request(id="expect")).encode()
    with connect(shared.port) as sock:
        stream = sock.makefile("rb")
        sock.sendall(
            f"POST {INFER} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        assert read_reply(stream).status == 100
        sock.sendall(body)
        reply = read_reply(stream)
        assert (reply.status, reply.body["id"]) == (200, "expect")


def test_oversized_body_sent_anyway_still_gets_its_413(shared: Server) -> None:
    # http.client sends the whole body before reading: the server's lingering close lets it read the 413.
    reply = call(shared.port, "POST", INFER, b"[" + b"0," * 50_000 + b"0]")
    assert_error(reply, 413)


def test_body_at_the_limit_is_read(shared: Server) -> None:
    request = json.dumps(valid_request()).encode()
    body = request[:-1] + b" " * (65536 - len(request)) + b"}"
    assert len(body) == 65536
    assert call(shared.port, "POST", INFER, body).status == 200


def test_invalid_content_length_is_400(shared: Server) -> None:
    with connect(shared.port) as sock:
        stream = sock.makefile("rb")
        sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n".encode())
        assert_error(read_reply(stream), 400, "invalid Content-Length")


# --- The binary tensor data extension (hand-built; aegis_plugin/core/contract tests it with tritonclient) --------


def strings(*values: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


# The tensors of valid_request() as binary data.
BINARY = {
    "x": struct.pack("<6f", 1, 2, 3, 4, 5, 6.5),
    "n": struct.pack("<2i", 1, -2),
    "u": bytes([0, 255]),
    "flag": bytes([1, 0]),
    "text": strings(b"ab", b"Cd"),
}


def binary_request(binary: Dict[str, bytes], *, sizes: Optional[Dict[str, int]] = None, **extra: Any
                   ) -> Tuple[bytes, Dict[str, str]]:
    """valid_request() with the tensors named in `binary` sent as binary data (in request order), and its header."""
    request = valid_request(**extra)
    for tensor in request["inputs"]:
        if tensor["name"] in binary:
            del tensor["data"]
            size = (sizes or {}).get(tensor["name"], len(binary[tensor["name"]]))
            tensor["parameters"] = {"binary_data_size": size}
    head = json.dumps(request).encode()
    tail = b"".join(binary[t["name"]] for t in request["inputs"] if t["name"] in binary)
    return head + tail, {"Inference-Header-Content-Length": str(len(head))}


def call_binary(port: int, body: bytes, headers: Dict[str, str]) -> Tuple[Reply, bytes]:
    """POST to INFER; the reply's JSON part, and the binary data after it."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", INFER, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        reply_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    split = int(reply_headers.get("inference-header-content-length", len(data)))
    return Reply(response.status, reply_headers, json.loads(data[:split])), data[split:]


def test_binary_inputs_all_or_some_give_the_same_outputs(shared: Server) -> None:
    expected = call(shared.port, "POST", INFER, valid_request()).body
    for names in (list(BINARY), ["x", "text"], ["flag"]):
        reply, tail = call_binary(shared.port, *binary_request({n: BINARY[n] for n in names}))
        assert reply.status == 200, reply
        assert reply.headers["content-type"] == "application/json"
        assert "inference-header-content-length" not in reply.headers and tail == b""
        assert reply.body == expected


def test_binary_outputs_per_output_and_for_all(shared: Server) -> None:
    outputs = [{"name": "sum", "parameters": {"binary_data": True}},
               {"name": "upper", "parameters": {"binary_data": True}}, {"name": "total"}]
    reply, tail = call_binary(shared.port, *binary_request(BINARY, outputs=outputs))
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == "application/octet-stream"
    assert int(reply.headers["content-length"]) == int(reply.headers["inference-header-content-length"]) + 8 + 12
    summed, upper, total = reply.body["outputs"]
    assert summed == {"name": "sum", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}
    assert upper == {"name": "upper", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 12}}
    assert total == {"name": "total", "datatype": "INT64", "shape": [2], "data": [1, 253]}
    assert struct.unpack("<2f", tail[:8]) == (12.0, 31.0)
    assert tail[8:] == strings(b"AB", b"CD")

    # The request's `binary_data_output` makes every output binary unless the output says otherwise; a JSON request
    # may ask for it too, and the handler never sees the protocol's parameter.
    request = valid_request(parameters={"binary_data_output": True},
                            outputs=[{"name": "inverted"}, {"name": "params", "parameters": {"binary_data": False}}])
    reply, tail = call_binary(shared.port, json.dumps(request).encode(), {})
    assert reply.status == 200, reply
    inverted, params = reply.body["outputs"]
    assert inverted["parameters"] == {"binary_data_size": 2} and tail == bytes([0, 1])
    assert params["data"] == ["{}"]
    reply, tail = call_binary(shared.port, json.dumps(valid_request(parameters={"binary_data_output": True})).encode(),
                              {})
    assert [o["parameters"]["binary_data_size"] for o in reply.body["outputs"]] == [8, 16, 2, 12, 4, 6]
    assert struct.unpack("<2q", tail[8:24]) == (1, 253)
    # No output asked for: a plain JSON answer, whatever `binary_data_output` says.
    reply, tail = call_binary(shared.port, json.dumps(valid_request(parameters={"binary_data_output": True},
                                                                    outputs=[])).encode(), {})
    assert (reply.status, reply.headers["content-type"], reply.body["outputs"], tail) == (
        200, "application/json", [], b""), reply


@pytest.mark.parametrize(
    "body_headers, fragments",
    [
        (binary_request({"x": BINARY["x"][:20]}), ["tensor 'x'", "20 bytes of binary data hold 5 elements",
                                                   "shape [2, 3] has 6"]),
        (binary_request({"x": BINARY["x"][:22]}), ["tensor 'x'", "binary_data_size 22 is not a multiple of the "
                                                   "4-byte FP32 element"]),
        (binary_request({"x": BINARY["x"]}, sizes={"x": 100}), ["tensor 'x'", "binary_data_size 100 runs past the "
                                                                 "end of the body (24 bytes left)"]),
        (binary_request({"x": BINARY["x"]}, sizes={"x": 20}), ["4 bytes of binary data follow the JSON that no "
                                                               "input's binary_data_size claims"]),
        (binary_request({"x": BINARY["x"]}, sizes={"x": -1}), ["tensor 'x'", "`binary_data_size` must be a "
                                                               "non-negative integer"]),
        (binary_request({"flag": bytes([2, 0])}), ["tensor 'flag'", "element 0 is the byte 2, not 0 or 1 (BOOL)"]),
        (binary_request({"text": strings(b"ab", b"\xff")}), ["tensor 'text'", "element 1 is not UTF-8 text"]),
        (binary_request({"text": strings(b"ab", b"Cd")[:-1]}), ["tensor 'text'", "element 1: its length says 2 "
                                                                "bytes, the binary data has 1"]),
        (binary_request({"text": strings(b"ab", b"Cd")[:-3]}), ["tensor 'text'", "element 1: the binary data ends "
                                                                "inside its 4-byte length"]),
        (binary_request({"x": struct.pack("<6f", math.nan, 2, 3, 4, 5, 6)}), ["tensor 'x'", "element 0 (nan) is "
                                                                                "not a finite number"]),
        ((binary_request({"x": BINARY["x"]})[0][: -len(BINARY["x"])], {}),  # the JSON alone, without the header
         ["tensor 'x'", "has `binary_data_size` but the request has no Inference-Header-Content-Length header"]),
        ((b"{}", {"Inference-Header-Content-Length": "3"}), ["Inference-Header-Content-Length '3' is not a byte "
                                                             "count within the 2-byte body"]),
        ((b"{}", {"Inference-Header-Content-Length": "-1"}), ["Inference-Header-Content-Length '-1'"]),
        (binary_request({"u": BINARY["u"]}, outputs=[{"name": "sum", "parameters": {"binary_data": 1}}]),
         ["output 'sum': `binary_data` must be true or false, not 1"]),
        (binary_request({"u": BINARY["u"]}, parameters={"binary_data_output": "yes"}),
         ["`binary_data_output` must be true or false, not 'yes'"]),
    ],
)
def test_binary_data_that_does_not_add_up_is_400(shared: Server, body_headers: Tuple[bytes, Dict[str, str]],
                                                 fragments: List[str]) -> None:
    reply, _ = call_binary(shared.port, *body_headers)
    assert_error(reply, 400, *fragments)


def test_binary_input_with_data_too_or_the_wrong_datatype_is_400(shared: Server) -> None:
    body, headers = binary_request({"x": BINARY["x"]})
    request = json.loads(body[: int(headers["Inference-Header-Content-Length"])])
    request["inputs"][0]["data"] = [1, 2, 3, 4, 5, 6]
    both = json.dumps(request).encode()
    reply, _ = call_binary(shared.port, both + BINARY["x"], {"Inference-Header-Content-Length": str(len(both))})
    assert_error(reply, 400, "tensor 'x': has both `data` and `binary_data_size`")
    del request["inputs"][0]["data"]
    request["inputs"][0]["datatype"] = "FP64"
    wrong = json.dumps(request).encode()
    reply, _ = call_binary(shared.port, wrong + BINARY["x"], {"Inference-Header-Content-Length": str(len(wrong))})
    assert_error(reply, 400, "tensor 'x': datatype 'FP64' does not match the model's FP32")


# --- The handler's own input validation ---------------------------------------------------------------------------


def test_handler_rejecting_its_input_is_400_with_its_message(shared: Server) -> None:
    reply = call(shared.port, "POST", INFER, valid_request(parameters={"reject": "amount must be >= 0\n(got -3)"}))
    assert_error(reply, 400)
    assert reply.body["error"] == "the model rejected the input: amount must be >= 0 (got -3)"
    entry = shared.wait_log(lambda e: e.get("status") == 400 and e.get("rejected"))
    assert entry["rejected"] == "amount must be >= 0 (got -3)" and "traceback" not in entry
    # Any other exception, ValueError included, is the model's bug: 500, details in the log only.
    message = assert_error(call(shared.port, "POST", INFER, valid_request(parameters={"value_error": "secret"})), 500)
    assert "secret" not in message


# --- Host -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head, fragment",
    [
        (b"GET /v2/health/live HTTP/1.1\r\n\r\n", "no Host header, which HTTP/1.1 requires"),
        (b"GET /v2/health/live HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "2 Host headers"),
        (b"GET /v2/health/live HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", "2 Host headers"),
        (b"POST " + INFER.encode() + b" HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", "no Host header"),
        (b"POST " + INFER.encode() + b" HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
         "no Host header"),  # refused before the 100 Continue, so the client never sends the body
    ],
)
def test_requests_without_exactly_one_host_are_400_and_close(shared: Server, head: bytes, fragment: str) -> None:
    with connect(shared.port) as sock:
        stream = sock.makefile("rb")
        sock.sendall(head)
        reply = read_reply(stream)
        assert_error(reply, 400, fragment)
        assert reply.headers["connection"] == "close"
        assert stream.read() == b""


def test_http_1_0_without_host_is_served(shared: Server) -> None:
    with connect(shared.port) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
        assert read_reply(sock.makefile("rb")).body == {"live": True}


def test_malformed_request_line_gets_a_json_error(shared: Server) -> None:
    with connect(shared.port) as sock:
        sock.sendall(b"GET /v2 HTTP/1.1 extra\r\n\r\n")
        assert_error(read_reply(sock.makefile("rb")), 400)


def test_keep_alive_reuses_one_connection(shared: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", shared.port, timeout=3)
    try:
        assert call(shared.port, "GET", "/v2/health/ready", connection=conn).status == 200
        first_socket = conn.sock
        for _ in range(3):
            assert call(shared.port, "POST", INFER, valid_request(), connection=conn).status == 200
            assert call(shared.port, "POST", INFER, b"{", connection=conn).status == 400
        assert call(shared.port, "GET", f"/v2/models/{MODEL}", connection=conn).status == 200
        assert conn.sock is first_socket  # never reconnected
    finally:
        conn.close()


def test_pipelined_requests_are_answered_in_order(shared: Server) -> None:
    body = json.dumps(valid_request(id="p2")).encode()
    with connect(shared.port) as sock:
        stream = sock.makefile("rb")
        sock.sendall(
            b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n"
            + f"POST {INFER} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
            + b"GET /v2 HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert read_reply(stream).body == {"live": True}
        assert read_reply(stream).body["id"] == "p2"
        assert read_reply(stream).body["name"] == "aegis"


def test_concurrent_requests_run_concurrently(shared: Server) -> None:
    # Every request waits on one barrier: they all succeed only if the handler runs them at the same time.
    parties = 8
    replies: List[Reply] = []

    def one() -> None:
        request = valid_request(parameters={"barrier": "concurrent", "parties": parties, "sleep": 0.05})
        replies.append(call(shared.port, "POST", INFER, request))

    threads = [threading.Thread(target=one) for _ in range(parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert [r.status for r in replies] == [200] * parties
    assert max({o["name"]: o for o in r.body["outputs"]}["peak"]["data"][0] for r in replies) >= 2


def test_many_clients(shared: Server) -> None:
    statuses: List[int] = []
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", shared.port, timeout=5)
        try:
            for _ in range(5):
                status = call(shared.port, "POST", INFER, valid_request(), connection=conn).status
                with lock:
                    statuses.append(status)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert statuses == [200] * 200


# --- Processes: logs, files, concurrency settings, loading, shutdown -----------------------------------------------


def test_logs_are_json_lines_only(tmp_path: Path) -> None:
    with Server(tmp_path) as server:
        server.start()
        call(server.port, "GET", "/v2/health/ready")
        chatty = {"print": "hello from the handler", "stderr": "oops\nsecond line", "warn": "careful", "log": "lib says"}
        call(server.port, "POST", INFER, valid_request(id="log-1", parameters=chatty))
        call(server.port, "POST", INFER, b"{")
        call(server.port, "POST", INFER, valid_request(parameters={"raise": "x"}))
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0
        assert server.stderr == []
        logs = server.logs  # every line parses as JSON
        assert all({"time", "level", "message"} <= set(e) for e in logs)
        assert all(e["time"].endswith("Z") for e in logs)
        printed = [e for e in logs if e["message"] == "hello from the handler"]
        assert printed and printed[0]["stream"] == "stdout" and printed[0]["level"] == "info"
        assert any(e["message"] == "constructing handler" for e in logs)
        # stderr, warnings and other loggers go through the same formatter: one JSON object per line.
        stderr = [e for e in logs if e.get("stream") == "stderr"]
        assert [(e["message"], e["level"]) for e in stderr] == [("oops", "warning"), ("second line", "warning")]
        (warned,) = [e for e in logs if e.get("logger") == "py.warnings"]
        assert "UserWarning: careful" in warned["message"] and warned["level"] == "warning"
        (library,) = [e for e in logs if e.get("logger") == "some.library"]
        assert (library["message"], library["level"]) == ("lib says", "warning")
        # Each response is logged once it is sent, so lines of consecutive requests may swap places.
        assert sorted((e["method"], e["path"], e["status"]) for e in logs if "status" in e) == sorted(
            [("GET", "/v2/health/ready", 200), ("POST", INFER, 200), ("POST", INFER, 400), ("POST", INFER, 500)]
        )
        infer = {e["status"]: e for e in logs if e.get("path") == INFER and "status" in e}
        assert all(isinstance(e["duration_ms"], float) for e in infer.values())
        assert infer[200]["request_id"] == "log-1"
        assert len(infer[400]["request_id"]) == 32  # generated when the request has no id
        assert "error_id" in infer[500]
        assert any(e["message"] == "shutting down: SIGTERM received" for e in logs)
        assert logs[-1]["message"] == "stopped"


def test_nothing_is_written_to_the_filesystem(tmp_path: Path) -> None:
    # Without PYTHONDONTWRITEBYTECODE the server must still not write bytecode for the handler (read-only root).
    with Server(tmp_path, env={"PYTHONDONTWRITEBYTECODE": None}) as server:
        before = {"app": snapshot(server.app), "cwd": snapshot(server.cwd)}
        server.start()
        assert call(server.port, "POST", INFER, valid_request()).status == 200
        assert call(server.port, "POST", INFER, valid_request(parameters={"raise": "x"})).status == 500
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0
        assert {"app": snapshot(server.app), "cwd": snapshot(server.cwd)} == before


def test_thread_unsafe_handler_calls_are_serialized(tmp_path: Path) -> None:
    with Server(tmp_path, handler=handler_source(thread_safe=False)) as server:
        server.start()
        replies: List[Reply] = []

        def one() -> None:
            replies.append(call(server.port, "POST", INFER, valid_request(parameters={"sleep": 0.1})))

        started = time.monotonic()
        threads = [threading.Thread(target=one) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert time.monotonic() - started >= 0.4
        assert [r.status for r in replies] == [200] * 4
        assert all({o["name"]: o for o in r.body["outputs"]}["peak"]["data"] == [1] for r in replies)


def test_not_ready_while_loading_then_ready(tmp_path: Path) -> None:
    with Server(tmp_path, model_files={"load_delay.txt": "0.6"}) as server:
        server.start(ready=False)
        assert call(server.port, "GET", "/v2/health/live").status == 200
        assert call(server.port, "GET", "/v2/health/ready").body == {"ready": False}
        assert call(server.port, "GET", f"/v2/models/{MODEL}/ready").status == 503
        assert call(server.port, "GET", f"/v2/models/{MODEL}").status == 200
        assert_error(call(server.port, "POST", INFER, valid_request()), 503, "still loading")
        server.wait_message("ready")
        assert call(server.port, "GET", "/v2/health/ready").status == 200
        assert call(server.port, "POST", INFER, valid_request()).status == 200


def test_sigterm_during_loading_exits_0(tmp_path: Path) -> None:
    with Server(tmp_path, model_files={"load_delay.txt": "5"}) as server:
        server.start(ready=False)
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0
        assert time.monotonic() - started < 1.5


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    with Server(tmp_path) as server:
        server.start()
        results: List[Reply] = []
        slow = threading.Thread(
            target=lambda: results.append(
                call(server.port, "POST", INFER,
                     valid_request(id="slow", parameters={"print": "slow started", "sleep": 0.6}))
            )
        )
        slow.start()
        server.wait_message("slow started")
        # A connection in the middle of sending its request is in flight too: it gets its answer.
        late = connect(server.port)
        late.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
        late_stream = late.makefile("rb")
        assert read_reply(late_stream).status == 200
        late.sendall(b"GET /v2/health/ready HTTP/1.1\r\n")
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        server.wait_message("shutting down: SIGTERM received")
        with pytest.raises(ConnectionRefusedError):  # no longer accepting
            connect(server.port).close()
        late.sendall(b"Host: t\r\n\r\n")
        reply = read_reply(late_stream)
        assert (reply.status, reply.body) == (503, {"ready": False})  # readiness is false once shutdown begins
        assert reply.headers["connection"] == "close"
        late.close()
        slow.join(3)
        assert results and results[0].status == 200 and results[0].body["id"] == "slow"
        assert server.wait_exit(3) == 0
        assert time.monotonic() - started < 1.5
        assert server.stderr == []
        assert server.logs[-1]["message"] == "stopped"


def test_idle_keep_alive_connections_do_not_delay_shutdown(tmp_path: Path) -> None:
    with Server(tmp_path) as server:  # AEGIS_IDLE_TIMEOUT is 75 s by default
        server.start()
        idle = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=3) for _ in range(3)]
        for conn in idle:
            assert call(server.port, "GET", "/v2/health/live", connection=conn).status == 200
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0
        assert time.monotonic() - started < 1.0
        for conn in idle:
            conn.close()


def test_sigint_is_a_graceful_shutdown_too(tmp_path: Path) -> None:
    with Server(tmp_path) as server:
        server.start()
        server.signal(signal.SIGINT)
        assert server.wait_exit() == 0
        assert server.wait_message("shutting down: SIGINT received")


def test_shutdown_timeout_bounds_the_wait(tmp_path: Path) -> None:
    with Server(tmp_path, env={"AEGIS_SHUTDOWN_TIMEOUT": "0.3"}) as server:
        server.start()
        stuck = threading.Thread(
            target=lambda: pytest.raises(
                (http.client.HTTPException, OSError),
                call, server.port, "POST", INFER, valid_request(parameters={"print": "stuck", "sleep": 30}),
            ),
            daemon=True,
        )
        stuck.start()
        server.wait_message("stuck")
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0
        assert 0.3 <= time.monotonic() - started < 1.5
        assert server.wait_message("shutdown: 1 connection(s) still busy")["level"] == "warning"
        stuck.join(2)


def test_a_second_signal_cuts_the_wait_short(tmp_path: Path) -> None:
    with Server(tmp_path) as server:  # AEGIS_SHUTDOWN_TIMEOUT is 8 s by default
        server.start()
        threading.Thread(
            target=lambda: pytest.raises(
                (http.client.HTTPException, OSError),
                call, server.port, "POST", INFER, valid_request(parameters={"print": "stuck", "sleep": 30}),
            ),
            daemon=True,
        ).start()
        server.wait_message("stuck")
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        server.wait_message("shutting down")
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0
        assert time.monotonic() - started < 1.5


def test_idle_timeout_closes_idle_connections(tmp_path: Path) -> None:
    with Server(tmp_path, env={"AEGIS_IDLE_TIMEOUT": "0.2"}) as server:
        server.start()
        with connect(server.port) as sock:
            stream = sock.makefile("rb")
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\n\r\n")
            assert read_reply(stream).status == 200
            started = time.monotonic()
            assert stream.read() == b""  # the server closed it
            assert 0.15 <= time.monotonic() - started < 1.0


def test_a_body_that_never_arrives_is_408(tmp_path: Path) -> None:
    with Server(tmp_path, env={"AEGIS_IO_TIMEOUT": "0.3"}) as server:
        server.start()
        with connect(server.port) as sock:
            sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{{\"inp".encode())
            started = time.monotonic()
            assert_error(read_reply(sock.makefile("rb")), 408, "timed out reading the request body")
            assert time.monotonic() - started < 1.0


# --- Deadlines and the connection limit ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with short header and body deadlines (the per-read I/O timeout stays at its 30 s default)."""
    env = {"AEGIS_HEADER_TIMEOUT": "0.5", "AEGIS_BODY_TIMEOUT": "0.5", "AEGIS_IDLE_TIMEOUT": "5"}
    with Server(tmp_path_factory.mktemp("strict"), env=env) as server:
        yield server.start()


def trickle(socks: List[socket.socket], byte: bytes, seconds: float = 4.0) -> Dict[socket.socket, float]:
    """Send `byte` on each socket every 0.1 s until the server answers; when each answer came (seconds)."""
    started = time.monotonic()
    answered: Dict[socket.socket, float] = {}
    while len(answered) < len(socks) and time.monotonic() - started < seconds:  # bounded: at most `seconds`
        for sock in socks:
            if sock not in answered:
                try:
                    sock.sendall(byte)
                except OSError:
                    answered[sock] = time.monotonic() - started
        readable, _, _ = select.select([s for s in socks if s not in answered], [], [], 0.1)
        for sock in readable:
            answered.setdefault(sock, time.monotonic() - started)
    return answered


def test_headers_trickled_in_get_408_at_the_header_deadline(strict: Server) -> None:
    # Slowloris: each connection sends a header byte every 0.1 s, far inside the 30 s per-read timeout.
    socks = [connect(strict.port) for _ in range(20)]
    try:
        for sock in socks:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        answered = trickle(socks, b"a")
        assert len(answered) == len(socks)
        assert all(0.4 <= seconds < 1.5 for seconds in answered.values()), answered
        for sock in socks:
            stream = sock.makefile("rb")
            assert_error(read_reply(stream), 408, "headers did not arrive within 0.5 s (AEGIS_HEADER_TIMEOUT)")
            assert stream.read() == b""  # closed
    finally:
        for sock in socks:
            sock.close()


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(strict: Server) -> None:
    with connect(strict.port) as sock:
        started = time.monotonic()
        assert sock.makefile("rb").read() == b""
        assert 0.4 <= time.monotonic() - started < 1.5


def test_keep_alive_requests_get_the_idle_timeout_between_them(strict: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", strict.port, timeout=3)
    try:
        assert call(strict.port, "GET", "/v2/health/live", connection=conn).status == 200
        first_socket = conn.sock
        time.sleep(0.8)  # longer than the header deadline, shorter than the idle timeout
        assert call(strict.port, "POST", INFER, valid_request(), connection=conn).status == 200
        assert conn.sock is first_socket
    finally:
        conn.close()


def test_a_body_trickled_in_gets_408_at_the_body_deadline(strict: Server) -> None:
    with connect(strict.port) as sock:
        sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n{{".encode())
        (seconds,) = trickle([sock], b" ").values()
        assert 0.4 <= seconds < 1.5
        reply = read_reply(sock.makefile("rb"))
        assert_error(reply, 408, "body did not arrive within 0.5 s (AEGIS_BODY_TIMEOUT)")
        assert reply.headers["connection"] == "close"


def thread_count(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def test_connections_over_the_limit_get_503_and_threads_stay_bounded(tmp_path: Path) -> None:
    with Server(tmp_path, env={"AEGIS_MAX_CONNECTIONS": "4"}) as server:
        server.start()
        baseline = thread_count(server.proc.pid)
        held = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=3) for _ in range(4)]
        extra: List[socket.socket] = []
        try:
            for conn in held:  # four keep-alive connections: the limit
                assert call(server.port, "GET", "/v2/health/live", connection=conn).status == 200
            extra = [connect(server.port) for _ in range(50)]
            for sock in extra:  # answered at once, before they send anything
                stream = sock.makefile("rb")
                reply = read_reply(stream)
                assert_error(reply, 503, "limit of 4 connections (AEGIS_MAX_CONNECTIONS)")
                assert (reply.headers["retry-after"], reply.headers["connection"]) == ("1", "close")
                assert stream.read() == b""
            assert thread_count(server.proc.pid) <= baseline + 4
            # A client that sends its request anyway still reads the 503 (no reset).
            assert_error(call(server.port, "POST", INFER, valid_request()), 503, "AEGIS_MAX_CONNECTIONS")
            assert server.wait_message("refused ")["level"] == "warning"
            held.pop().close()  # a slot frees up: new connections are served again
            deadline = time.monotonic() + 3
            while True:  # bounded: the server notices the close within its poll
                status = call(server.port, "GET", "/v2/health/live").status
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert status == 200
        finally:
            for conn in held:
                conn.close()
            for sock in extra:
                sock.close()


# --- Accelerators ----------------------------------------------------------------------------------------------


def fake_devices(root: Path, *names: str) -> Path:
    root.mkdir()
    for name in names:
        (root / name).write_text("")
    return root


def test_cuda_image_without_a_gpu_is_not_ready_and_never_serves(tmp_path: Path) -> None:
    devices = fake_devices(tmp_path / "dev", "null")
    env = {"AEGIS_NVIDIA_DEVICE_DIR": str(devices)}
    with Server(tmp_path / "srv", manifest={"accelerator": "cuda-12.4"}, env=env) as server:
        server.start(ready=False)
        assert call(server.port, "GET", "/v2/health/live").status == 200
        reply = call(server.port, "GET", "/v2/health/ready")
        assert (reply.status, reply.body) == (503, {"ready": False})
        reply = call(server.port, "GET", f"/v2/models/{MODEL}/ready")
        assert (reply.status, reply.body) == (503, {"name": MODEL, "ready": False})
        assert call(server.port, "GET", f"/v2/models/{MODEL}").status == 200
        assert_error(call(server.port, "POST", INFER, valid_request()), 503, "no NVIDIA GPU is visible", "cuda-12.4")
        errors = [e for e in server.logs if e["level"] == "error"]
        assert len(errors) == 1
        assert errors[0]["message"] == (
            f"model 'toy' is not ready: accelerator cuda-12.4 is declared but no NVIDIA GPU is visible "
            f"({devices}/nvidiactl or {devices}/nvidia<N> missing); refusing to serve on the CPU"
        )
        assert not any(e["message"] == "constructing handler" for e in server.logs)  # never loaded on the CPU
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0


def test_cuda_image_whose_driver_library_does_not_load_is_not_ready(tmp_path: Path) -> None:
    devices = fake_devices(tmp_path / "dev", "nvidiactl", "nvidia0")
    env = {"AEGIS_NVIDIA_DEVICE_DIR": str(devices), "AEGIS_LIBCUDA": str(tmp_path / "missing" / "libcuda.so.1")}
    with Server(tmp_path / "srv", manifest={"accelerator": "cuda-12.4"}, env=env) as server:
        server.start(ready=False)
        assert call(server.port, "GET", "/v2/health/ready").status == 503
        assert_error(call(server.port, "POST", INFER, valid_request()), 503, "CUDA driver library", "cannot be loaded")


def test_cuda_image_with_a_gpu_serves(tmp_path: Path) -> None:
    devices = fake_devices(tmp_path / "dev", "nvidiactl", "nvidia3")
    # Any loadable shared library stands in for the driver.
    env = {"AEGIS_NVIDIA_DEVICE_DIR": str(devices), "AEGIS_LIBCUDA": ctypes.util.find_library("c") or "libc.so.6"}
    with Server(tmp_path / "srv", handler=PLAIN_HANDLER, manifest={"accelerator": "cuda-12.4"}, env=env) as server:
        server.start()
        assert call(server.port, "GET", "/v2/health/ready").status == 200
        # A handler without a `parameters` argument works with requests that carry parameters.
        request = {"inputs": [{"name": "a", "datatype": "INT64", "shape": [2], "data": [1, 2]}], "parameters": {"k": 1}}
        reply = call(server.port, "POST", INFER, request)
        assert reply.status == 200, reply
        assert reply.body["outputs"] == [{"name": "b", "datatype": "INT64", "shape": [2], "data": [2, 4]}]


def test_accelerator_probe(tmp_path: Path) -> None:
    libc = ctypes.util.find_library("c") or "libc.so.6"
    assert accelerator_problem("cpu", str(tmp_path / "nowhere"), "nothing") is None
    assert "unknown accelerator 'tpu'" in (accelerator_problem("tpu", str(tmp_path), libc) or "")
    assert "no NVIDIA GPU is visible" in (accelerator_problem("cuda-12.4", str(tmp_path / "nowhere"), libc) or "")
    devices = fake_devices(tmp_path / "dev", "nvidiactl")
    assert "no NVIDIA GPU is visible" in (accelerator_problem("cuda-12.4", str(devices), libc) or "")
    (devices / "nvidia0").write_text("")
    assert accelerator_problem("cuda-11.8", str(devices), libc) is None
    assert "cannot be loaded" in (accelerator_problem("cuda-11.8", str(devices), str(tmp_path / "no.so")) or "")


# --- Start-up failures -----------------------------------------------------------------------------------------

BROKEN_HANDLERS = {
    "import": (
        "import numpy_that_does_not_exist\n" + handler_source(),
        "cannot import the model handler {handler}: "
        "ModuleNotFoundError: No module named 'numpy_that_does_not_exist'",
    ),
    "syntax": ("SIGNATURE = {\n", "cannot import the model handler {handler}: SyntaxError:"),
    "exit": ("import sys\nsys.exit(4)\n", "cannot import the model handler {handler}: SystemExit: 4"),
    "no-signature": ("class Handler:\n    def predict(self, inputs): pass\n",
                     "the model handler {handler} defines no SIGNATURE"),
    "bad-signature": ("SIGNATURE = {'inputs': [{'name': 'a', 'datatype': 'FLOAT', 'shape': [1]}], 'outputs': []}\n",
                      "the SIGNATURE in {handler} is invalid: tensor 'a': unknown datatype 'FLOAT'"),
    "no-handler": (f"SIGNATURE = {SIGNATURE!r}\n", "the model handler {handler} defines no Handler class"),
    "no-predict": (
        f"SIGNATURE = {SIGNATURE!r}\nclass Handler:\n    pass\n", "the Handler class in {handler} has no predict"
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_HANDLERS))
def test_a_broken_handler_exits_non_zero_with_one_clear_line(tmp_path: Path, case: str) -> None:
    source, expected = BROKEN_HANDLERS[case]
    with Server(tmp_path, handler=source) as server:
        assert server.wait_exit(3) == 1
        assert server.stderr == []
        (entry,) = server.logs  # nothing else: it never listened
        assert entry["level"] == "error"
        assert entry["message"].startswith(expected.format(handler=server.app / "server" / "handler.py"))


def test_a_handler_whose_constructor_raises_exits_1(tmp_path: Path) -> None:
    with Server(tmp_path, model_files={"fail.txt": ""}) as server:
        started = time.monotonic()
        assert server.wait_exit(3) == 1
        assert time.monotonic() - started < 2
        errors = [e for e in server.logs if e["level"] == "error"]
        assert len(errors) == 1
        assert errors[0]["message"] == (
            f"the model handler failed to load: Handler('{server.app / 'model'}') "
            "raised ValueError: weights are corrupt"
        )
        assert 'raise ValueError("weights are corrupt")' in errors[0]["traceback"]
        assert not any(e.get("message") == "ready" for e in server.logs)
        assert server.stderr == []


@pytest.mark.parametrize(
    "manifest_text, expected",
    [
        (None, "cannot read the manifest"),
        ('version: "1.0.0"\n', "invalid manifest: {manifest} has no model_id"),
        ('model_id: "toy\n', "invalid manifest: {manifest}:1: the value of 'model_id' is not a valid quoted string"),
    ],
)
def test_a_broken_manifest_exits_1(tmp_path: Path, manifest_text: Optional[str], expected: str) -> None:
    with Server(tmp_path, manifest_text=manifest_text or "") as server:
        if manifest_text is None:
            (server.app / "manifest.yaml").unlink()
        assert server.wait_exit(3) == 1
        (entry,) = server.logs
        assert entry["level"] == "error"
        assert entry["message"].startswith(expected.format(manifest=server.app / "manifest.yaml"))


def test_invalid_configuration_exits_non_zero(tmp_path: Path) -> None:
    with Server(tmp_path, env={"AEGIS_PORT": "eighty"}) as server:
        assert server.wait_exit(3) == 2
        (entry,) = server.logs
        assert entry["message"] == "invalid configuration: AEGIS_PORT='eighty' is not a number"


def test_a_port_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with Server(tmp_path, env={"AEGIS_PORT": str(taken.getsockname()[1])}) as server:
            assert server.wait_exit(3) == 1
            (entry,) = [e for e in server.logs if e["level"] == "error"]
            assert entry["message"].startswith(f"cannot listen on 127.0.0.1:{taken.getsockname()[1]}")


def test_config_from_env() -> None:
    assert Config.from_env({}) == Config(
        app_dir="/app", host="0.0.0.0", port=8080, max_body_bytes=16 * 1024 * 1024, max_connections=256,
        header_timeout=10.0, body_timeout=60.0, shutdown_timeout=8.0, idle_timeout=75.0, io_timeout=30.0,
        nvidia_device_dir="/dev", libcuda="libcuda.so.1",
    )
    config = Config.from_env({"AEGIS_PORT": "9000", "AEGIS_MAX_BODY_BYTES": "10", "AEGIS_SHUTDOWN_TIMEOUT": "0.5",
                              "AEGIS_MAX_CONNECTIONS": "3", "AEGIS_HEADER_TIMEOUT": "0.25",
                              "AEGIS_BODY_TIMEOUT": "1.5"})
    assert (config.port, config.max_body_bytes, config.shutdown_timeout) == (9000, 10, 0.5)
    assert (config.max_connections, config.header_timeout, config.body_timeout) == (3, 0.25, 1.5)
    for bad in ({"AEGIS_PORT": "70000"}, {"AEGIS_SHUTDOWN_TIMEOUT": "-1"}, {"AEGIS_MAX_BODY_BYTES": "1.5"},
                {"AEGIS_MAX_CONNECTIONS": "0"}, {"AEGIS_HEADER_TIMEOUT": "0"}, {"AEGIS_BODY_TIMEOUT": "x"}):
        with pytest.raises(ValueError):
            Config.from_env(bad)
