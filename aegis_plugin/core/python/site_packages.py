"""The runtime dependencies layer: a plain `site-packages` merged from installed wheels.

Each distribution is installed on its own under `<root>/.deps/<wheel file name>/` (the layout a loose-layout
PEX keeps, see `install_wheels`); merging those trees gives a site-packages directory for the image's own
interpreter with no interpreter run at build time, which also works for a foreign platform.
"""
from __future__ import annotations

import base64
import email.message
import email.parser
import email.policy
import email.utils
import filecmp
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aegis_plugin.core import notices
from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.oci.layer import LayerEntry
from aegis_plugin.core.python import wheels
from aegis_plugin.core.python.requirements_lock import canonical_name


@dataclass(frozen=True)
class Distribution:
    name: str  # canonical
    version: str
    wheel: str


class SitePackagesError(AegisError, ValueError):
    pass


def distributions(installed_dir: str) -> list[Distribution]:
    deps_dir = os.path.join(installed_dir, ".deps")
    if not os.path.isdir(deps_dir):
        raise SitePackagesError(f"{installed_dir} holds no installed wheels (no .deps directory)")
    result = []
    for wheel in sorted(os.listdir(deps_dir)):
        if not wheel.endswith(".whl"):
            continue
        name, version = wheel.split("-")[:2]
        result.append(Distribution(canonical_name(name), version, wheel))
    return result


def install_wheels(wheel_paths: list[str], requested: set[str], installed_dir: str) -> None:
    """Installs each wheel into `<installed_dir>/.deps/<wheel file name>/`; `requested` names (canonical) the
    distributions asked for directly, which get a REQUESTED file.

    Wheels are installed side by side on up to 8 cores, the largest first (zlib releases the GIL while it
    inflates, and each wheel has its own directory): PyTorch's 5.5 GB of CUDA wheels took 17.3 s instead of
    34.9 s on 2 cores. The error is the first failure in path order, whichever thread met it first; the wheels
    not started by then are not installed."""
    def install(path: str) -> None:
        name = wheels.parse_name(os.path.basename(path))
        wheels.install(path, os.path.join(installed_dir, ".deps", name.filename), name.name in requested)

    threads = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="aegis-install") as pool:
        installs = {path: pool.submit(install, path) for path in sorted(wheel_paths, key=os.path.getsize, reverse=True)}
        try:
            for path in sorted(wheel_paths):
                installs[path].result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


@dataclass(frozen=True)
class SitePackages:
    entries: list[LayerEntry]  # sorted by path
    files: dict[str, list[str]]  # wheel file name -> absolute paths of its files in the image, sorted


def site_packages_entries(installed_dir: str, prefix: str) -> list[LayerEntry]:
    return build_site_packages(installed_dir, prefix).entries


def build_site_packages(installed_dir: str, prefix: str) -> SitePackages:
    """Layer entries for every file of every distribution, under `prefix` (e.g. /app/site-packages).

    Modes are normalised (0644 files, 0755 directories): shared libraries load without the exec bit, and
    sandbox file modes are not to be trusted. Two wheels installing the same file is an error, unless both
    copies are the same bytes (the empty `__init__.py` of a namespace package several wheels share, such as
    `nvidia/__init__.py` of the CUDA runtime wheels): the first wheel's copy ships. A
    distribution whose installed tree has no RECORD (an installer that keeps none) gets one, as pip writes it,
    so tools and scanners can tell which files each distribution owns.
    """
    entries: dict[str, LayerEntry] = {}
    owners: dict[str, str] = {}
    files_of: dict[str, list[str]] = {}
    for dist in distributions(installed_dir):
        root = os.path.join(installed_dir, ".deps", dist.wheel)
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            if rel_dir == ".":
                # An installer's own bookkeeping at the top of a tree (dot-files, a .prefix/ of scripts) stays out.
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                filenames = [f for f in filenames if not f.startswith(".")]
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(".pyc"):
                    continue
                rel = os.path.normpath(os.path.join(rel_dir, name))
                path = f"{prefix}/{rel}"
                source = os.path.join(dirpath, name)
                if path in entries and _same_bytes(entries[path], source):
                    files.append((rel, source))
                    continue
                if path in entries:
                    raise SitePackagesError(f"{rel} is installed by both {owners[path]} and {dist.wheel}")
                if os.path.islink(source):
                    entries[path] = LayerEntry(path, "symlink", 0o777, linkname=os.readlink(source))
                else:
                    entries[path] = LayerEntry(path, "file", 0o644, source=source)
                owners[path] = dist.wheel
                files.append((rel, source))
        record = _missing_record(files)
        if record is not None:
            rel, data = record
            entries[f"{prefix}/{rel}"] = LayerEntry(f"{prefix}/{rel}", "file", 0o644, data=data)
            files.append((rel, ""))
        files_of[dist.wheel] = sorted(f"{prefix}/{rel}" for rel, _ in files)
    return SitePackages([entries[p] for p in sorted(entries)], files_of)


def _same_bytes(entry: LayerEntry, source: str) -> bool:
    return (entry.kind == "file" and entry.source is not None and not os.path.islink(source)
            and filecmp.cmp(entry.source, source, shallow=False))


def _dist_info(installed_dir: str, dist: Distribution) -> str | None:
    root = os.path.join(installed_dir, ".deps", dist.wheel)
    dist_infos = [d for d in sorted(os.listdir(root)) if d.endswith(".dist-info")]
    return os.path.join(root, dist_infos[0]) if dist_infos else None


