from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from aegis_plugin.core.download import DownloadError, download, has_secrets, redact_text, redact_url
from aegis_plugin.testutil.local_servers import serving, serving_guarded_file

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


# Secrets in URLs: credentials and signed query strings never reach a message.
USER, PASSWORD, SIGNATURE, CREDENTIAL = "deploy-bot", "s3cr3t-pa55", "f00dfeedcafe1234", "AKIAEXAMPLE/20240101"
SECRETS = (USER, PASSWORD, SIGNATURE, CREDENTIAL, "AKIAEXAMPLE%2F20240101")
SIGNED_QUERY = f"X-Amz-Signature={SIGNATURE}&X-Amz-Credential=AKIAEXAMPLE%2F20240101"


@pytest.mark.parametrize(
    "url, redacted",
    [
        ("https://host/w.safetensors", "https://host/w.safetensors"),
        ("https://user:pass@host:8443/m/w.safetensors", "https://***@host:8443/m/w.safetensors"),
        ("https://token@host/w", "https://***@host/w"),
        ("https://b.s3.amazonaws.com/w?X-Amz-Signature=ab12&X-Amz-Credential=AKIA%2Fx&X-Amz-Expires=3600",
         "https://b.s3.amazonaws.com/w?X-Amz-Signature=***&X-Amz-Credential=***&X-Amz-Expires=***"),
        ("https://acct.blob.core.windows.net/c/w?sv=2022&sig=abc%3D", "https://acct.blob.core.windows.net/c/w?sv=***&sig=***"),
        ("https://host/w?token=abc#frag", "https://host/w?token=***"),
        ("https://host/w?abcdef", "https://host/w?***"),
        ("http://user:pa/ss@host/w", "http://*** (a malformed URL)"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert has_secrets(url) == (url != redacted)


def test_redact_text_hides_urls_and_bare_secret_parts() -> None:
    url = f"https://{USER}:{PASSWORD}@host/w?{SIGNED_QUERY}"
    text = redact_text(f"nonnumeric port: '{PASSWORD}@host'; fetching {url}: denied ({SIGNATURE}).", url)
    assert text == "nonnumeric port: '***@host'; fetching https://***@host/w?X-Amz-Signature=***&X-Amz-Credential=***: denied (***)."


@pytest.fixture
def guarded(tmp_path: Path):
    """Serves CONTENT at /w.bin to a request with USER:PASSWORD and SIGNED_QUERY only; else 403; 404 elsewhere."""
    seen: list = []
    with serving_guarded_file("/w.bin", CONTENT, USER, PASSWORD, SIGNED_QUERY, seen, echo=True) as port:
        yield port, seen


def assert_redacted(message: str) -> None:
    for secret in SECRETS:
        assert secret not in message, message


def test_credentials_and_a_signed_query_are_used(guarded, tmp_path: Path) -> None:
    port, seen = guarded
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/w.bin?{SIGNED_QUERY}"
    download(url, hashlib.sha256(CONTENT).hexdigest(), len(CONTENT), str(tmp_path / "w.bin"))
    assert (tmp_path / "w.bin").read_bytes() == CONTENT
    assert seen[0][1].startswith("Basic ")


@pytest.mark.parametrize(
    "path, query, status",
    [("/w.bin", f"X-Amz-Signature=wrong{SIGNATURE}&X-Amz-Credential=AKIAEXAMPLE%2F20240101", 403),
     ("/missing.bin", SIGNED_QUERY, 404)],
)
def test_a_failed_download_names_no_secret(guarded, tmp_path: Path, path: str, query: str, status: int) -> None:
    port, _ = guarded
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:{port}{path}?{query}"
    with pytest.raises(DownloadError) as e:
        download(url, "0" * 64, 1, str(tmp_path / "x"))
    assert e.value.status == status
    assert str(e.value).startswith(f"cannot download http://***@127.0.0.1:{port}{path}?X-Amz-Signature=***&X-Amz-Credential=***: HTTP {status}")
    assert_redacted(str(e.value))


def test_a_content_mismatch_names_no_secret(guarded, tmp_path: Path) -> None:
    port, _ = guarded
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/w.bin?{SIGNED_QUERY}"
    with pytest.raises(DownloadError, match=r"^http://\*\*\*@127\.0\.0\.1:\d+/w\.bin\?X-Amz-Signature=\*\*\*&") as e:
        download(url, "0" * 64, len(CONTENT), str(tmp_path / "x"))
    assert_redacted(str(e.value))


def test_an_unreachable_origin_names_no_secret(tmp_path: Path) -> None:
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:9/w.bin?{SIGNED_QUERY}"
    with pytest.raises(DownloadError, match=r"cannot download http://\*\*\*@127\.0\.0\.1:9/w\.bin\?.*refused") as e:
        download(url, "0" * 64, 1, str(tmp_path / "x"), attempts=1)
    assert_redacted(str(e.value))


def test_credentials_are_not_sent_on_to_a_redirect(tmp_path: Path) -> None:
    seen: list = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            if self.path == "/w.bin":
                self.send_response(302)
                self.send_header("Location", "/elsewhere.bin")
                self.end_headers()
            else:
                self.send_error(404)

        def log_message(self, *args) -> None:
            pass

    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as port:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download(f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/w.bin", "0" * 64, 1, str(tmp_path / "x"))
    assert seen[0] is not None and seen[1:] == [None]
