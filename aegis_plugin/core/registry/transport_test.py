"""The Bearer token flow (distribution's token auth), against a small stand-in for a registry and its token
service; docker-registry's own token auth needs a signing CA, so the real-registry tests use Basic auth."""
from __future__ import annotations

import base64
import http.server
import json
import threading
import urllib.parse

import pytest

from aegis_plugin.core.registry.auth import Credentials
from aegis_plugin.core.registry.transport import RegistryError, Transport

TOKEN = "t0ken"


@pytest.fixture
def server():
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/token":
                query = urllib.parse.parse_qs(url.query)
                good = self.headers.get("Authorization") == "Basic " + base64.b64encode(b"ci:pw").decode()
                if not good or query.get("service") != ["reg"] or query.get("scope") != ["repository:ml/x:pull"]:
                    return self._reply(401, b"{}")
                return self._reply(200, json.dumps({"token": TOKEN}).encode())
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
                return self._reply(401, b"{}", {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'})
            return self._reply(200, b"ok")

        def _reply(self, status: int, body: bytes, headers: dict = {}) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{httpd.server_address[1]}", seen
    httpd.shutdown()
    httpd.server_close()


def test_bearer_token_is_fetched_with_basic_credentials_and_reused(server) -> None:
    address, seen = server
    transport = Transport(address, Credentials("ci", "pw"), plain_http=True)
    assert transport.request("GET", "/v2/ml/x/tags/list", scope="repository:ml/x:pull").body == b"ok"
    assert transport.request("GET", "/v2/ml/x/tags/list", scope="repository:ml/x:pull").body == b"ok"
    assert [path.split("?")[0] for path, _ in seen] == ["/v2/ml/x/tags/list", "/token", "/v2/ml/x/tags/list",
                                                        "/v2/ml/x/tags/list"]


def test_a_refused_token_is_one_clear_error(server) -> None:
    address, _ = server
    transport = Transport(address, Credentials("ci", "wrong"), plain_http=True)
    with pytest.raises(RegistryError, match=f"{address}: the token service refused \\(HTTP 401\\)"):
        transport.request("GET", "/v2/ml/x/tags/list", scope="repository:ml/x:pull")
