"""SBOM completeness: does every file in the image belong to a component the SBOM names?

The image's filesystem is what its layers give when applied in order (OCI image spec, "Applying
changesets"), read as `core/oci/flatten.py` reads it: a `.wh.<name>` entry deletes `<name>` from the layers
below, `.wh..wh..opq` empties its directory of everything from the layers below, and a non-directory replaces
a directory together with its contents. Only regular files of that final filesystem are counted; a hardlink is a regular file of its own.
Directories and symlinks carry no content and are not counted.

Each regular file is attributed, the first source that claims it winning:

1. `deb` — a Debian package: the paths in `/var/lib/dpkg/status.d/<pkg>.md5sums` (`<md5>  <path>`, path
   without its leading slash) and its conffiles, which dpkg leaves out of md5sums: the `Conffiles:` field of
   the status record `status.d/<pkg>` (` /etc/x <md5>` lines) or a `status.d/<pkg>.conffiles` list; plus
   those status.d files themselves;
2. `pypi` — a Python distribution: the paths in `<site_packages>/<dist>.dist-info/RECORD` (CSV rows
   `path,hash,size`, relative to site-packages), plus every file under its `.dist-info/`;
3. the explicit components (`{"component": "model:fraud-detector", "files": [...]}`), in the order given;
   the type is the part of the name before `:` (`model`, `app`, ...);
4. `allowed` — knowingly unattributed: files matching one of the `allow` glob patterns (`fnmatch` on the
   absolute path, case-sensitive; `*` also matches `/`). Files a base image generates (`/etc/passwd`, the
   CA bundle) go here or into an explicit component such as `{"component": "base", ...}`.

Listed paths are resolved through the image's directory symlinks (a package's `lib/x86_64-linux-gnu/…` is
found at `usr/lib/…` in a merged-/usr image). Listed paths absent from the image are reported as `missing`,
which is not an error: minimal images drop documentation on purpose.
"""
from __future__ import annotations

import bisect
import contextlib
import csv
import fnmatch
import functools
import io
import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Tuple

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.oci import flatten, toc
from aegis_plugin.core.oci.compression import open_layer_tar

DPKG_STATUS_DIR = toc.DPKG_STATUS_DIR
STANDARD_TYPES = ("deb", "pypi", "model", "app", "allowed")
_MAX_SYMLINK_HOPS = 40


class CompletenessError(AegisError, ValueError):
    pass


@dataclass(frozen=True)
class Report:
    total: int  # regular files in the image's final filesystem
    by_type: dict[str, int]  # deb, pypi, model, app, allowed, and any other component type
    by_component: dict[str, int]  # "deb:libc6", "pypi:numpy", "model:fraud-detector", ... (not allowed)
    unattributed: list[str]  # sorted
    missing: list[tuple[str, str]] = field(default_factory=list)  # (component, path), sorted
    overlaps: list[str] = field(default_factory=list)  # files claimed by more than one component, sorted
    unrecorded: list[str] = field(default_factory=list)  # dist-info directories without a RECORD

    @property
    def attributed(self) -> int:
        """Files attributed to a component (allow-listed ones excluded)."""
        return sum(n for t, n in self.by_type.items() if t != "allowed")

    @property
    def attributed_share(self) -> float:
        return self.attributed / self.total if self.total else 1.0

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "attributed": self.attributed,
            "attributed_share": round(self.attributed_share, 6),
            "by_type": dict(sorted(self.by_type.items())),
            "by_component": dict(sorted(self.by_component.items())),
            "unattributed": list(self.unattributed),
            "missing": [{"component": c, "path": p} for c, p in self.missing],
            "overlaps": list(self.overlaps),
            "unrecorded": list(self.unrecorded),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


@dataclass
class Entry:
    """One path of the final filesystem."""

    kind: str  # "file" (regular or hardlink), "dir", "symlink" or "other"
    linkname: str = ""  # symlink target as written; hardlink target as an absolute path
    data: bytes | None = None  # only for the bookkeeping files attribution reads


