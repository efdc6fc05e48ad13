"""Downloads pinned by sha256 and size, as a build process, and the redaction of the URLs they name.

Pants 2.17 fetches `http_source` files itself, outside any process, so its remote cache never serves them:
every machine would download large weights from their origin again. Run as a process instead, a download
is an action keyed by (url, sha256, size) whose output the remote cache holds, and whose consumers (the
model layer) hit the cache without the bytes ever being fetched.

A URL may carry secrets: userinfo (`https://user:token@host/...`) or a signed query string
(`?X-Amz-Signature=...`, `?sig=...`, `?token=...`). No message names them: `redact_url` keeps the scheme,
host, port and path (which file) and hides the userinfo and every query value; any query counts, since a
signature cannot be told from a harmless parameter. Such a URL must not be part of a cache key either, so
the rules never pass it to this process (see aegis_plugin/util_rules/download.py); `download` still takes one
(credentials become a Basic authorization header that is never sent on to a redirect's target) and redacts
every error it raises.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from aegis_plugin.core.errors import AegisError

HIDDEN = "***"
# A URL inside a message (e.g. one a library quotes): up to whitespace or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SHORTEST_SECRET = 4  # shorter parts are hidden inside URLs only: alone, they would mangle a message


class DownloadError(AegisError):
    """One line: what was fetched and why it failed (`status`: the HTTP status, if the server answered)."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


def has_secrets(url: str) -> bool:
    """Whether `url` has parts that `redact_url` hides (userinfo, a query, a fragment) or cannot be parsed."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed authority such as `user:pa/ss@host`
    except ValueError:
        return True
    return "@" in parts.netloc or bool(parts.query) or bool(parts.fragment)


def redact_url(url: str) -> str:
    """`url` for messages: userinfo becomes `***@`, each query value `***`, the fragment is dropped."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018
    except ValueError:
        return f"{url.split('://', 1)[0]}://{HIDDEN} (a malformed URL)" if "://" in url else HIDDEN
    userinfo, at, host = parts.netloc.rpartition("@")
    netloc = f"{HIDDEN}@{host}" if at else host
    query = "&".join(
        f"{item.partition('=')[0]}={HIDDEN}" if "=" in item else HIDDEN for item in parts.query.split("&")
    ) if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_text(text: str, url: str = "") -> str:
    """`text` with every URL in it redacted and, when given, each secret part of `url` hidden wherever it
    appears on its own (a library's message may quote a password or a token without the URL around it)."""
    def redact_match(match: re.Match) -> str:
        found = match.group(0)
        tail = len(found) - len(found.rstrip(".,:;)]}"))
        return redact_url(found[: len(found) - tail]) + found[len(found) - tail :]

    text = _URL_IN_TEXT.sub(redact_match, text)
    for secret in sorted(_secret_parts(url), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text


def _secret_parts(url: str) -> set[str]:
    if not url:
        return set()
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return {url}
    userinfo = parts.netloc.rpartition("@")[0]
    raw = {userinfo, *userinfo.split(":", 1), parts.fragment}
    for item in parts.query.split("&"):
        raw.add(item.partition("=")[2] if "=" in item else item)
    secrets = {*raw, *(urllib.parse.unquote_plus(s) for s in raw)}
    return {s for s in secrets if len(s) >= _SHORTEST_SECRET}


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """`url` without its userinfo and fragment, and the Basic `Authorization` header its userinfo stands for
    (none without): how both downloaders send credentials, which urllib cannot take inside a URL."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    headers = {}
    if at:
        user, _, password = userinfo.partition(":")
        token = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=host, fragment="")), headers


def _request(url: str) -> urllib.request.Request:
    bare_url, headers = split_credentials(url)
    request = urllib.request.Request(bare_url)
    for name, value in headers.items():
        request.add_unredirected_header(name, value)  # never sent on to where a redirect points
    return request


def download(url: str, sha256: str, size: int, target: str, timeout: float = 60, attempts: int = 3) -> None:
    """Writes the content of ``url`` to ``target`` if it has exactly ``size`` bytes and ``sha256``; a
    network error is retried, a content mismatch is not (the pin or the origin is wrong)."""
    last_error, status = "", None
    for attempt in range(attempts):
        if attempt:
            time.sleep(2 ** (attempt - 1))
        try:
            _download_once(url, sha256, size, target, timeout)
            return
        except DownloadError as e:
            raise DownloadError(redact_text(str(e), url), e.status) from None
        except urllib.error.HTTPError as e:
            last_error, status = f"HTTP {e.code} {e.reason}", e.code
            if 400 <= e.code < 500:
                break  # not found, forbidden: retrying will not help
        except (urllib.error.URLError, OSError, ValueError) as e:  # ValueError: e.g. http.client.InvalidURL
            last_error = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
    raise DownloadError(redact_text(f"cannot download {redact_url(url)}: {last_error}", url), status)


def _download_once(url: str, sha256: str, size: int, target: str, timeout: float) -> None:
    directory = os.path.dirname(os.path.abspath(target))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".part-")
    shown = redact_url(url)
    try:
        digest, received = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(_request(url), timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                received += len(block)
                if received > size:
                    raise DownloadError(f"{shown} is larger than the pinned {size} bytes")
                digest.update(block)
                out.write(block)
        if received != size or digest.hexdigest() != sha256:
            raise DownloadError(
                f"{shown} has {received} bytes with sha256 {digest.hexdigest()}, but the pin is {size} bytes "
                f"with sha256 {sha256}"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
