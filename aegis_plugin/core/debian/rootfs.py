"""The base layer of a runtime image: every locked .deb unpacked into one tree, plus the files dpkg's
maintainer scripts would have made and an image needs (users, dpkg status records, a CA bundle).

Nothing runs: no maintainer scripts, no byte-compiling (the rootfs is read-only at run time). Owners
are always root in our layers, so only modes are carried, normalised so that uid 65532 can read.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Sequence

from aegis_plugin.core.debian.copyright import copyright_notices, declared_licenses
from aegis_plugin.core.debian.deb import DebControl, iter_data, read_control
from aegis_plugin.core.debian.errors import DebianError
from aegis_plugin.core.debian.lock import DebPackage, verify_deb
from aegis_plugin.core.oci.layer import LayerEntry


NONROOT_UID = 65532
PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\n"
# Without this file glibc asks DNS before /etc/hosts, so even "localhost" would need a resolver.
NSSWITCH = "".join(
    f"{database}: {sources}\n"
    for database, sources in [
        ("passwd", "files"),
        ("group", "files"),
        ("shadow", "files"),
        ("hosts", "files dns"),
    ]
    + [("networks", "files"), ("protocols", "files"), ("services", "files")]
)
STATUS_DIR = "/var/lib/dpkg/status.d"
CA_SOURCE_DIR = "/usr/share/ca-certificates/"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Python's ssl looks for OpenSSL's default file (OPENSSLDIR is /usr/lib/ssl on Debian); the
# `openssl` package would otherwise be needed just for that directory.
OPENSSL_CAFILE = "/usr/lib/ssl/cert.pem"
_DEBIAN_RELEASES = {"bookworm": "12", "trixie": "13"}
_MAX_DOC_LINKS = 8
_GENERATED = "(generated)"  # owner name of the entries written here, shown in conflict errors


class RootfsError(DebianError):
    """The packages cannot share one tree (a conflicting path), or an input does not match the lock."""


@dataclass(frozen=True)
class _Owned:
    entry: LayerEntry
    owner: str  # package name, or _GENERATED
    digest: str | None = None  # sha256 of a file's content, to tell identical files from conflicts


class _Tree:
    """Path -> entry, refusing two different things at one path."""

    def __init__(self) -> None:
        self.items: dict[str, _Owned] = {}

    def add(self, entry: LayerEntry, owner: str, digest: str | None = None) -> None:
        old = self.items.get(entry.path)
        if old is None:
            self.items[entry.path] = _Owned(entry, owner, digest)
            return
        a, b = old.entry, entry
        if a.kind != b.kind:
            raise RootfsError(f"{b.path}: {a.kind} from {old.owner} conflicts with {b.kind} from {owner}")
        if a.kind == "dir" and a.mode != b.mode:
            raise RootfsError(
                f"{b.path}: directory mode {a.mode:o} from {old.owner} but {b.mode:o} from {owner}"
            )
        if a.kind == "file" and (old.digest != digest or a.mode != b.mode):
            raise RootfsError(
                f"{b.path} is shipped by both {old.owner} and {owner} with different content or mode"
            )
        if a.kind in ("symlink", "hardlink") and a.linkname != b.linkname:
            raise RootfsError(
                f"{b.path}: links to {a.linkname} in {old.owner} but to {b.linkname} in {owner}"
            )

    def kind(self, path: str) -> str | None:
        owned = self.items.get(path)
        return owned.entry.kind if owned else None

    def add_missing_parents(self) -> None:
        for path in sorted(self.items):
            parent = os.path.dirname(path)
            while parent != "/":
                kind = self.kind(parent)
                if kind is None:
                    self.add(LayerEntry(parent, "dir", 0o755), _GENERATED)
                elif kind != "dir":
                    raise RootfsError(f"{path} needs {parent} to be a directory, but it is a {kind}")
                parent = os.path.dirname(parent)


def file_mode(mode: int) -> int:
    """Keep permission and exec bits, drop setuid/setgid/sticky, and make the file world-readable."""
    return (mode & 0o777) | 0o644


def _store(stream: IO[bytes], blobs: Path) -> tuple[str, str]:
    """Copy a member's content into the scratch store, named by its sha256: (path, sha256)."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".part-")
    with os.fdopen(fd, "wb") as out:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    target = blobs / digest.hexdigest()
    if target.exists():
        os.unlink(tmp)
    else:
        os.replace(tmp, target)
    return str(target), digest.hexdigest()