def attribute(
    layer_paths: list[str],
    site_packages: str,
    components: list[dict],
    allow: list[str],
) -> Report:
    """Attributes every regular file of the image made of `layer_paths` (tar or gzip-tar blobs, lowest
    first). `site_packages` is the absolute directory holding the image's `*.dist-info` (e.g.
    `/app/site-packages`); `components` are `{"component": name, "files": [absolute paths]}`."""
    site_packages = _normalize(site_packages)
    fs = filesystem(layer_paths, site_packages)

    claims: list[tuple[str, list[str]]] = []  # (component, absolute paths), in precedence order
    ordered = sorted(fs)
    claims.extend(_deb_claims(fs, ordered))
    pypi, unrecorded = _pypi_claims(fs, ordered, site_packages)
    claims.extend(pypi)
    for component in components:
        name, files = component.get("component"), component.get("files", [])
        if not isinstance(name, str) or not name or not isinstance(files, list):
            raise CompletenessError(f"a component needs a name and a list of files: {component!r}"[:300])
        claims.append((name, [_normalize(p) for p in files]))

    owner: dict[str, str] = {}
    overlaps: set[str] = set()
    missing: set[tuple[str, str]] = set()
    for name, paths in claims:
        for listed in paths:
            path = _resolve_parents(fs, listed)
            entry = fs.get(path)
            if entry is None:
                missing.add((name, listed))
                continue
            if entry.kind != "file":
                continue  # a directory or symlink listed by its owner: nothing to count
            if path in owner:
                if owner[path] != name:
                    overlaps.add(path)
                continue
            owner[path] = name

    files = [p for p in ordered if fs[p].kind == "file"]
    by_type = dict.fromkeys(STANDARD_TYPES, 0)
    by_component: dict[str, int] = {}
    unattributed = []
    for path in files:
        name = owner.get(path)
        if name is not None:
            kind = name.split(":", 1)[0]
            by_type[kind] = by_type.get(kind, 0) + 1
            by_component[name] = by_component.get(name, 0) + 1
        elif any(fnmatch.fnmatchcase(path, pattern) for pattern in allow):
            by_type["allowed"] += 1
        else:
            unattributed.append(path)
    return Report(
        total=len(files),
        by_type=by_type,
        by_component=by_component,
        unattributed=unattributed,
        missing=sorted(missing),
        overlaps=sorted(overlaps),
        unrecorded=unrecorded,
    )


def check(report: Report, max_unattributed: int = 0, show: int = 5) -> None:
    """Raises `CompletenessError` (one line: the count and the first `show` paths) when more than
    `max_unattributed` files are unattributed."""
    count = len(report.unattributed)
    if count <= max_unattributed:
        return
    listed = ", ".join(report.unattributed[:show])
    more = f" and {count - show} more" if count > show else ""
    noun = "file" if report.total == 1 else "files"
    limit = f" (at most {max_unattributed} allowed)" if max_unattributed else ""
    raise CompletenessError(
        f"SBOM does not account for {count} of {report.total} {noun} in the image{limit}: {listed}{more}"
    )


def filesystem(layer_paths: list[str], site_packages: str | None = None) -> dict[str, Entry]:
    """The final filesystem, as `core/oci/flatten.py` reads it (the publisher's view too): absolute path ->
    entry. The content of dpkg `status.d` files and of `<site_packages>/*.dist-info/RECORD` is kept for
    attribution.

    A layer is given as its blob, or as the table of contents its layer step wrote (a path ending in
    `toc.json`, see `core/oci/toc.py`): then nothing of the blob is read, however large."""
    fs: dict[str, Entry] = {}
    layers = [functools.partial(_members, layer) for layer in layer_paths]
    try:
        for path, (_, kind, linkname, read) in flatten.final(layers, lambda m: m[0], lambda m: m[1] == "dir"):
            fs[path] = _entry(kind, linkname, read, path, fs, site_packages)
    except flatten.FlattenError as e:
        raise CompletenessError(str(e)) from None
    return fs


Member = Tuple[str, str, Optional[str], Callable[[], bytes]]  # name, kind, linkname, read the content


@contextlib.contextmanager
def _members(layer: str) -> Iterator[List[Member]]:
    if layer.endswith("toc.json"):
        try:
            entries = toc.read_toc(layer)
        except toc.TocError as e:
            raise CompletenessError(str(e)) from e
        yield [(entry.path, entry.kind, entry.linkname, (lambda data=entry.data: data or b"")) for entry in entries]
        return
    # Random access, not a stream: in a plain-tar layer (the weights) tarfile seeks past each file's content
    # instead of reading it.
    with contextlib.ExitStack() as stack:
        try:
            tar = stack.enter_context(open_layer_tar(layer))
        except (OSError, tarfile.TarError) as e:
            raise CompletenessError(f"{layer}: not a plain, gzip or zstd tar layer ({e})") from e
        yield [(member.name, _kind(member), member.linkname or None, (lambda m=member: _read(tar, m)))
               for member in tar]


def _kind(member: tarfile.TarInfo) -> str:
    return ("dir" if member.isdir() else "symlink" if member.issym() else "hardlink" if member.islnk()
            else "file" if member.isreg() else "other")


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    extracted = tar.extractfile(member)
    return extracted.read() if extracted is not None else b""


