"""HTTP to one registry, answering its auth challenges (Basic, or Bearer tokens from its token service).

TLS by default; plain HTTP only for a loopback registry or when explicitly allowed. Where credentials go:

- only to the registry's own origin (scheme, host, port): a URL elsewhere (an upload Location, a redirect to
  object storage, or one from https to http on the same host) is sent without the Authorization header;
- never over plain HTTP, except to loopback (127.0.0.0/8, ::1, localhost): a plain-HTTP registry elsewhere
  is used anonymously, and a Basic login it asks for is refused;
- to a Bearer challenge's token service (its `realm`) only over TLS (or loopback), and only when it is on the
  registry's own host and port or listed in `token_hosts` (`AEGIS_REGISTRY_TOKEN_HOSTS`). Otherwise the
  token is asked for anonymously, which is enough to pull a public image; if the registry then still refuses,
  the error says why the credentials were withheld.
"""
from __future__ import annotations

import base64
import json
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import BinaryIO, Dict, FrozenSet, Mapping, Optional, Sequence, Tuple, Union

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.registry.auth import HOST_ENV, TOKEN_HOSTS_ENV, Credentials
from aegis_plugin.core.registry.reference import is_loopback

Body = Union[bytes, BinaryIO, None]


class RegistryError(AegisError):
    """One line: the registry, what was asked, and what it answered (`status`: None when unreachable)."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def transient(self) -> bool:
        """Worth retrying: the registry was unreachable or failed on its side (5xx)."""
        return self.status is None or self.status >= 500


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_DEFAULT_PORTS = {"http": 80, "https": 443}
_ERROR_BODY_MAX = 64 << 10


def _origin(url: str) -> Tuple[str, str, Optional[int]]:
    """(scheme, host, port) with the scheme's default port filled in: `https://r.io` is `https://r.io:443`."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(parts.scheme.lower())


def may_carry_credentials(url: str) -> bool:
    """Over TLS, or to loopback: plain HTTP anywhere else can be read and changed on the way."""
    scheme, host, _ = _origin(url)
    return scheme == "https" or (scheme == "http" and is_loopback(host))


def same_origin(url: str, other: str) -> bool:
    """Same scheme, host and port: an https to http redirect on one host is another origin."""
    return _origin(url) == _origin(other)


def realm_gets_credentials(realm: str, registry_url: str, token_hosts: FrozenSet[str]) -> bool:
    """Whether a Bearer challenge's token service may receive the registry's credentials."""
    if not (may_carry_credentials(realm) and may_carry_credentials(registry_url)):
        return False
    scheme, host, port = _origin(realm)
    if (host, port) == _origin(registry_url)[1:]:
        return True
    named = f"[{host}]" if ":" in host else host
    return f"{named}:{port}" in token_hosts or (port == _DEFAULT_PORTS[scheme] and named in token_hosts)


