"""Downloads pinned by sha256 and size, as a build process.

Pants 2.17 fetches `http_source` files itself, outside any process, so its remote cache never serves them:
every machine would download large weights from their origin again. Run as a process instead, a download
is an action keyed by (url, sha256, size) whose output the remote cache holds, and whose consumers (the
model layer) hit the cache without the bytes ever being fetched.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.request
from typing import Optional


class DownloadError(Exception):
    """One line: what was fetched and why it failed (`status`: the HTTP status, if the server answered)."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


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
        except urllib.error.HTTPError as e:
            last_error, status = f"HTTP {e.code} {e.reason}", e.code
            if 400 <= e.code < 500:
                break  # not found, forbidden: retrying will not help
        except (urllib.error.URLError, OSError) as e:
            last_error = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
    raise DownloadError(f"cannot download {url}: {last_error}", status)


def _download_once(url: str, sha256: str, size: int, target: str, timeout: float) -> None:
    directory = os.path.dirname(os.path.abspath(target))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".part-")
    try:
        digest, received = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                received += len(block)
                if received > size:
                    raise DownloadError(f"{url} is larger than the pinned {size} bytes")
                digest.update(block)
                out.write(block)
        if received != size or digest.hexdigest() != sha256:
            raise DownloadError(
                f"{url} has {received} bytes with sha256 {digest.hexdigest()}, but the pin is {size} bytes "
                f"with sha256 {sha256}"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
