from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from aegis_plugin.core.download import DownloadError, download

CONTENT = b"pinned weights" * 1000
requests: list = []  # paths the test server was asked for


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "w.bin").write_bytes(CONTENT)
    requests.clear()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_downloads_a_pinned_file(server: str, tmp_path: Path) -> None:
    target = tmp_path / "out" / "w.bin"
    download(f"{server}/w.bin", hashlib.sha256(CONTENT).hexdigest(), len(CONTENT), str(target))
    assert target.read_bytes() == CONTENT and (target.stat().st_mode & 0o777) == 0o644


@pytest.mark.parametrize(
    "sha256, size, message",
    [
        ("0" * 64, len(CONTENT), "but the pin is 14000 bytes with sha256 " + "0" * 64),
        (hashlib.sha256(CONTENT).hexdigest(), 10, "is larger than the pinned 10 bytes"),
    ],
)
def test_content_not_matching_the_pin(server: str, tmp_path: Path, sha256: str, size: int, message: str) -> None:
    with pytest.raises(DownloadError, match=message):
        download(f"{server}/w.bin", sha256, size, str(tmp_path / "w.bin"))
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]  # nothing half-written


def test_not_found_is_not_retried(server: str, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"cannot download .*/missing.bin: HTTP 404 File not found"):
        download(f"{server}/missing.bin", "0" * 64, 1, str(tmp_path / "x"), attempts=3)
    assert requests == ["/missing.bin"]


def test_an_unreachable_origin_is_retried_then_reported(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"cannot download http://127.0.0.1:9/w.bin: URLError: .*refused"):
        download("http://127.0.0.1:9/w.bin", "0" * 64, 1, str(tmp_path / "x"), attempts=2)