@dataclass
class Transport:
    registry: str  # host[:port]
    credentials: Optional[Credentials] = None
    plain_http: bool = False
    timeout: float = 120
    # The most a registry's answer may hold in memory (manifests, tokens, signatures and attestations: an SBOM
    # attestation is a few MB); layers are streamed to files (`sink`). A larger answer is an error, so a hostile
    # or broken registry cannot make `aegis verify` or `publish` exhaust memory.
    max_body: int = 64 << 20
    token_hosts: FrozenSet[str] = frozenset()  # token services on other hosts trusted with the credentials
    # scope -> Authorization header value: a secret (Basic is the password in base64), so never in repr()
    _auth: Dict[str, str] = field(default_factory=dict, repr=False)
    _withheld: str = ""  # why the credentials were not sent to the token service, for the error

    @property
    def base_url(self) -> str:
        return f"{'http' if self.plain_http else 'https'}://{self.registry}"

    def request(
        self,
        method: str,
        path_or_url: str,
        scope: str,
        body: Body = None,
        headers: Optional[Mapping[str, str]] = None,
        expect: Sequence[int] = (200,),
        sink: Optional[BinaryIO] = None,
    ) -> Response:
        """Sends one request (retried once after an auth challenge); RegistryError unless the status is
        in `expect`. A file body must be seekable: it is rewound for the retry. With `sink`, a 200 answer's
        body is copied there in chunks (for blobs of any size) instead of into `Response.body`."""
        url = path_or_url if "://" in path_or_url else self.base_url + path_or_url
        own = same_origin(url, self.base_url)
        response = self._send(method, url, body, headers, self._auth.get(scope) if own else None, sink)
        if response.status == 401 and own:
            self._auth[scope] = self._answer(response.headers.get("WWW-Authenticate", ""), scope)
            if hasattr(body, "seek"):
                body.seek(0)  # type: ignore[union-attr]
            response = self._send(method, url, body, headers, self._auth[scope], sink)
        if response.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD") and 200 in expect:
            location = urllib.parse.urljoin(url, response.headers.get("Location", ""))
            keep = own and same_origin(location, url)
            response = self._send(method, location, None, headers, self._auth.get(scope) if keep else None, sink)
        if response.status not in expect:
            hint = f" ({self._withheld})" if response.status == 401 and self._withheld else ""
            raise RegistryError(
                f"{self.registry}: {method} {urllib.parse.urlsplit(url).path}: {_explain(response)}{hint}",
                response.status,
            )
        return response

    def _send(self, method: str, url: str, body: Body, headers: Optional[Mapping[str, str]],
              authorization: Optional[str], sink: Optional[BinaryIO] = None) -> Response:
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
        if authorization:
            request.add_header("Authorization", authorization)
        try:
            with _OPENER.open(request, timeout=self.timeout) as r:
                if sink is not None and r.status == 200:
                    shutil.copyfileobj(r, sink, 1 << 20)
                    return Response(r.status, r.headers, b"")
                body = r.read(self.max_body + 1)
                if len(body) > self.max_body:
                    raise RegistryError(
                        f"{self.registry}: {method} {urllib.parse.urlsplit(url).path}: the answer is larger than "
                        f"{self.max_body} bytes, more than Aegis reads into memory"
                    )
                return Response(r.status, r.headers, body)
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers, e.read(_ERROR_BODY_MAX))  # for the message only
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise RegistryError(f"{self.registry}: cannot reach the registry ({reason})") from None

    def _answer(self, challenge: str, scope: str) -> str:
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if self.credentials is None:
                raise RegistryError(f"{self.registry}: the registry wants a login: set credentials (docker login, "
                                    f"or AEGIS_REGISTRY_USERNAME and AEGIS_REGISTRY_PASSWORD with "
                                    f"{HOST_ENV}={self.registry})", 401)
            if not may_carry_credentials(self.base_url):
                raise RegistryError(f"{self.registry}: the registry wants a login over plain HTTP, and credentials "
                                    f"go over plain HTTP only to loopback: serve it over TLS", 401)
            token = base64.b64encode(f"{self.credentials.username}:{self.credentials.password}".encode()).decode()
            return f"Basic {token}"
        if scheme == "bearer":
            params = dict(_CHALLENGE_PARAM.findall(challenge))
            if _origin(params.get("realm", ""))[0] not in _DEFAULT_PORTS:
                raise RegistryError(f"{self.registry}: a Bearer challenge without an http(s) realm: {challenge!r}", 401)
            query = {k: v for k, v in (("service", params.get("service")), ("scope", scope)) if v}
            url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(query)
            basic, self._withheld = None, ""
            if self.credentials is not None:
                if realm_gets_credentials(params["realm"], self.base_url, self.token_hosts):
                    pair = f"{self.credentials.username}:{self.credentials.password}".encode()
                    basic = f"Basic {base64.b64encode(pair).decode()}"
                else:
                    self._withheld = self._why_withheld(params["realm"])
            response = self._send("GET", url, None, None, basic)
            if response.status != 200:
                hint = f"; {self._withheld}" if self._withheld else ""
                raise RegistryError(f"{self.registry}: the token service refused ({_explain(response)}{hint})",
                                    response.status)
            data = json.loads(response.body or b"{}")
            token = data.get("token") or data.get("access_token")
            if not token:
                raise RegistryError(f"{self.registry}: the token service answered without a token", 401)
            return f"Bearer {token}"
        raise RegistryError(f"{self.registry}: unsupported auth challenge {challenge!r}", 401)

    def _why_withheld(self, realm: str) -> str:
        _, host, port = _origin(realm)
        if not (may_carry_credentials(realm) and may_carry_credentials(self.base_url)):
            return (f"credentials were not sent to the token service {host}:{port}: they go over plain HTTP only "
                    f"to loopback")
        return (f"credentials were not sent to the token service {host}:{port}, not the registry's host: "
                f"add it to {TOKEN_HOSTS_ENV} if it is the registry's")


def _explain(response: Response) -> str:
    """`HTTP 404 MANIFEST_UNKNOWN: manifest unknown` from a registry's error body, if it has one."""
    detail = ""
    try:
        errors = json.loads(response.body or b"{}").get("errors") or []
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors[:3])
    except (ValueError, AttributeError):
        pass
    return f"HTTP {response.status}" + (f" {detail}" if detail else "")
