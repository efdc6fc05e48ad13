"""The Bearer token flow (distribution's token auth), against a small stand-in for a registry and its token
service; docker-registry's own token auth needs a signing CA, so the real-registry tests use Basic auth."""
from __future__ import annotations

import base64
import http.server
import json
import threading
import urllib.parse
from pathlib import Path

import pytest

from aegis_plugin.core.registry.auth import Credentials
from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.testutil import recording_server, self_signed_tls
from aegis_plugin.core.registry.transport import (
    RegistryError,
    Transport,
    may_carry_credentials,
    realm_gets_credentials,
    same_origin,
)

TOKEN = "t0ken"
BASIC = "Basic " + base64.b64encode(b"ci:pw").decode()
SCOPE = "repository:ml/x:pull"


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


def test_an_answer_larger_than_the_memory_cap_is_refused() -> None:
    with recording_server(lambda path, _: (200, {}, b"x" * 100)) as (address, _):
        transport = Transport(address, plain_http=True, max_body=99)
        with pytest.raises(RegistryError, match=r"GET /v2/ml/x/blobs/sha256:0: the answer is larger than 99 bytes"):
            transport.request("GET", "/v2/ml/x/blobs/sha256:0", scope=SCOPE)
        assert Transport(address, plain_http=True, max_body=100).request(
            "GET", "/v2/ml/x/blobs/sha256:0", scope=SCOPE).body == b"x" * 100


def test_a_refused_token_is_one_clear_error(server) -> None:
    address, _ = server
    transport = Transport(address, Credentials("ci", "wrong"), plain_http=True)
    with pytest.raises(RegistryError, match=f"{address}: the token service refused \\(HTTP 401\\)"):
        transport.request("GET", "/v2/ml/x/tags/list", scope="repository:ml/x:pull")


def _token_service(path: str, authorization):
    """Hands out TOKEN for the right login, and an anonymous token (good for nothing here) otherwise."""
    return 200, {}, json.dumps({"token": TOKEN if authorization == BASIC else "anonymous"}).encode()


def _registry_with_realm(realm: str):
    def answer(path: str, authorization):
        if authorization != f"Bearer {TOKEN}":
            return 401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'}, b"{}"
        return 200, {}, b"ok"
    return answer


def test_a_realm_on_another_host_gets_the_credentials_only_when_listed() -> None:
    with recording_server(_token_service, host="127.0.0.2") as (token_host, token_seen):
        with recording_server(_registry_with_realm(f"http://{token_host}/token")) as (address, _):
            anonymous = Transport(address, Credentials("ci", "pw"), plain_http=True)
            with pytest.raises(RegistryError, match=rf"HTTP 401 \(credentials were not sent to the token service "
                                                    rf"{token_host}, .*AEGIS_REGISTRY_TOKEN_HOSTS"):
                anonymous.request("GET", "/v2/ml/x/tags/list", scope=SCOPE)
            assert [authorization for _, _, authorization in token_seen] == [None]

            listed = Transport(address, Credentials("ci", "pw"), plain_http=True, token_hosts=frozenset({token_host}))
            assert listed.request("GET", "/v2/ml/x/tags/list", scope=SCOPE).body == b"ok"
            assert [authorization for _, _, authorization in token_seen] == [None, BASIC]


