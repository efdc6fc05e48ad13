"""healthcheck.py as the image runs it: alone in /app/server/, next to nothing else of the runtime."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Optional

from aegis_plugin.core.runtime import healthcheck as healthcheck_module
from aegis_plugin.core.runtime.server_test import Server, fake_devices

HEALTHCHECK = Path(healthcheck_module.__file__).resolve()


def healthcheck(
    tmp_path: Path, port: Optional[int], env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess:
    directory = tmp_path / "hc" / "server"
    if not directory.exists():
        directory.mkdir(parents=True)
        shutil.copy(HEALTHCHECK, directory / "healthcheck.py")
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AEGIS_HEALTHCHECK_TIMEOUT": "1",
        # A proxy in the environment must not reroute the probe (urllib would send it there).
        "http_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        **({"AEGIS_PORT": str(port)} if port is not None else {}),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, str(directory / "healthcheck.py")],
        cwd=str(directory.parent), env=environment, capture_output=True, timeout=10,
    )


def one_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert text.endswith("\n") and text.count("\n") == 1, text
    return text.strip()


def test_ready_server_exits_0(tmp_path: Path) -> None:
    with Server(tmp_path / "srv") as server:
        server.start()
        result = healthcheck(tmp_path, server.port)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0
        # Once the server is gone the probe fails.
        result = healthcheck(tmp_path, server.port)
        assert result.returncode == 1
        assert "Connection refused" in one_line(result.stderr)


def test_not_ready_server_exits_1(tmp_path: Path) -> None:
    env = {"AEGIS_NVIDIA_DEVICE_DIR": str(fake_devices(tmp_path / "dev"))}
    with Server(tmp_path / "srv", manifest={"accelerator": "cuda-12.4"}, env=env) as server:
        server.start(ready=False)
        result = healthcheck(tmp_path, server.port)
        assert result.returncode == 1
        assert one_line(result.stderr) == (
            f"not ready: GET http://127.0.0.1:{server.port}/v2/health/ready: HTTP 503 Service Unavailable"
        )


def test_nothing_listening_exits_1(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = healthcheck(tmp_path, port)
    assert result.returncode == 1
    assert one_line(result.stderr).startswith(f"not ready: GET http://127.0.0.1:{port}/v2/health/ready: ")


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) but never responds
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        started = time.monotonic()
        result = healthcheck(tmp_path, silent.getsockname()[1], {"AEGIS_HEALTHCHECK_TIMEOUT": "0.3"})
        assert time.monotonic() - started < 1.5
    assert result.returncode == 1
    assert one_line(result.stderr).endswith(": timed out")


def test_a_server_that_answers_garbage_exits_1(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def answer() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"garbage\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        result = healthcheck(tmp_path, listener.getsockname()[1])
        thread.join(2)
    assert result.returncode == 1
    assert "invalid HTTP response" in one_line(result.stderr)


def test_invalid_settings_exit_1(tmp_path: Path) -> None:
    for env in ({"AEGIS_PORT": "http"}, {"AEGIS_PORT": "0"}, {"AEGIS_HEALTHCHECK_TIMEOUT": "soon"},
                {"AEGIS_HEALTHCHECK_TIMEOUT": "inf"}):
        result = healthcheck(tmp_path, None, env)
        assert result.returncode == 1
        assert one_line(result.stderr).startswith("not ready: invalid AEGIS_PORT=")


def test_check_in_process() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert healthcheck_module.check({"AEGIS_PORT": str(port)}).startswith(f"GET http://127.0.0.1:{port}/")
    assert healthcheck_module.check({"AEGIS_PORT": "99999"}).startswith("invalid AEGIS_PORT='99999'")