def _unpack(deb: Path, pkg: DebPackage, tree: _Tree, blobs: Path) -> list[str]:
    """Adds the package's members to ``tree``; returns the paths of its files and symlinks."""
    stored: dict[str, tuple[str, str, int]] = {}  # path -> (source, sha256, mode), for hardlinks
    owned = []
    for member, stream in iter_data(deb):
        if member.kind != "dir":
            owned.append(member.path)
        if member.kind == "file":
            assert stream is not None
            source, digest = _store(stream, blobs)
            stored[member.path] = (source, digest, file_mode(member.mode))
            tree.add(LayerEntry(member.path, "file", file_mode(member.mode), source=source), pkg.name, digest)
        elif member.kind == "hardlink":  # becomes a plain copy: no ordering rules for the layer writer
            if member.linkname not in stored:
                raise RootfsError(
                    f"{pkg.name}: hardlink {member.path} -> {member.linkname}, which is not a file"
                )
            source, digest, mode = stored[member.linkname]
            tree.add(LayerEntry(member.path, "file", mode, source=source), pkg.name, digest)
        elif member.kind == "dir":
            tree.add(LayerEntry(member.path, "dir", member.mode), pkg.name)
        else:
            tree.add(LayerEntry(member.path, "symlink", 0o777, linkname=member.linkname), pkg.name)
    return owned


def status_record(control: DebControl, conffile_md5s: dict[str, str] | None = None) -> bytes:
    """The control paragraph with ``Status: install ok installed`` after ``Package:``, as dpkg's
    status file has it: what scanners read from ``/var/lib/dpkg/status.d/<pkg>`` (distroless style).

    ``conffile_md5s`` (path -> md5 of the shipped content) becomes the ``Conffiles:`` field, the only
    record of the configuration files that dpkg leaves out of ``md5sums``.
    """
    lines = control.control.rstrip("\n").split("\n")
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("Package:")), 0)
    lines.insert(at, "Status: install ok installed")
    if conffile_md5s:
        lines.append("Conffiles:")
        lines.extend(f" {path} {md5}" for path, md5 in sorted(conffile_md5s.items()))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _conffile_md5s(control: DebControl, tree: _Tree) -> dict[str, str]:
    result = {}
    for path in (control.conffiles or "").split():
        owned = tree.items.get(path)
        if owned is not None and owned.entry.kind == "file" and owned.entry.source is not None:
            result[path] = hashlib.md5(Path(owned.entry.source).read_bytes(), usedforsecurity=False).hexdigest()
    return result


def _os_release(suite: str) -> bytes:
    codename = suite.split("-")[0]
    if codename not in _DEBIAN_RELEASES:
        raise RootfsError(f"no /etc/os-release for suite {suite}: add base-files to the spec")
    number = _DEBIAN_RELEASES[codename]
    return (
        f'PRETTY_NAME="Debian GNU/Linux {number} ({codename})"\nNAME="Debian GNU/Linux"\n'
        f'VERSION_ID="{number}"\nVERSION="{number} ({codename})"\nVERSION_CODENAME={codename}\nID=debian\n'
    ).encode()


def _ca_bundle(tree: _Tree) -> bytes:
    """What update-ca-certificates would write: every shipped certificate, in path order."""
    parts = []
    for path in sorted(p for p in tree.items if p.startswith(CA_SOURCE_DIR) and p.endswith(".crt")):
        source = tree.items[path].entry.source
        assert source is not None
        pem = Path(source).read_bytes()
        parts.append(pem if pem.endswith(b"\n") else pem + b"\n")
    return b"".join(parts)


