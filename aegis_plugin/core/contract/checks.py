"""The contract checks, run against a started container; each one yields `CheckResult`s.

Inference goes through the real KServe/Triton client (`tritonclient.http`), so a server that the standard
client cannot talk to fails: every example runs twice, with JSON tensor data and with the binary tensor data
extension the way the client sends it by default (`set_data_from_numpy()`, no requested outputs: every output
comes back binary). Malformed requests go over raw `http.client`, because the client library validates what it
sends.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from . import sandbox
from .sandbox import Container

from aegis_plugin.core.errors import AegisError

FLOAT_TOLERANCE = 1e-3  # relative and absolute, for FP16/FP32/FP64 outputs
MAX_BODY_BYTES = 16 * 1024 * 1024  # the size every Aegis server must refuse above
EXPECTED_UID = EXPECTED_GID = 65532
STOP_GRACE_SECONDS = 10.0
NOT_READY_WINDOW_SECONDS = 2.0  # how long a CUDA image without a GPU must keep answering "not ready"
HEALTHCHECK = "/app/server/healthcheck.py"

_INT_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
_FLOAT_TYPES = {"FP16", "FP32", "FP64", "BF16"}
# Which declared datatypes a JSON value in the examples file is compatible with.
_COMPATIBLE = {"bool": {"BOOL"}, "str": {"BYTES"}, "int": _INT_TYPES | _FLOAT_TYPES, "float": _FLOAT_TYPES}


class ContractSetupError(AegisError):
    """The inputs of the contract test are unusable (not a failure of the image)."""


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- inputs -------------------------------------------------------------------------------------------


def load_examples(path: str | os.PathLike[str]) -> list[dict[str, dict[str, list]]]:
    """`[{"inputs": {name: list}, "outputs": {name: list}}]`, checked for shape."""
    try:
        with open(path, encoding="utf-8") as f:
            examples = json.load(f)
    except (OSError, ValueError) as e:
        raise ContractSetupError(f"cannot read examples {path}: {e}") from None
    if not isinstance(examples, list) or not examples:
        raise ContractSetupError(f"{path}: expected a non-empty JSON list of examples")
    for i, example in enumerate(examples):
        if not isinstance(example, dict) or set(example) - {"inputs", "outputs"}:
            raise ContractSetupError(f"{path}: example {i} must be an object with `inputs` and `outputs`")
        for key in ("inputs", "outputs"):
            tensors = example.get(key)
            if not isinstance(tensors, dict) or not tensors or not all(
                isinstance(name, str) and isinstance(value, list) for name, value in tensors.items()
            ):
                raise ContractSetupError(f"{path}: example {i}: `{key}` must map tensor names to lists")
    return examples


def read_manifest(rootfs: Path, app_dir: str = "/app") -> dict[str, str]:
    """`<app_dir>/manifest.yaml` of the unpacked image: flat `key: value` lines (values JSON or plain)."""
    path = Path(rootfs) / app_dir.lstrip("/") / "manifest.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ContractSetupError(f"the image has no readable {app_dir}/manifest.yaml: {e}") from None
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or ":" not in line:
            continue
        key, _, raw = line.partition(":")
        raw = raw.strip()
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw.strip("'")
        values[key.strip()] = str(value)
    if not values.get("model_id"):
        raise ContractSetupError(f"{app_dir}/manifest.yaml in the image has no model_id")
    return values


# --- helpers ------------------------------------------------------------------------------------------


def _flatten(value: Any) -> list:
    if not isinstance(value, list):
        return [value]
    flat: list = []
    for item in value:
        flat.extend(_flatten(item))
    return flat


def _shape(value: Any) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return shape


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return type(value).__name__


def _shape_matches(declared: list[int], actual: list[int]) -> bool:
    return len(declared) == len(actual) and all(d in (-1, a) for d, a in zip(declared, actual))


def _raw_request(container: Container, method: str, path: str, body: Optional[bytes] = None,
                 timeout: float = 10.0) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", container.port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, _decode(response.read())
    finally:
        conn.close()


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


def _error_message(payload: Any) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return payload["error"]
    return ""


def _guard(name: str, function: Callable[[], CheckResult]) -> CheckResult:
    """A check that raises is a failed check, never a crashed driver."""
    try:
        return function()
    except Exception as e:  # noqa: BLE001 - reported in the check's detail
        return CheckResult(name, False, f"{type(e).__name__}: {e}")


# --- readiness ----------------------------------------------------------------------------------------


def wait_ready(container: Container, timeout: float = 60.0, interval: float = 0.2) -> CheckResult:
    """Poll GET /v2/health/ready until 200; fail with the container's log tail on exit or timeout."""
    return _wait_for(container, "ready", timeout, interval)


