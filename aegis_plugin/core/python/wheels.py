"""Wheel files: their names and tags, their declared dependencies, and installing one into a directory.

The deps layer is built from the locked wheels themselves (downloaded by their pinned sha256), not from a PEX
of them: no resolver or interpreter runs at build time, and a foreign platform's wheels install the same way.
Installing is what an installer does for a site-packages (PEP 427/376/627): the `.data/purelib` and
`.data/platlib` trees join the root; scripts, headers and data files stay out of the image (a handler imports
its dependencies, it runs none of their commands); RECORD is rewritten for where the files went, plus the
INSTALLER and, for what the handler asked for itself, REQUESTED files.
"""
from __future__ import annotations

import base64
import csv
import email.parser
import email.policy
import hashlib
import io
import os
import posixpath
import re
import shutil
import zipfile
from dataclasses import dataclass

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.python.requirements_lock import canonical_name

INSTALLER = b"aegis\n"


class WheelError(AegisError, ValueError):
    pass


@dataclass(frozen=True)
class WheelName:
    filename: str
    name: str  # canonical
    version: str
    tags: frozenset[str]  # every python-abi-platform combination the name's compressed tag sets expand to


_WHEEL_NAME = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(?:-(?P<build>\d[^-]*))?"
    r"-(?P<python>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)


def parse_name(filename: str) -> WheelName:
    match = _WHEEL_NAME.match(filename)
    if not match:
        raise WheelError(f"not a wheel file name: {filename!r}")
    tags = frozenset(
        f"{python}-{abi}-{plat}"
        for python in match.group("python").split(".")
        for abi in match.group("abi").split(".")
        for plat in match.group("plat").split(".")
    )
    return WheelName(filename, canonical_name(match.group("name")), match.group("version"), tags)


def tag_rank(wheel: WheelName, supported: list[str]) -> int | None:
    """The position of the wheel's best tag in `supported` (lower is preferred); None if none fits."""
    ranks = [i for i, tag in enumerate(supported) if tag in wheel.tags]
    return min(ranks) if ranks else None


def _dist_info_dir(archive: zipfile.ZipFile, filename: str) -> str:
    tops = {name.split("/", 1)[0] for name in archive.namelist()}
    dist_infos = sorted(t for t in tops if t.endswith(".dist-info"))
    if len(dist_infos) != 1:
        raise WheelError(f"{filename} has {len(dist_infos)} .dist-info directories, not one")
    return dist_infos[0]


def requires_dist(path: str) -> list[str]:
    """The wheel's `Requires-Dist` lines (core metadata), as written."""
    filename = os.path.basename(path)
    try:
        with zipfile.ZipFile(path) as archive:
            metadata = archive.read(f"{_dist_info_dir(archive, filename)}/METADATA").decode("utf-8", errors="replace")
    except (zipfile.BadZipFile, KeyError) as e:
        raise WheelError(f"{filename} is not a valid wheel: {e}") from None
    headers = email.parser.Parser(policy=email.policy.compat32).parsestr(metadata, headersonly=True)
    return [" ".join(value.split()) for value in headers.get_all("Requires-Dist") or []]


def install(path: str, target: str, requested: bool) -> None:
    """Installs the wheel at `path` into the empty directory `target` (its site-packages root)."""
    filename = os.path.basename(path)
    try:
        with zipfile.ZipFile(path) as archive:
            _install(archive, filename, target, requested)
    except (zipfile.BadZipFile, KeyError, EOFError) as e:
        raise WheelError(f"{filename} is not a valid wheel: {e}") from None


def _install(archive: zipfile.ZipFile, filename: str, target: str, requested: bool) -> None:
    dist_info = _dist_info_dir(archive, filename)
    data_dir = dist_info[: -len(".dist-info")] + ".data"
    record_name = f"{dist_info}/RECORD"
    placed: dict[str, str] = {}  # member name -> installed path (relative to target)
    for info in archive.infolist():
        name = info.filename
        if info.is_dir() or name == record_name:
            continue
        normal = posixpath.normpath(name)
        if name.startswith("/") or normal != name or normal.startswith("../") or "\\" in name:
            raise WheelError(f"{filename}: unsafe path {name!r}")
        destination = _destination(name, data_dir)
        if destination is None:
            continue
        placed[name] = destination
        path = os.path.join(target, destination)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with archive.open(info) as source, open(path, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
    extra = {f"{dist_info}/INSTALLER": INSTALLER}
    if requested:
        extra[f"{dist_info}/REQUESTED"] = b""
    for name, data in extra.items():
        with open(os.path.join(target, name), "wb") as out:
            out.write(data)
    rows = []
    for row in csv.reader(io.StringIO(archive.read(record_name).decode("utf-8"))):
        if row and row[0] in placed and row[0] not in extra:
            rows.append((placed[row[0]], *row[1:3]))
    rows += [(name, _record_hash(data), str(len(data))) for name, data in extra.items()]
    rows.append((record_name, "", ""))
    record = io.StringIO()
    csv.writer(record, lineterminator="\n").writerows(sorted(rows))
    with open(os.path.join(target, record_name), "w", encoding="utf-8") as out:
        out.write(record.getvalue())


def _destination(name: str, data_dir: str) -> str | None:
    if not name.startswith(f"{data_dir}/"):
        return name
    kind, _, rest = name[len(data_dir) + 1:].partition("/")
    return rest if kind in ("purelib", "platlib") and rest else None


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
