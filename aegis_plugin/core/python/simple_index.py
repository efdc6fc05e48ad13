"""Where each locked wheel is: the package index's JSON project pages (PEP 691, sizes from PEP 700).

The lock pins every distribution by the sha256 of its files and names no host; the index configured on the
machine (Pants' `[python-repos].indexes`) says where the file with that hash lives and how big it is. The
result only names files the lock already pins, so it is as reproducible as the lock: a different index or
mirror serving the same files gives the same wheels.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from aegis_plugin.core.download import redact_url
from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.python import markers, wheels
from aegis_plugin.core.python.interpreter import Interpreter
from aegis_plugin.core.python.requirements_lock import LockedRequirement

_ACCEPT = "application/vnd.pypi.simple.v1+json"


class PackageIndexError(AegisError):
    """The index cannot say where a locked wheel is (unreachable, no such file, no wheel for the platform)."""


@dataclass(frozen=True)
class LocatedWheel:
    name: str  # canonical
    version: str
    filename: str
    url: str
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def project_page(index_url: str, name: str, timeout: float = 60) -> tuple[str, dict[str, Any]]:
    """The JSON project page of `name` and the URL it was read from (relative file URLs resolve against it)."""
    url = urllib.parse.urljoin(index_url.rstrip("/") + "/", f"{name}/")
    request = urllib.request.Request(url, headers={"Accept": _ACCEPT})
    last_error = ""
    for attempt in range(3):
        if attempt:
            time.sleep(2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                content_type = response.headers.get("Content-Type", "")
                if not content_type.startswith(_ACCEPT):
                    raise PackageIndexError(
                        f"{redact_url(url)} answered {content_type or 'no content type'}, not PEP 691 JSON "
                        f"({_ACCEPT}): point [python-repos].indexes at an index that serves it"
                    )
                page = json.load(response)
                if not isinstance(page, dict):
                    raise ValueError("the page is not a JSON object")
                return response.geturl(), page
        except urllib.error.HTTPError as e:
            last_error = f"HTTP {e.code} {e.reason}"
            if 400 <= e.code < 500:
                break
        except (urllib.error.URLError, OSError, ValueError) as e:
            last_error = f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
    raise PackageIndexError(f"cannot read {redact_url(url)}: {last_error}")


def locate(locked: list[LockedRequirement], index_url: str, interpreter: Interpreter, lock_name: str
           ) -> list[LocatedWheel]:
    """The best wheel for `interpreter` of every pin whose marker holds there, in the lock's order."""
    environment = interpreter.marker_environment()
    wanted = [r for r in locked if markers.evaluate(r.marker, environment)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        pages = list(pool.map(lambda r: project_page(index_url, r.name), wanted))
    supported = interpreter.wheel_tags()
    return [_best_wheel(pin, base, content, supported, interpreter, lock_name)
            for pin, (base, content) in zip(wanted, pages)]


def _best_wheel(pin: LockedRequirement, base_url: str, content: dict[str, Any], supported: list[str],
                interpreter: Interpreter, lock_name: str) -> LocatedWheel:
    hashes = {h.split(":", 1)[1] for h in pin.hashes}
    candidates = []
    for file in content.get("files", []):
        filename, sha256 = file.get("filename", ""), (file.get("hashes") or {}).get("sha256")
        if sha256 not in hashes or not filename.endswith(".whl"):
            continue
        name = wheels.parse_name(filename)
        rank = wheels.tag_rank(name, supported)
        if name.name != pin.name or name.version != pin.version or rank is None:
            continue
        if not isinstance(file.get("size"), int):
            raise PackageIndexError(f"the index gives no size for {filename} (PEP 700): it cannot be downloaded pinned")
        candidates.append((rank, filename, urllib.parse.urljoin(base_url, file["url"]), sha256, file["size"]))
    if not candidates:
        raise PackageIndexError(
            f"{pin.name}=={pin.version} in {lock_name} has no wheel for CPython "
            f"{interpreter.version[0]}.{interpreter.version[1]} on {interpreter.platform} among its pinned files "
            "(images never build an sdist): pin a version with such a wheel and refresh the lock"
        )
    _, filename, url, sha256, size = min(candidates)
    return LocatedWheel(pin.name, pin.version, filename, url.split("#", 1)[0], sha256, size)