def wait_live(container: Container, timeout: float = 60.0, interval: float = 0.2) -> CheckResult:
    """Poll GET /v2/health/live until 200 (a CUDA image without a GPU is live but never ready)."""
    return _wait_for(container, "live", timeout, interval)


def _wait_for(container: Container, state: str, timeout: float, interval: float) -> CheckResult:
    started = time.monotonic()
    last = "no answer yet"
    path = f"/v2/health/{state}"
    while True:
        elapsed = time.monotonic() - started
        if not container.running():
            return CheckResult(state, False, f"the container exited with code {container.process.returncode} "
                                             f"after {elapsed:.1f} s, before it was {state}\n{container.log_tail()}")
        try:
            status, payload = _raw_request(container, "GET", path, timeout=2.0)
            if status == 200:
                return CheckResult(state, True, f"GET {path} = 200 after {elapsed:.1f} s")
            last = f"HTTP {status} {payload}"
        except (OSError, http.client.HTTPException) as e:
            last = f"{type(e).__name__}: {e}"
        if elapsed > timeout:
            return CheckResult(state, False, f"not {state} after {timeout:.0f} s (last: {last})\n"
                                             f"{container.log_tail()}")
        time.sleep(interval)


# --- the checks ---------------------------------------------------------------------------------------


class ContractRun:
    """State shared by the checks: the container, the client, the model's name and its metadata."""

    def __init__(self, container: Container, examples: list[dict], model_name: str, model_version: str = ""):
        self.container = container
        self.examples = examples
        self.model_name = model_name
        self.model_version = model_version
        self.client = triton.InferenceServerClient(container.base_url, connection_timeout=10.0,
                                                   network_timeout=60.0)
        self._metadata: Optional[dict] = None

    def close(self) -> None:
        self.client.close()

    def metadata(self) -> dict:
        if self._metadata is None:
            self._metadata = self.client.get_model_metadata(self.model_name)
        return self._metadata

    def declared(self, key: str) -> dict[str, dict]:
        return {t["name"]: t for t in self.metadata().get(key, []) if isinstance(t, dict) and "name" in t}

    # health ---------------------------------------------------------------------------------------------

    def check_health(self) -> list[CheckResult]:
        probes = [
            ("health: server live (client.is_server_live)", self.client.is_server_live, "GET /v2/health/live"),
            ("health: server ready (client.is_server_ready)", self.client.is_server_ready, "GET /v2/health/ready"),
            ("health: model ready (client.is_model_ready)", lambda: self.client.is_model_ready(self.model_name),
             f"GET /v2/models/{self.model_name}/ready"),
        ]
        return [_guard(name, lambda name=name, probe=probe, what=what: CheckResult(name, bool(probe()), what))
                for name, probe, what in probes]

    # metadata -------------------------------------------------------------------------------------------

    def check_metadata(self) -> CheckResult:
        return _guard("metadata", self._check_metadata)

    def _check_metadata(self) -> CheckResult:
        name = "metadata"
        try:
            metadata = self.metadata()
        except InferenceServerException as e:
            return CheckResult(name, False, f"GET /v2/models/{self.model_name} failed: {e}")
        problems = []
        if metadata.get("name") != self.model_name:
            problems.append(f"name is {metadata.get('name')!r}, the image's manifest says {self.model_name!r}")
        versions = metadata.get("versions") or []
        if self.model_version and versions and self.model_version not in versions:
            problems.append(f"versions {versions} do not include the manifest's {self.model_version!r}")
        for key in ("inputs", "outputs"):
            declared = self.declared(key)
            implied = self._implied(key)
            for tensor, (kinds, ranks) in implied.items():
                spec = declared.get(tensor)
                if spec is None:
                    problems.append(f"{key[:-1]} {tensor!r} of the examples is not declared "
                                    f"(declared: {sorted(declared)})")
                    continue
                datatype = spec.get("datatype")
                incompatible = sorted(k for k in kinds if datatype not in _COMPATIBLE.get(k, set()))
                if incompatible:
                    problems.append(f"{key[:-1]} {tensor!r} is declared {datatype} but the examples give "
                                    f"{'/'.join(incompatible)} values")
                shape = spec.get("shape")
                if not isinstance(shape, list) or any(len(shape) != rank for rank in ranks):
                    problems.append(f"{key[:-1]} {tensor!r} is declared with shape {shape} but the examples have "
                                    f"rank {sorted(ranks)}")
        if problems:
            return CheckResult(name, False, "; ".join(problems))
        summary = ", ".join(f"{t['name']}:{t['datatype']}{t.get('shape')}"
                            for key in ("inputs", "outputs") for t in self.declared(key).values())
        return CheckResult(name, True, f"GET /v2/models/{self.model_name}: {summary}")

    def _implied(self, key: str) -> dict[str, tuple[set[str], set[int]]]:
        """Each tensor the examples use, with the kinds of JSON values and the ranks they give it."""
        implied: dict[str, tuple[set[str], set[int]]] = {}
        for example in self.examples:
            for tensor, value in example[key].items():
                kinds, ranks = implied.setdefault(tensor, (set(), set()))
                kinds.update(_kind(v) for v in _flatten(value))
                ranks.add(len(_shape(value)))
        return implied

    # examples -------------------------------------------------------------------------------------------

    def check_examples(self, binary: bool = False) -> list[CheckResult]:
        """Each example through tritonclient, as JSON or (`binary`) as binary tensor data both ways."""
        return [_guard(self._example_name(i, binary), lambda i=i: self._check_example(i, binary))
                for i in range(len(self.examples))]

    def _example_name(self, index: int, binary: bool) -> str:
        return f"example {index + 1}/{len(self.examples)}" + (" (binary tensor data)" if binary else "")

    def _infer_inputs(self, example: dict, binary: bool = False) -> list:
        declared = self.declared("inputs")
        inputs = []
        for tensor, value in example["inputs"].items():
            if tensor not in declared:
                raise ValueError(f"input {tensor!r} is not in the model metadata")
            datatype = declared[tensor]["datatype"]
            shape = _shape(value)
            if datatype == "BYTES":
                array = np.array([v.encode("utf-8") if isinstance(v, str) else v for v in _flatten(value)],
                                 dtype=np.object_).reshape(shape)
            else:
                array = np.array(value, dtype=triton_to_np_dtype(datatype))
            infer_input = triton.InferInput(tensor, list(array.shape), datatype)
            infer_input.set_data_from_numpy(array, binary_data=binary)
            inputs.append(infer_input)
        return inputs

    def _check_example(self, index: int, binary: bool = False) -> CheckResult:
        name = self._example_name(index, binary)
        example = self.examples[index]
        try:
            inputs = self._infer_inputs(example, binary)
            # Binary: the client's defaults, which ask for every output as binary data (`binary_data_output`).
            outputs = None if binary else [triton.InferRequestedOutput(o, binary_data=False)
                                           for o in self.declared("outputs")]
            result = self.client.infer(self.model_name, inputs, outputs=outputs)
        except InferenceServerException as e:
            return CheckResult(name, False, f"inference failed: {e}")
        declared = self.declared("outputs")
        problems = []
        for tensor, expected in example["outputs"].items():
            output = result.get_output(tensor)
            if output is None:
                problems.append(f"{tensor}: missing from the response")
                continue
            problems += _compare(tensor, declared.get(tensor, {}).get("datatype"), output, result.as_numpy(tensor),
                                 expected)
        if problems:
            return CheckResult(name, False, "; ".join(problems))
        return CheckResult(name, True, f"{len(example['outputs'])} outputs match "
                                       f"({', '.join(sorted(example['outputs']))})")

    # malformed requests ---------------------------------------------------------------------------------

    def _valid_request(self) -> tuple[dict, str]:
        """A well-formed request from the first example, and the tensor the malformed variants break."""
        declared = self.declared("inputs")
        example = self.examples[0]["inputs"]
        tensors = [{"name": t, "datatype": declared[t]["datatype"], "shape": _shape(v), "data": _flatten(v)}
                   for t, v in example.items() if t in declared]
        if not tensors:
            raise ValueError("the first example has no input the model declares")
        return {"inputs": tensors}, tensors[0]["name"]

    def check_malformed(self) -> list[CheckResult]:
        path = f"/v2/models/{self.model_name}/infer"
        try:
            request, victim = self._valid_request()
        except Exception as e:  # noqa: BLE001
            return [CheckResult("malformed requests", False, f"cannot build a request: {type(e).__name__}: {e}")]

        def variant(change: Callable[[dict], None]) -> bytes:
            body = json.loads(json.dumps(request))
            change(body)
            return json.dumps(body).encode()

        def tensor(body: dict) -> dict:
            return next(t for t in body["inputs"] if t["name"] == victim)

        def wrong_datatype(body: dict) -> None:
            t = tensor(body)
            t["datatype"] = {"BYTES": "FP32", "BOOL": "INT32"}.get(t["datatype"], "BYTES")

        def wrong_rank(body: dict) -> None:
            tensor(body)["shape"] = tensor(body)["shape"] + [1]

        def too_few_elements(body: dict) -> None:
            tensor(body)["shape"][0] += 1

        def missing(body: dict) -> None:
            body["inputs"] = [t for t in body["inputs"] if t["name"] != victim]

        cases = [
            ("wrong datatype", variant(wrong_datatype), victim),
            ("wrong shape (rank)", variant(wrong_rank), victim),
            ("shape and data disagree", variant(too_few_elements), victim),
            ("missing tensor", variant(missing), victim),
        ]
        results = []
        for label, body, mention in cases:
            results.append(_guard(f"malformed: {label}",
                                  lambda label=label, body=body, mention=mention: self._expect_rejection(
                                      f"malformed: {label}", path, body, mention, range(400, 500))))
        results.append(_guard("malformed: invalid JSON", lambda: self._expect_rejection(
            "malformed: invalid JSON", path, b'{"inputs": [{"name": ', None, (400,))))
        results.append(_guard("malformed: oversized body", lambda: self._check_oversized(path, request)))
        return results

    def _expect_rejection(self, name: str, path: str, body: bytes, mention: Optional[str],
                          statuses: Iterable[int]) -> CheckResult:
        status, payload = _raw_request(self.container, "POST", path, body)
        message = _error_message(payload)
        statuses = list(statuses)
        wanted = f"{statuses[0]}" if len(statuses) == 1 else "4xx"
        if status not in statuses:
            return CheckResult(name, False, f"HTTP {status} (wanted {wanted}): {str(payload)[:200]}")
        if not message:
            return CheckResult(name, False, f"HTTP {status} without an `error` message: {str(payload)[:200]}")
        if mention and mention not in message:
            return CheckResult(name, False, f"HTTP {status}, but the error does not name tensor {mention!r}: "
                                            f"{message}")
        return CheckResult(name, True, f"HTTP {status}: {message}")

    def _check_oversized(self, path: str, request: dict) -> CheckResult:
        """A body over 16 MiB, sent while the response is read: 413 (or 400), never a hang or a crash."""
        name = "malformed: oversized body"
        prefix = json.dumps(request)[:-1].encode() + b', "padding": "'
        size = MAX_BODY_BYTES + 1024 * 1024
        filler = size - len(prefix) - 2
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.container.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n").encode()
        sock = socket.create_connection(("127.0.0.1", self.container.port), timeout=30.0)
        sent = [0]

        def send() -> None:
            try:
                sock.sendall(head + prefix)
                chunk = b"x" * (1024 * 1024)
                remaining = filler
                while remaining > 0:
                    piece = chunk[:remaining]
                    sock.sendall(piece)
                    sent[0] += len(piece)
                    remaining -= len(piece)
                sock.sendall(b'"}')
            except OSError:
                pass  # the server may stop reading (and close) once it has answered

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            response = http.client.HTTPResponse(sock, method="POST")
            response.begin()
            status, payload = response.status, _decode(response.read())
        except (OSError, http.client.HTTPException) as e:
            return CheckResult(name, False, f"no HTTP response to a {size}-byte body: {type(e).__name__}: {e}")
        finally:
            sock.close()
            sender.join(5)
        if status not in (413, 400):
            return CheckResult(name, False, f"HTTP {status} for a {size}-byte body (wanted 413 or 400)")
        message = _error_message(payload)
        if not message:
            return CheckResult(name, False, f"HTTP {status} without an `error` message: {str(payload)[:200]}")
        return CheckResult(name, True, f"HTTP {status} for a {size}-byte body: {message}")

    # process checks -------------------------------------------------------------------------------------

    def check_user(self, uid: int = EXPECTED_UID, gid: int = EXPECTED_GID) -> CheckResult:
        return _guard(f"runs as {uid}:{gid}", lambda: self._check_user(uid, gid))

    def _check_user(self, uid: int, gid: int) -> CheckResult:
        name = f"runs as {uid}:{gid}"
        pid = self.container.server_pid()
        ids = sandbox.process_ids(pid)
        where = (f"server pid {pid} (pid {ids.ns_pid[-1]} in the container, {' '.join(sandbox.cmdline(pid))}): "
                 f"Uid {list(ids.uids)} Gid {list(ids.gids)} in the container; on the host Uid "
                 f"{list(ids.host_uids)} Gid {list(ids.host_gids)}")
        passed = all(u == uid for u in ids.uids) and all(g == gid for g in ids.gids)
        return CheckResult(name, passed, where)

    def check_network(self) -> CheckResult:
        return _guard("network: loopback only", self._check_network)

    def _check_network(self) -> CheckResult:
        name = "network: loopback only"
        pid = self.container.server_pid()
        ours, theirs = os.readlink("/proc/self/ns/net"), os.readlink(f"/proc/{pid}/ns/net")
        with open(f"/proc/{pid}/net/dev") as f:
            interfaces = sorted(line.split(":", 1)[0].strip() for line in f.read().splitlines()[2:] if ":" in line)
        passed = ours == theirs and interfaces == ["lo"]
        return CheckResult(name, passed, f"the server's network namespace {theirs} "
                                         f"({'is' if ours == theirs else 'is NOT'} the driver's) has {interfaces}")

    def check_healthcheck(self, script: str = HEALTHCHECK) -> CheckResult:
        return _guard("healthcheck.py in the container", lambda: self._check_healthcheck(script))

    def _check_healthcheck(self, script: str) -> CheckResult:
        name = "healthcheck.py in the container"
        if not (self.container.rootfs / script.lstrip("/")).is_file():
            return CheckResult(name, False, f"the image has no {script}")
        interpreter = self.container.image_argv[0]
        argv = [interpreter, script] if os.path.basename(interpreter).startswith("python") else [script]
        result = sandbox.exec_in(self.container, argv)
        output = (result.stdout + result.stderr).decode(errors="replace").strip()
        detail = f"{' '.join(argv)} exited {result.returncode}" + (f": {output[-300:]}" if output else "")
        return CheckResult(name, result.returncode == 0, detail)

    def check_sigterm(self, grace: float = STOP_GRACE_SECONDS, hard_timeout: float = 30.0,
                      idle_connections: int = 1) -> CheckResult:
        name = f"SIGTERM stops it with exit code 0 within {grace:g} s"
        return _guard(name, lambda: self._check_sigterm(name, grace, hard_timeout, idle_connections))

    def _check_sigterm(self, name: str, grace: float, hard_timeout: float, idle_connections: int) -> CheckResult:
        # The client's pooled connections are closed first; then `idle_connections` keep-alive connections,
        # each after one completed request, stay open on purpose: a proxy or load balancer in front of the
        # server holds such connections, and shutdown must not wait for them.
        self.client.close()
        idle = []
        try:
            for _ in range(idle_connections):
                conn = http.client.HTTPConnection("127.0.0.1", self.container.port, timeout=10.0)
                conn.request("GET", "/v2/health/live")
                conn.getresponse().read()
                idle.append(conn)
            stopped = sandbox.stop(self.container, hard_timeout=max(hard_timeout, grace))
        finally:
            for conn in idle:
                conn.close()
        if stopped.signalled_pid is None:
            detail = f"the container had already exited (code {stopped.exit_code}) before SIGTERM"
        else:
            detail = (f"SIGTERM to pid {stopped.signalled_pid} with {idle_connections} idle keep-alive "
                      f"connection(s) open: exit code {stopped.exit_code} after {stopped.seconds:.2f} s")
        if stopped.killed:
            detail += f"; still running after {max(hard_timeout, grace):g} s, killed with SIGKILL"
        passed = (stopped.signalled_pid is not None and stopped.exit_code == 0 and not stopped.killed
                  and stopped.seconds <= grace)
        if not passed:
            detail += "\n" + self.container.log_tail(10)
        return CheckResult(name, passed, detail)

    # a CUDA image without a GPU ---------------------------------------------------------------------------

    def check_stays_not_ready(self, window: float = NOT_READY_WINDOW_SECONDS, interval: float = 0.2) -> CheckResult:
        name = f"not ready: /v2/health/ready stays 503 for {window:g} s"
        return _guard(name, lambda: self._check_stays_not_ready(name, window, interval))

    def _check_stays_not_ready(self, name: str, window: float, interval: float) -> CheckResult:
        started, polls = time.monotonic(), 0
        while True:
            status, payload = _raw_request(self.container, "GET", "/v2/health/ready")
            polls += 1
            elapsed = time.monotonic() - started
            if status != 503:
                return CheckResult(name, False, f"GET /v2/health/ready = {status} after {elapsed:.1f} s "
                                                f"(wanted 503 throughout): {str(payload)[:200]}")
            if elapsed >= window:
                return CheckResult(name, True, f"GET /v2/health/ready = 503 on all {polls} polls over {elapsed:.1f} s")
            time.sleep(interval)

    def check_model_not_ready(self) -> CheckResult:
        name = "model not ready"
        path = f"/v2/models/{self.model_name}/ready"

        def check() -> CheckResult:
            status, payload = _raw_request(self.container, "GET", path)
            wanted = "" if status == 503 else " (wanted 503)"
            return CheckResult(name, status == 503, f"GET {path} = {status}{wanted}: {str(payload)[:200]}")

        return _guard(name, check)

    def check_inference_refused(self, accelerator: str) -> CheckResult:
        name = f"inference refused (503 naming {accelerator})"
        return _guard(name, lambda: self._check_inference_refused(name, accelerator))

    def _check_inference_refused(self, name: str, accelerator: str) -> CheckResult:
        path = f"/v2/models/{self.model_name}/infer"
        status, payload = _raw_request(self.container, "POST", path, json.dumps(self._first_request()).encode())
        message = _error_message(payload)
        if status != 503:
            return CheckResult(name, False, f"POST {path} with example 1 = {status} (wanted 503: nothing may be "
                                            f"served without the GPU): {str(payload)[:200]}")
        if accelerator not in message:
            return CheckResult(name, False, f"HTTP 503, but the error does not name {accelerator}: "
                                            f"{message or str(payload)[:200]}")
        return CheckResult(name, True, f"HTTP 503: {message}")

    def _first_request(self) -> dict:
        """The first example as a JSON request; datatypes from the metadata, else from the JSON values."""
        try:
            declared = self.declared("inputs")
        except Exception:  # noqa: BLE001 - the request is still worth sending
            declared = {}
        return {"inputs": [{"name": t, "datatype": declared.get(t, {}).get("datatype") or _json_datatype(v),
                            "shape": _shape(v), "data": _flatten(v)} for t, v in self.examples[0]["inputs"].items()]}

    def check_never_constructed(self, accelerator: str) -> CheckResult:
        name = "handler never constructed"
        return _guard(name, lambda: self._check_never_constructed(name, accelerator))

    def _check_never_constructed(self, name: str, accelerator: str) -> CheckResult:
        """The server's own log lines (no `logger` field) say "not ready: accelerator ...", and never "ready"
        (logged once the handler's constructor returned) nor "the model handler failed to load" (it raised)."""
        own = []
        for line in self.container.stdout_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("message"), str) and "logger" not in entry:
                own.append(entry)
        refusal = next((e["message"] for e in own if e.get("level") == "error" and "is not ready" in e["message"]
                        and f"accelerator {accelerator}" in e["message"]), None)
        constructed = next((e["message"] for e in own if e["message"] == "ready"
                            or e["message"].startswith("the model handler failed to load")), None)
        problems = []
        if refusal is None:
            problems.append(f"the log has no error line saying the model is not ready for accelerator {accelerator}")
        if constructed is not None:
            problems.append(f"the log shows the handler was constructed: {constructed!r}")
        if problems:
            return CheckResult(name, False, "; ".join(problems) + "\n" + self.container.log_tail(10))
        return CheckResult(name, True, f"the log says {refusal!r}, and no line shows a constructed handler")