def _metadata(dist_info: str) -> email.message.Message:
    """The METADATA headers, decoded as UTF-8 (core metadata's encoding) so that every value is a str."""
    with open(os.path.join(dist_info, "METADATA"), "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    return email.parser.Parser(policy=email.policy.compat32).parsestr(text, headersonly=True)


def declared_license(installed_dir: str, dist: Distribution) -> str | None:
    """The license a distribution declares in its METADATA: `License-Expression` (PEP 639), else a
    one-line `License` field, else its `License ::` classifiers joined with AND; None when it declares none."""
    dist_info = _dist_info(installed_dir, dist)
    if dist_info is None:
        return None
    metadata = _metadata(dist_info)
    expression = (metadata.get("License-Expression") or "").strip()
    if expression:
        return expression
    text = (metadata.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 100 and text.upper() not in ("UNKNOWN", "NONE"):
        return text
    classifiers = [
        c.split("::")[-1].strip() for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")
    ]
    classifiers = [c for c in classifiers if c and c != "OSI Approved"]
    return " AND ".join(sorted(set(classifiers))) or None


@dataclass(frozen=True)
class Parties:
    """Who a distribution's METADATA says wrote and maintains it, and the copyright notices it carries."""

    authors: tuple[str, ...]  # "Name <email>", "Name" or "email" entries, in the metadata's order
    maintainers: tuple[str, ...]
    # The notices of its license files; else those in any of its text files (source comments, METADATA);
    # empty when none of its text files holds one (the SBOM then says NONE, which is what was found).
    copyright: tuple[str, ...]


def declared_parties(installed_dir: str, dist: Distribution) -> Parties:
    """`Author`/`Author-email` and `Maintainer`/`Maintainer-email` (core metadata 2.1+ allows a list of
    `Name <email>` in the -email fields), and the notices of the license files (PEP 639's `licenses/`, or the
    LICENSE/COPYING/NOTICE/AUTHORS files older wheels put in the dist-info) or, when those state none (an
    Apache-2.0 text carries no notice), of every text file the distribution installs."""
    dist_info = _dist_info(installed_dir, dist)
    if dist_info is None:
        return Parties((), (), ())
    metadata = _metadata(dist_info)
    texts = []
    for directory, subdirs, files in os.walk(dist_info):
        subdirs.sort()
        in_licenses = os.path.relpath(directory, dist_info).split(os.sep)[0] == "licenses"
        for name in sorted(files):
            if in_licenses or name.upper().startswith(_LICENSE_FILE_PREFIXES):
                with open(os.path.join(directory, name), "rb") as f:
                    texts.append(f.read(_LICENSE_FILE_MAX).decode("utf-8", errors="replace"))
    copyright = notices.distinct([line for text in texts for line in notices.notice_lines(text)])
    return Parties(
        authors=_people(metadata, "Author"),
        maintainers=_people(metadata, "Maintainer"),
        copyright=copyright or _text_file_notices(os.path.join(installed_dir, ".deps", dist.wheel)),
    )


_LICENSE_FILE_PREFIXES = ("LICENSE", "LICENCE", "COPYING", "NOTICE", "AUTHORS")
_LICENSE_FILE_MAX = 1 << 20
_TEXT_FILE_MAX = 4 << 20  # generated data files beyond this are not where notices live


def _text_file_notices(root: str) -> tuple[str, ...]:
    """The notices in the comments of every text file under ``root`` (one installed wheel), in path order.
    Compiled files (a NUL byte in their first 8 KiB) are not read: scanning GBs of CUDA libraries for strings
    would cost every cold build of a PyTorch image seconds."""
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in sorted(files):
            path = os.path.join(directory, name)
            if os.path.islink(path) or os.path.getsize(path) > _TEXT_FILE_MAX:
                continue
            with open(path, "rb") as f:
                head = f.read(8192)
                if b"\0" in head:
                    continue  # compiled: the rest is not read
                data = head + f.read()
            found.extend(notices.source_notice_lines(data.decode("utf-8", errors="replace")))
    return notices.distinct(found)


def _people(metadata: email.message.Message, field: str) -> tuple[str, ...]:
    """``Name <email>`` entries from `<field>-email` (an RFC 822 address list), with the `<field>` name
    given to a bare address; the name alone when there is no address. One-line names only (some
    distributions put a paragraph in `Author`)."""
    name = " ".join((metadata.get(field) or "").split())
    if name.upper() in ("UNKNOWN", "NONE") or len(name) > 200:
        name = ""
    pairs = email.utils.getaddresses([" ".join((metadata.get(f"{field}-email") or "").split())])
    pairs = [(" ".join(n.split()), a.strip()) for n, a in pairs if a.strip()]
    if len(pairs) == 1 and not pairs[0][0] and name:
        pairs = [(name, pairs[0][1])]
    people = [f"{n} <{a}>" if n else a for n, a in pairs]
    if name and not any(n == name for n, _ in pairs):
        people.insert(0, name)
    return tuple(dict.fromkeys(people))


def _missing_record(files: list[tuple[str, str]]) -> tuple[str, bytes] | None:
    """The RECORD (PEP 376/627: `path,sha256=<urlsafe b64>,size` per file) of a dist-info lacking one."""
    dist_infos = sorted({rel.split("/", 1)[0] for rel, _ in files if rel.split("/", 1)[0].endswith(".dist-info")})
    if len(dist_infos) != 1 or any(rel == f"{dist_infos[0]}/RECORD" for rel, _ in files):
        return None
    record = f"{dist_infos[0]}/RECORD"
    lines = []
    for rel, source in sorted(files):
        if os.path.islink(source):
            lines.append(f"{_csv(rel)},,")
            continue
        digest, size = hashlib.sha256(), 0
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
        encoded = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
        lines.append(f"{_csv(rel)},sha256={encoded},{size}")
    lines.append(f"{_csv(record)},,")
    return record, ("\n".join(lines) + "\n").encode()


def _csv(path: str) -> str:
    return f'"{path}"' if "," in path or '"' in path else path