def test_credentials_go_over_plain_http_only_to_loopback() -> None:
    for url in ("https://r.example.com/v2/", "http://127.0.0.1:5000/", "http://127.9.8.7/", "http://[::1]:5000/",
                "http://localhost:5000/"):
        assert may_carry_credentials(url), url
    for url in ("http://r.example.com/v2/", "http://10.0.0.1:5000/", "http://[2001:db8::1]/", "ftp://127.0.0.1/"):
        assert not may_carry_credentials(url), url
    registry, trusted = "https://r.example.com", frozenset({"auth.example.com"})
    assert realm_gets_credentials("https://r.example.com/token", registry, frozenset())
    assert realm_gets_credentials("https://auth.example.com/token", registry, trusted)
    assert not realm_gets_credentials("https://auth.example.com/token", registry, frozenset())
    assert not realm_gets_credentials("http://auth.example.com/token", registry, trusted)
    assert not realm_gets_credentials("http://r.example.com/token", registry, frozenset())
    assert not realm_gets_credentials("https://auth.example.com:8443/token", registry, trusted)  # another port
    assert realm_gets_credentials("https://auth.example.com:8443/token", registry, frozenset({"auth.example.com:8443"}))
    # A registry reached over plain HTTP elsewhere gets no token bought with the credentials either.
    assert not realm_gets_credentials("https://r.example.com/token", "http://r.example.com", frozenset())


def test_a_plain_http_registry_elsewhere_is_never_sent_a_login() -> None:
    transport = Transport("r.example.com", Credentials("ci", "pw"), plain_http=True)
    with pytest.raises(RegistryError, match="over plain HTTP, and credentials go over plain HTTP only to loopback"):
        transport._answer('Basic realm="r"', SCOPE)  # decides before sending anything


def test_a_redirect_from_https_to_http_on_the_same_host_drops_the_authorization(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    tls, certificate = self_signed_tls(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    port = []

    def answer(path: str, authorization):
        if path.startswith("/v2/") and authorization != BASIC:
            return 401, {"WWW-Authenticate": 'Basic realm="reg"'}, b"{}"
        if path == "/v2/ml/x/blobs/downgraded":
            return 307, {"Location": f"http://127.0.0.1:{port[0]}/storage"}, b""
        if path == "/v2/ml/x/blobs/moved":
            return 307, {"Location": "/storage"}, b""
        return 200, {}, b"blob"

    with recording_server(answer, tls=tls) as (address, seen):
        port.append(address.rsplit(":", 1)[1])
        transport = Transport(address, Credentials("ci", "pw"))
        assert transport.request("GET", "/v2/ml/x/blobs/downgraded", SCOPE).body == b"blob"
        assert seen[-1] == ("http", "/storage", None)
        assert transport.request("GET", "/v2/ml/x/blobs/moved", SCOPE).body == b"blob"
        assert seen[-1] == ("https", "/storage", BASIC)  # the same origin keeps it
    assert not same_origin("https://r.io/v2/", "http://r.io/storage")
    assert same_origin("https://r.io/v2/", "https://R.io:443/storage")


def test_a_url_on_another_host_gets_no_authorization() -> None:
    def registry(path: str, authorization):
        return (200, {}, b"ok") if authorization == BASIC else (401, {"WWW-Authenticate": 'Basic realm="r"'}, b"")

    with recording_server(registry) as (address, _), recording_server(registry, host="127.0.0.2") as (other, seen):
        transport = Transport(address, Credentials("ci", "pw"), plain_http=True)
        assert transport.request("GET", "/v2/ml/x/tags/list", SCOPE).body == b"ok"
        with pytest.raises(RegistryError, match="HTTP 401"):  # e.g. an upload Location that points elsewhere
            transport.request("PUT", f"http://{other}/upload", SCOPE, body=b"x", expect=(201,))
        assert seen == [("http", "/upload", None)]


def test_the_login_never_shows_in_a_repr() -> None:
    def registry(path: str, authorization):
        return (200, {}, b"ok") if authorization == BASIC else (401, {"WWW-Authenticate": 'Basic realm="r"'}, b"")

    with recording_server(registry) as (address, _):
        transport = Transport(address, Credentials("ci", "pw"), plain_http=True)
        assert transport.request("GET", "/v2/ml/x/tags/list", SCOPE).body == b"ok"
    shown = repr(Registry(transport))  # what a traceback or a debugger prints
    assert "ci" in shown and BASIC.split()[1] not in shown and "'pw'" not in shown, shown
