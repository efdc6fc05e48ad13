"""The contract checks and the real `tritonclient` against the real Aegis server, started from its sources.

The server runs as the image runs it (`python -m aegis_runtime.server`, here on 127.0.0.1 with a free port) with a
small handler that covers every kind of datatype; tensors go both as JSON and as binary tensor data, which is what
tritonclient sends by default. The no-GPU contract runs against the same server with a manifest declaring cuda-12.1
and the server's GPU probe pointed at an empty device directory (AEGIS_NVIDIA_DEVICE_DIR).
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator

import numpy as np
import pytest
import tritonclient.http as triton

from aegis_plugin.core.contract import checks
from aegis_plugin.core.contract.checks import ContractRun
from aegis_plugin.core.contract.sandbox import Container, free_loopback_port

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"
MODEL, VERSION = "kinds", "2.0.0"

HANDLER = '''
SIGNATURE = {
    "inputs": [
        {"name": "x", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "h", "datatype": "FP16", "shape": [-1]},
        {"name": "flag", "datatype": "BOOL", "shape": [-1]},
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
        {"name": "n", "datatype": "INT64", "shape": [-1]},
    ],
    "outputs": [
        {"name": "y", "datatype": "FP32", "shape": [-1]},
        {"name": "h2", "datatype": "FP16", "shape": [-1]},
        {"name": "notflag", "datatype": "BOOL", "shape": [-1]},
        {"name": "upper", "datatype": "BYTES", "shape": [-1]},
        {"name": "n3", "datatype": "INT64", "shape": [-1]},
    ],
}


class Handler:
    def __init__(self, model_dir):
        pass

    def predict(self, inputs):
        return {
            "y": [a + b for a, b in inputs["x"]],
            "h2": [v * 2 for v in inputs["h"]],
            "notflag": [not f for f in inputs["flag"]],
            "upper": [t.upper() for t in inputs["text"]],
            "n3": [v * 3 for v in inputs["n"]],
        }
'''

EXAMPLES = [
    {"inputs": {"x": [[1.5, 2.0], [3.0, -1.0]], "h": [0.5, 1.25], "flag": [True, False], "text": ["ab", "café"],
                "n": [2, -(2**40)]},
     "outputs": {"y": [3.5, 2.0], "h2": [1.0, 2.5], "notflag": [False, True], "upper": ["AB", "CAFÉ"],
                 "n3": [6, -3 * 2**40]}},
    {"inputs": {"x": [[0.0, 0.25]], "h": [-3.0], "flag": [False], "text": [""], "n": [0]},
     "outputs": {"y": [0.25], "h2": [-6.0], "notflag": [True], "upper": [""], "n3": [0]}},
]


def install(root: Path, accelerator: str = "") -> dict[str, str]:
    """The image's /app (with `accelerator` in the manifest) and aegis_runtime below `root`; the server's env."""
    app = root / "app"
    (app / "server").mkdir(parents=True)
    (app / "model").mkdir()
    manifest = f'model_id: "{MODEL}"\nversion: "{VERSION}"\nframework: "python"\n'
    (app / "manifest.yaml").write_text(manifest + (f'accelerator: "{accelerator}"\n' if accelerator else ""))
    (app / "server" / "handler.py").write_text(HANDLER)
    package = root / "lib" / "aegis_runtime"  # the image's layout
    package.mkdir(parents=True)
    for source in RUNTIME_DIR.glob("*.py"):
        if not source.name.endswith("_test.py"):
            shutil.copy(source, package / source.name)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(root / "lib"),
            "PYTHONDONTWRITEBYTECODE": "1", "AEGIS_APP_DIR": str(app), "AEGIS_HOST": "127.0.0.1", "AEGIS_PORT": "0"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    root = tmp_path_factory.mktemp("server")
    env = install(root)
    log = root / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "aegis_runtime.server"], env=env, cwd=root,
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        port = _wait_ready(process, log)
        yield SimpleNamespace(base_url=f"127.0.0.1:{port}", port=port, log=log)
    finally:
        process.kill()
        process.wait(5)


def _wait_ready(process: subprocess.Popen, log: Path, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    port = 0
    while time.monotonic() < deadline:  # bounded
        if process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode}:\n{log.read_text()}")
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        port = port or next((e["port"] for e in lines if e.get("message") == "listening"), 0)
        if port and any(e.get("message") == "ready" for e in lines):
            return port
        time.sleep(0.05)
    raise AssertionError(f"the server was not ready after {timeout} s:\n{log.read_text()}")


@pytest.fixture
def run(server: SimpleNamespace) -> Iterator[ContractRun]:
    contract = ContractRun(server, EXAMPLES, MODEL, VERSION)  # type: ignore[arg-type]
    yield contract
    contract.close()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_the_contract_checks_pass_in_both_modes(run: ContractRun, binary: bool) -> None:
    results = run.check_health() + [run.check_metadata()] + run.check_examples(binary=binary)
    assert [(r.name, r.passed) for r in results if not r.passed] == [], [r.detail for r in results]
    assert len(results) == 4 + len(EXAMPLES)
    if binary:
        assert results[-1].name == "example 2/2 (binary tensor data)"


def test_the_binary_check_fails_on_a_wrong_answer(server: SimpleNamespace) -> None:
    wrong = json.loads(json.dumps(EXAMPLES[:1]))
    wrong[0]["outputs"]["upper"] = ["AB", "CAFE"]
    wrong[0]["outputs"]["notflag"] = [True, True]
    contract = ContractRun(server, wrong, MODEL, VERSION)  # type: ignore[arg-type]
    try:
        (result,) = contract.check_examples(binary=True)
    finally:
        contract.close()
    assert not result.passed
    assert "upper[1]: got 'CAFÉ', expected 'CAFE'" in result.detail
    assert "notflag[0]: got False, expected True" in result.detail


def infer_inputs(binary: bool) -> list:
    arrays = {
        "x": (np.array([[1.5, 2.0], [3.0, -1.0]], dtype=np.float32), "FP32"),
        "h": (np.array([0.5, 1.25], dtype=np.float16), "FP16"),
        "flag": (np.array([True, False]), "BOOL"),
        "text": (np.array(["ab".encode(), "café".encode()], dtype=np.object_), "BYTES"),
        "n": (np.array([2, -(2**40)], dtype=np.int64), "INT64"),
    }
    inputs = []
    for name, (array, datatype) in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary_in", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize("binary_out", [False, True, None], ids=["json-out", "binary-out", "default-out"])
def test_tritonclient_in_every_mode(server: SimpleNamespace, binary_in: bool, binary_out: bool | None) -> None:
    client = triton.InferenceServerClient(server.base_url, connection_timeout=5.0, network_timeout=10.0)
    try:
        assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
        outputs = None if binary_out is None else [triton.InferRequestedOutput(n, binary_data=binary_out)
                                                    for n in ("y", "h2", "notflag", "upper", "n3")]
        result = client.infer(MODEL, infer_inputs(binary_in), outputs=outputs)
    finally:
        client.close()
    np.testing.assert_array_equal(result.as_numpy("y"), np.array([3.5, 2.0], dtype=np.float32))
    np.testing.assert_array_equal(result.as_numpy("h2"), np.array([1.0, 2.5], dtype=np.float16))
    np.testing.assert_array_equal(result.as_numpy("notflag"), np.array([False, True]))
    upper = list(result.as_numpy("upper"))  # bytes from binary data, str from JSON
    assert upper == (["AB".encode(), "CAFÉ".encode()] if binary_out is not False else ["AB", "CAFÉ"])
    np.testing.assert_array_equal(result.as_numpy("n3"), np.array([6, -3 * 2**40], dtype=np.int64))
    sent_binary = binary_out is not False
    for name in ("y", "h2", "notflag", "upper", "n3"):
        output = result.get_output(name)
        assert ("data" in output) != sent_binary, output
        assert ("binary_data_size" in (output.get("parameters") or {})) == sent_binary, output


def test_a_raw_binary_response_carries_its_header_length(server: SimpleNamespace) -> None:
    head = json.dumps({"inputs": [
        {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]},
        {"name": "h", "datatype": "FP16", "shape": [1], "parameters": {"binary_data_size": 2}},
        {"name": "flag", "datatype": "BOOL", "shape": [1], "data": [True]},
        {"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 5}},
        {"name": "n", "datatype": "INT64", "shape": [1], "data": [1]},
    ], "outputs": [{"name": "h2", "parameters": {"binary_data": True}}]}).encode()
    body = head + np.array([1.5], dtype="<f2").tobytes() + b"\x01\x00\x00\x00z"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("POST", f"/v2/models/{MODEL}/infer", body=body,
                     headers={"Inference-Header-Content-Length": str(len(head))})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    assert response.status == 200, data
    split = int(response.getheader("Inference-Header-Content-Length"))
    outputs = json.loads(data[:split])["outputs"]
    assert outputs == [{"name": "h2", "datatype": "FP16", "shape": [1], "parameters": {"binary_data_size": 2}}]
    assert np.frombuffer(data[split:], dtype="<f2").tolist() == [3.0]


# --- a CUDA image on a host without a GPU ----------------------------------------------------------------------

ACCELERATOR = "cuda-12.1"


@pytest.fixture
def containers(tmp_path: Path) -> Iterator[Callable[..., Container]]:
    """Starts the real server as the contract test's Container (its own process rather than bwrap's child).

    `gpu` stands in for the server's GPU probe: fake nvidiactl/nvidia0 nodes and a driver library that loads.
    """
    started: list[Container] = []

    def start(accelerator: str, gpu: bool = False, **extra_env: str) -> Container:
        root = tmp_path / f"container{len(started)}"
        env = install(root, accelerator)
        devices = root / "nvidia"
        devices.mkdir()
        if gpu:
            for name in ("nvidiactl", "nvidia0"):
                (devices / name).write_text("")
        port = free_loopback_port()
        env.update(AEGIS_NVIDIA_DEVICE_DIR=str(devices), AEGIS_LIBCUDA="libc.so.6" if gpu else "libcuda.so.1",
                   AEGIS_PORT=str(port), **extra_env)
        argv = [sys.executable, "-m", "aegis_runtime.server"]
        stdout, stderr = root / "container.stdout", root / "container.stderr"
        with open(stdout, "wb") as out, open(stderr, "wb") as err:
            process = subprocess.Popen(argv, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        container = Container(process=process, argv=argv, env=env, uid=os.getuid(), gid=os.getgid(), port=port,
                              rootfs=root, working_dir=str(root), stdout_path=stdout, stderr_path=stderr,
                              _server_pid=process.pid)
        started.append(container)
        return container

    yield start
    for container in started:
        if container.running():
            container.process.kill()
        container.process.wait(5)


def no_gpu_contract(container: Container, window: float = 1.0) -> list[checks.CheckResult]:
    """What `cli.run` runs for a CUDA image on a host without a GPU."""
    live = checks.wait_live(container, timeout=10.0)
    assert live.passed, live.detail
    run = ContractRun(container, EXAMPLES, MODEL, VERSION)
    try:
        return [live] + checks.run_no_gpu_checks(run, ACCELERATOR, window, stop_grace=5.0, stop_timeout=10.0)
    finally:
        run.close()


def test_a_cuda_image_without_a_gpu_passes_the_no_gpu_contract(containers: Callable[..., Container]) -> None:
    container = containers(ACCELERATOR)
    results = no_gpu_contract(container)
    assert [(r.name, r.passed) for r in results] == [
        ("live", True),
        ("not ready: /v2/health/ready stays 503 for 1 s", True),
        ("model not ready", True),
        (f"inference refused (503 naming {ACCELERATOR})", True),
        ("handler never constructed", True),
        ("SIGTERM stops it with exit code 0 within 5 s", True),
    ], [r.detail for r in results]
    details = {r.name: r.detail for r in results}
    assert details[f"inference refused (503 naming {ACCELERATOR})"].startswith(
        f"HTTP 503: model '{MODEL}' is not ready: accelerator {ACCELERATOR} is declared but no NVIDIA GPU is visible")
    assert "refusing to serve on the CPU" in details["handler never constructed"]
    assert container.process.returncode == 0


@pytest.mark.parametrize("accelerator, gpu", [("cpu", False), (ACCELERATOR, True)],
                         ids=["cpu-manifest", "cuda-with-a-fake-gpu"])
def test_a_server_that_serves_anyway_fails_the_no_gpu_contract(containers: Callable[..., Container],
                                                               accelerator: str, gpu: bool) -> None:
    results = no_gpu_contract(containers(accelerator, gpu=gpu))
    passed = {r.name: r.passed for r in results}
    details = {r.name: r.detail for r in results}
    refused = f"inference refused (503 naming {ACCELERATOR})"
    assert not passed[refused]
    assert details[refused].startswith(f"POST /v2/models/{MODEL}/infer with example 1 = 200 (wanted 503"), details
    assert not passed["not ready: /v2/health/ready stays 503 for 1 s"]
    assert not passed["model not ready"]
    assert not passed["handler never constructed"]
    assert "the log shows the handler was constructed: 'ready'" in details["handler never constructed"]
    assert passed["live"] and passed["SIGTERM stops it with exit code 0 within 5 s"]


def test_a_refusal_that_does_not_name_the_accelerator_fails(containers: Callable[..., Container]) -> None:
    container = containers("cuda-11.8")  # refused, but for another accelerator than the contract expects
    assert checks.wait_live(container, timeout=10.0).passed
    run = ContractRun(container, EXAMPLES, MODEL, VERSION)
    try:
        refused = run.check_inference_refused(ACCELERATOR)
        constructed = run.check_never_constructed(ACCELERATOR)
    finally:
        run.close()
    assert not refused.passed
    assert refused.detail.startswith(f"HTTP 503, but the error does not name {ACCELERATOR}: ")
    assert not constructed.passed
    assert constructed.detail.startswith(
        f"the log has no error line saying the model is not ready for accelerator {ACCELERATOR}")


def test_wait_live_fails_when_the_server_exits(containers: Callable[..., Container]) -> None:
    result = checks.wait_live(containers(ACCELERATOR, AEGIS_MAX_CONNECTIONS="0"), timeout=10.0)
    assert not result.passed
    assert result.detail.startswith("the container exited with code 2")
    assert "AEGIS_MAX_CONNECTIONS" in result.detail