def _add_generated(tree: _Tree, controls: dict[str, DebControl], suite: str) -> None:
    def add_file(path: str, data: bytes, mode: int = 0o644) -> None:
        tree.add(LayerEntry(path, "file", mode, data=data), _GENERATED, hashlib.sha256(data).hexdigest())

    for name, control in sorted(controls.items()):
        add_file(f"{STATUS_DIR}/{name}", status_record(control, _conffile_md5s(control, tree)))
        if control.md5sums is not None:
            add_file(f"{STATUS_DIR}/{name}.md5sums", control.md5sums.encode("utf-8"))
    add_file("/etc/passwd", PASSWD.encode())
    add_file("/etc/group", GROUP.encode())
    add_file("/etc/nsswitch.conf", NSSWITCH.encode())
    if tree.kind("/etc/os-release") is None:
        add_file("/etc/os-release", _os_release(suite))
    tree.add(LayerEntry("/tmp", "dir", 0o1777), _GENERATED)
    tree.add(LayerEntry("/root", "dir", 0o700), _GENERATED)
    # Owned by root like everything in our layers, so nonroot cannot write its own home: state
    # belongs in /tmp or a mounted volume.
    tree.add(LayerEntry("/home/nonroot", "dir", 0o755), _GENERATED)
    pythons = [p for p in tree.items if re.fullmatch(r"/usr/bin/python3\.\d+", p)]
    if tree.kind("/usr/bin/python3") is None and len(pythons) == 1:
        tree.add(
            LayerEntry("/usr/bin/python3", "symlink", 0o777, linkname=os.path.basename(pythons[0])),
            _GENERATED,
        )
    if "ca-certificates" in controls:
        add_file(CA_BUNDLE, _ca_bundle(tree))
        if tree.kind(OPENSSL_CAFILE) is None:
            tree.add(LayerEntry(OPENSSL_CAFILE, "symlink", 0o777, linkname=CA_BUNDLE), _GENERATED)


def _match(
    debs: Iterable[str | os.PathLike[str]], packages: Sequence[DebPackage]
) -> list[tuple[DebPackage, Path]]:
    """Pair each locked package with its .deb, by the file name the lock's Filename ends with."""
    by_name = {pkg.deb_basename: pkg for pkg in packages}
    found: dict[str, Path] = {}
    for deb in debs:
        path = Path(deb)
        pkg = by_name.get(path.name)
        if pkg is None:
            raise RootfsError(f"{path} is not in the lock (expected one of the lock's Filename names)")
        if pkg.name in found:
            raise RootfsError(f"{pkg.name}: given twice ({found[pkg.name]} and {path})")
        found[pkg.name] = path
    missing = sorted(pkg.name for pkg in packages if pkg.name not in found)
    if missing:
        raise RootfsError(f"no .deb given for: {', '.join(missing)}")
    return [(pkg, found[pkg.name]) for pkg in sorted(packages, key=lambda p: p.name)]


@dataclass(frozen=True)
class InstalledPackage:
    """What the SBOM says of one package of the base: the lock's facts, who maintains it, its licenses and
    copyright notices, and its files."""

    package: DebPackage
    maintainer: str  # the control file's Maintainer field, e.g. "GNU Libc Maintainers <debian-glibc@...>"
    licenses: tuple[str, ...]  # DEP-5 short names from its copyright file (see copyright.py)
    copyright: tuple[str, ...]  # the copyright notices of that file, in its order
    files: tuple[str, ...]  # absolute paths of its files and symlinks, sorted
    copyright_file: str = ""  # the path of that file in the image ("" if it ships none)
    sha512: str = ""  # of the .deb, the package's distribution file (BSI TR-03183-2 asks for SHA-512)

    def to_json(self) -> dict:
        pkg = self.package
        return {
            "name": pkg.name, "version": pkg.version, "architecture": pkg.architecture, "source": pkg.source,
            "source_version": pkg.source_version, "sha256": pkg.sha256, "maintainer": self.maintainer,
            "licenses": list(self.licenses), "copyright": list(self.copyright), "files": list(self.files),
            "copyright_file": self.copyright_file, "sha512": self.sha512,
        }


@dataclass(frozen=True)
class Base:
    entries: list[LayerEntry]  # sorted by path
    packages: list[InstalledPackage]  # sorted by name


def base_entries(
    debs: Iterable[str | os.PathLike[str]], packages: Sequence[DebPackage], work_dir: str | os.PathLike[str]
) -> list[LayerEntry]:
    return build_base(debs, packages, work_dir).entries