def _compare(tensor: str, declared: Optional[str], output: dict, actual: Any, expected: list) -> list[str]:
    """Mismatches between one output tensor and its expected value (empty when they agree)."""
    datatype = output.get("datatype")
    if declared and datatype != declared:
        return [f"{tensor}: datatype {datatype}, the metadata declares {declared}"]
    want_shape = _shape(expected)
    got_shape = list(output.get("shape") or [])
    if got_shape != want_shape:
        return [f"{tensor}: shape {got_shape}, expected {want_shape}"]
    want = _flatten(expected)
    if datatype in _FLOAT_TYPES:
        got = np.asarray(actual, dtype=np.float64).reshape(-1)
        close = np.isclose(got, np.asarray(want, dtype=np.float64), rtol=FLOAT_TOLERANCE, atol=FLOAT_TOLERANCE,
                           equal_nan=True)
        return [f"{tensor}[{i}]: got {got[i]:.6g}, expected {want[i]} (tolerance {FLOAT_TOLERANCE:g})"
                for i in np.flatnonzero(~close)[:5]]
    # BOOL, INT and BYTES: exact, on the JSON values the server sent (numpy would coerce 1 to True), or on the
    # decoded binary data.
    got_values = _flatten(output["data"]) if "data" in output else _binary_values(datatype, actual)
    problems = []
    for i, (g, w) in enumerate(zip(got_values, want)):
        same = (_kind(g) == _kind(w) and g == w) if datatype in ("BOOL", "BYTES") else (
            _kind(g) == "int" and _kind(w) in ("int", "float") and g == w)
        if not same:
            problems.append(f"{tensor}[{i}]: got {g!r}, expected {w!r}")
    if len(got_values) != len(want):
        problems.append(f"{tensor}: {len(got_values)} values, expected {len(want)}")
    return problems[:5]