def _entry(kind: str, linkname: str | None, read: Callable[[], bytes], path: str, fs: dict,
           site_packages: str | None) -> Entry:
    if kind == "dir":
        return Entry("dir")
    if kind == "symlink":
        return Entry("symlink", linkname)
    if kind == "hardlink":
        target = _normalize(linkname or "")
        source = fs.get(target)  # read already when an upper layer holds it
        return Entry("file", target, source.data if source is not None else None)
    if kind == "file":
        return Entry("file", data=read() if _is_bookkeeping(path, site_packages) else None)
    return Entry("other")


def _is_bookkeeping(path: str, site_packages: str | None) -> bool:
    if posixpath.dirname(path) == DPKG_STATUS_DIR:
        return True
    if site_packages is not None and posixpath.basename(path) == "RECORD":
        dist_info = posixpath.dirname(path)
        return dist_info.endswith(".dist-info") and posixpath.dirname(dist_info) == site_packages
    return False


def _deb_claims(fs: dict[str, Entry], ordered: list[str]) -> list[tuple[str, list[str]]]:
    packages: dict[str, list[str]] = {}
    prefix = DPKG_STATUS_DIR + "/"
    for path in _under(ordered, prefix):
        if not path.startswith(prefix) or "/" in path[len(prefix):] or fs[path].kind != "file":
            continue
        name = posixpath.basename(path)
        suffix = next((s for s in (".md5sums", ".conffiles") if name.endswith(s)), "")
        paths = packages.setdefault(name[: len(name) - len(suffix)], [])
        paths.append(path)
        text = (fs[path].data or b"").decode("utf-8", "surrogateescape")
        if suffix == ".md5sums":
            for line in text.splitlines():
                _md5, sep, listed = line.partition("  ")
                if sep and listed.strip():
                    paths.append(_normalize(listed))
        elif suffix == ".conffiles":
            paths.extend(_normalize(line) for line in text.splitlines() if line.strip())
        else:
            paths.extend(_conffiles(text))
    return [(f"deb:{package}", paths) for package, paths in sorted(packages.items())]


def _conffiles(record: str) -> list[str]:
    """The paths of a dpkg status record's `Conffiles:` field (continuation lines ` /path md5 [obsolete]`)."""
    paths = []
    inside = False
    for line in record.splitlines():
        if line[:1] in (" ", "\t"):
            if inside and line.split():
                paths.append(_normalize(line.split()[0]))
            continue
        inside = line.split(":", 1)[0].strip().lower() == "conffiles"
    return paths


def _pypi_claims(
    fs: dict[str, Entry], ordered: list[str], site_packages: str
) -> tuple[list[tuple[str, list[str]]], list[str]]:
    claims = []
    unrecorded = []
    prefix = site_packages + "/"
    dist_infos = [
        p for p in _under(ordered, prefix)
        if fs[p].kind == "dir" and p.endswith(".dist-info") and "/" not in p[len(prefix):]
    ]
    for dist_info in dist_infos:
        name = posixpath.basename(dist_info)[: -len(".dist-info")].split("-", 1)[0]
        paths = _under(ordered, dist_info + "/")
        record = fs.get(dist_info + "/RECORD")
        if record is None or record.kind != "file":
            unrecorded.append(dist_info)
        else:
            text = (record.data or b"").decode("utf-8", "surrogateescape")
            for row in csv.reader(io.StringIO(text)):
                if row and row[0].strip():
                    paths.append(_normalize(posixpath.join(site_packages, row[0])))
        claims.append((f"pypi:{name}", paths))
    return claims, unrecorded


def _under(ordered: list[str], prefix: str) -> list[str]:
    """The paths of the sorted list `ordered` that start with `prefix`."""
    start = bisect.bisect_left(ordered, prefix)
    end = start
    while end < len(ordered) and ordered[end].startswith(prefix):
        end += 1
    return ordered[start:end]


def _normalize(name: str) -> str:
    return posixpath.normpath("/" + name.strip().lstrip("/"))


def _resolve_parents(fs: dict[str, Entry], path: str) -> str:
    """`path` with each symlinked ancestor directory replaced by its target (the last component is kept,
    as a package lists its own symlinks by their name)."""
    parts = path.strip("/").split("/")
    resolved = ""
    hops = 0
    i = 0
    while i < len(parts) - 1:
        candidate = f"{resolved}/{parts[i]}"
        entry = fs.get(candidate)
        if entry is not None and entry.kind == "symlink" and hops < _MAX_SYMLINK_HOPS:
            hops += 1
            target = entry.linkname
            base = "" if target.startswith("/") else resolved
            rest = _normalize(f"{base}/{target}").strip("/").split("/")
            parts = [p for p in rest if p] + parts[i + 1:]
            resolved, i = "", 0
            continue
        resolved = candidate
        i += 1
    return _normalize(f"{resolved}/{parts[-1]}") if parts else "/"