def build_base(
    debs: Iterable[str | os.PathLike[str]], packages: Sequence[DebPackage], work_dir: str | os.PathLike[str]
) -> Base:
    """One layer holding all ``packages`` (their .debs are ``debs``), and what each package installed.

    File contents are extracted under ``work_dir`` and referenced by ``source``; keep it until the
    layer is written. Every .deb is checked against the lock's size and sha256 first.
    """
    pairs = _match(debs, packages)
    blobs = Path(work_dir) / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    tree = _Tree()
    controls: dict[str, DebControl] = {}
    owned: dict[str, list[str]] = {}
    sha512: dict[str, str] = {}
    for pkg, deb in pairs:
        sha512[pkg.name] = verify_deb(deb, pkg)
        control = read_control(deb)
        fields = control.fields
        shown = (fields.get("Package"), fields.get("Version"), fields.get("Architecture"))
        if shown != (pkg.name, pkg.version, pkg.architecture):
            raise RootfsError(
                f"{deb}: its control says {shown}, the lock says {(pkg.name, pkg.version, pkg.architecture)}"
            )
        controls[pkg.name] = control
        owned[pkg.name] = _unpack(deb, pkg, tree, blobs)
    _add_generated(tree, controls, pairs[0][0].suite if pairs else "bookworm")
    tree.add_missing_parents()
    installed = []
    for pkg, _ in pairs:
        path, text = _copyright_file(tree, pkg.name)
        installed.append(InstalledPackage(
            pkg,
            maintainer=controls[pkg.name].fields.get("Maintainer", "").strip(),
            licenses=declared_licenses(text),
            copyright=copyright_notices(text),
            files=tuple(sorted(set(owned[pkg.name]))),
            copyright_file=path,
            sha512=sha512[pkg.name],
        ))
    return Base([tree.items[path].entry for path in sorted(tree.items)], installed)


def _copyright_file(tree: _Tree, name: str) -> tuple[str, str]:
    """The path and text of the package's copyright file ("", "" if it ships none), following a symlinked doc directory
    (Debian links `/usr/share/doc/<pkg>` to the doc directory of a package it depends on)."""
    doc_dir = f"/usr/share/doc/{name}"
    for _ in range(_MAX_DOC_LINKS):
        owned = tree.items.get(doc_dir)
        if owned is None or owned.entry.kind != "symlink":
            break
        doc_dir = os.path.normpath(os.path.join(os.path.dirname(doc_dir), owned.entry.linkname or ""))
    copyright_file = tree.items.get(f"{doc_dir}/copyright")
    if copyright_file is None or copyright_file.entry.kind != "file" or copyright_file.entry.source is None:
        return "", ""
    return f"{doc_dir}/copyright", Path(copyright_file.entry.source).read_text("utf-8", errors="replace")


def installed_size(entries: Iterable[LayerEntry]) -> int:
    """Bytes of file content in ``entries`` (what a size guard compares against a budget)."""
    total = 0
    for entry in entries:
        if entry.kind == "file":
            total += len(entry.data) if entry.data is not None else os.stat(entry.source or "").st_size
    return total


def materialize(entries: Iterable[LayerEntry], root: str | os.PathLike[str]) -> None:
    """Write ``entries`` under ``root`` (for tests and local runs with bwrap; images use layers)."""
    top = Path(root)
    dirs: list[tuple[Path, int]] = []
    for entry in sorted(entries, key=lambda e: e.path):
        target = top / entry.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind == "dir":
            target.mkdir(exist_ok=True)
            dirs.append((target, entry.mode))
        elif entry.kind == "symlink":
            os.symlink(entry.linkname or "", target)
        elif entry.kind == "hardlink":
            os.link(top / (entry.linkname or "").lstrip("/"), target)
        else:
            if entry.data is not None:
                target.write_bytes(entry.data)
            else:
                shutil.copyfile(entry.source or "", target)
            os.chmod(target, entry.mode)
    for path, mode in reversed(dirs):  # last, so a read-only directory does not block its children
        os.chmod(path, mode)
