"""HTTP to one registry, answering its auth challenges (Basic, or Bearer tokens from its token service).

TLS by default; plain HTTP only for a loopback registry or when explicitly allowed. Redirects (registries
send blob downloads to object storage) are followed without the registry's Authorization header.
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
from typing import BinaryIO, Dict, Mapping, Optional, Sequence, Union

from aegis_plugin.core.registry.auth import Credentials

Body = Union[bytes, BinaryIO, None]


class RegistryError(Exception):
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


@dataclass
class Transport:
    registry: str  # host[:port]
    credentials: Optional[Credentials] = None
    plain_http: bool = False
    timeout: float = 120
    _auth: Dict[str, str] = field(default_factory=dict)  # scope -> Authorization header value

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
        response = self._send(method, url, body, headers, self._auth.get(scope), sink)
        if response.status == 401:
            self._auth[scope] = self._answer(response.headers.get("WWW-Authenticate", ""), scope)
            if hasattr(body, "seek"):
                body.seek(0)  # type: ignore[union-attr]
            response = self._send(method, url, body, headers, self._auth[scope], sink)
        if response.status in (301, 302, 303, 307, 308) and method in ("GET", "HEAD") and 200 in expect:
            location = urllib.parse.urljoin(url, response.headers.get("Location", ""))
            same_host = urllib.parse.urlsplit(location).netloc == urllib.parse.urlsplit(url).netloc
            response = self._send(method, location, None, headers, self._auth.get(scope) if same_host else None, sink)
        if response.status not in expect:
            raise RegistryError(
                f"{self.registry}: {method} {urllib.parse.urlsplit(url).path}: {_explain(response)}", response.status
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
                return Response(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers, e.read())
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise RegistryError(f"{self.registry}: cannot reach the registry ({reason})") from None

    def _answer(self, challenge: str, scope: str) -> str:
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if self.credentials is None:
                raise RegistryError(f"{self.registry}: the registry wants a login: set credentials (docker login, "
                                    f"or AEGIS_REGISTRY_USERNAME and AEGIS_REGISTRY_PASSWORD)", 401)
            token = base64.b64encode(f"{self.credentials.username}:{self.credentials.password}".encode()).decode()
            return f"Basic {token}"
        if scheme == "bearer":
            params = dict(_CHALLENGE_PARAM.findall(challenge))
            if "realm" not in params:
                raise RegistryError(f"{self.registry}: a Bearer challenge without a realm: {challenge!r}", 401)
            query = {k: v for k, v in (("service", params.get("service")), ("scope", scope)) if v}
            url = params["realm"] + ("&" if "?" in params["realm"] else "?") + urllib.parse.urlencode(query)
            basic = None
            if self.credentials is not None:
                pair = f"{self.credentials.username}:{self.credentials.password}".encode()
                basic = f"Basic {base64.b64encode(pair).decode()}"
            response = self._send("GET", url, None, None, basic)
            if response.status != 200:
                raise RegistryError(f"{self.registry}: the token service refused ({_explain(response)})",
                                    response.status)
            data = json.loads(response.body or b"{}")
            token = data.get("token") or data.get("access_token")
            if not token:
                raise RegistryError(f"{self.registry}: the token service answered without a token", 401)
            return f"Bearer {token}"
        raise RegistryError(f"{self.registry}: unsupported auth challenge {challenge!r}", 401)


def _explain(response: Response) -> str:
    """`HTTP 404 MANIFEST_UNKNOWN: manifest unknown` from a registry's error body, if it has one."""
    detail = ""
    try:
        errors = json.loads(response.body or b"{}").get("errors") or []
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors[:3])
    except (ValueError, AttributeError):
        pass
    return f"HTTP {response.status}" + (f" {detail}" if detail else "")