def _json_datatype(value: Any) -> str:
    """The datatype a JSON value of the examples suggests, when there is no metadata to say."""
    kind = _kind(next(iter(_flatten(value)), 0.0))
    return {"bool": "BOOL", "str": "BYTES", "int": "INT64"}.get(kind, "FP32")


def _binary_values(datatype: Optional[str], actual: Any) -> list:
    """An output that came as binary data, as the values JSON would have carried."""
    flat = np.asarray(actual).reshape(-1) if actual is not None else []
    if datatype == "BYTES":
        return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in flat]
    if datatype == "BOOL":
        return [bool(v) for v in flat]
    return [int(v) for v in flat]


def run_checks(run: ContractRun, expect_uid: int = EXPECTED_UID, expect_gid: int = EXPECTED_GID,
               stop_grace: float = STOP_GRACE_SECONDS, stop_timeout: float = 30.0,
               idle_connections: int = 1) -> list[CheckResult]:
    """Every check in order; the SIGTERM check comes last because it ends the container."""
    results = run.check_health()
    results.append(run.check_metadata())
    results += run.check_examples()
    results += run.check_examples(binary=True)
    results += run.check_malformed()
    results.append(run.check_user(expect_uid, expect_gid))
    results.append(run.check_network())
    results.append(run.check_healthcheck())
    results.append(run.check_sigterm(stop_grace, stop_timeout, idle_connections))
    return results


def run_no_gpu_checks(run: ContractRun, accelerator: str, window: float = NOT_READY_WINDOW_SECONDS,
                      stop_grace: float = STOP_GRACE_SECONDS, stop_timeout: float = 30.0,
                      idle_connections: int = 1) -> list[CheckResult]:
    """A CUDA image without a GPU (after `wait_live`): it must refuse to serve, never fall back to the CPU."""
    results = [run.check_stays_not_ready(window), run.check_model_not_ready(),
               run.check_inference_refused(accelerator), run.check_never_constructed(accelerator)]
    results.append(run.check_sigterm(stop_grace, stop_timeout, idle_connections))
    return results
