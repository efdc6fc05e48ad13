"""Unpack an OCI image layout into a root filesystem directory, in pure Python.

index.json -> manifest -> config, then each layer in order, with OCI whiteouts (`.wh.<name>` hides a lower
entry, `.wh..wh..opq` hides a directory's lower contents). Every blob is checked against its descriptor's
size and digest while it is read, and each layer's uncompressed stream against the config's `diff_ids`.

Nothing a layer says can write outside the rootfs: member paths with `..` are refused, and a member whose
parent path runs through a symlink is resolved inside the rootfs; a symlink to an absolute path, or one whose
`..` climbs above the root, is refused rather than followed. Existing entries are replaced, never written
through (a new file gets a new inode, so earlier hardlinks keep their content).

Character and block devices are skipped (the sandbox supplies /dev). When run as root, owners are kept
(`preserve_owners`), so that a process running as the image's user sees the permissions it would see in a
real container runtime.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Optional, Union

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
CONFIG_MEDIA_TYPES = (
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
)
_GZIP_LAYERS = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)
_TAR_LAYERS = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
)

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"

_DIGEST = re.compile(r"^(?P<algorithm>sha256|sha512):(?P<hex>[0-9a-f]+)$")
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_MAX_JSON_BLOB = 8 * 1024 * 1024  # manifests and configs are small; refuse to slurp anything bigger
_MAX_SYMLINK_HOPS = 40  # as Linux's MAXSYMLINKS
_CHUNK = 1024 * 1024

PathLike = Union[str, "os.PathLike[str]"]


class UnpackError(Exception):
    """The layout is invalid, a blob does not match its digest, or a layer tries to escape the rootfs."""


@dataclass(frozen=True)
class ImageConfig:
    """The parts of the image config (`config` in the config blob) that say how to run the image."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()  # "KEY=value", in the config's order
    user: str = ""
    working_dir: str = ""
    architecture: str = ""
    os: str = ""

    @property
    def argv(self) -> list[str]:
        """What a container runtime executes: Entrypoint followed by Cmd."""
        return [*self.entrypoint, *self.cmd]

    def env_dict(self) -> dict[str, str]:
        result = {}
        for entry in self.env:
            key, _, value = entry.partition("=")
            result[key] = value
        return result

    @classmethod
    def from_blob(cls, blob: dict[str, Any]) -> "ImageConfig":
        config = blob.get("config") or {}
        if not isinstance(config, dict):
            raise UnpackError("image config: `config` is not an object")

        def strings(key: str) -> tuple[str, ...]:
            value = config.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UnpackError(f"image config: {key} must be a list of strings")
            return tuple(value)

        return cls(
            entrypoint=strings("Entrypoint"),
            cmd=strings("Cmd"),
            env=strings("Env"),
            user=str(config.get("User") or ""),
            working_dir=str(config.get("WorkingDir") or ""),
            architecture=str(blob.get("architecture") or ""),
            os=str(blob.get("os") or ""),
        )


@dataclass(frozen=True)
class UnpackedImage:
    rootfs: Path
    manifest_digest: str
    config_digest: str
    config: ImageConfig
    raw_config: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)


# --- reading the layout -------------------------------------------------------------------------------


def _check_descriptor(descriptor: Any, what: str) -> tuple[str, int]:
    if not isinstance(descriptor, dict):
        raise UnpackError(f"{what}: descriptor is not an object")
    digest, size = descriptor.get("digest"), descriptor.get("size")
    match = _DIGEST.match(digest) if isinstance(digest, str) else None
    if match is None or len(match.group("hex")) != _HEX_LENGTH[match.group("algorithm")]:
        raise UnpackError(f"{what}: invalid digest {digest!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise UnpackError(f"{what}: invalid size {size!r}")
    return digest, size


def _blob_path(layout_dir: Path, digest: str) -> Path:
    algorithm, _, hex_digest = digest.partition(":")
    path = layout_dir / "blobs" / algorithm / hex_digest
    if not path.is_file():
        raise UnpackError(f"blob {digest} is missing from {layout_dir}")
    return path


class _VerifyingReader:
    """A read-only stream over a blob that hashes what passes through and checks it at the end."""

    def __init__(self, raw: BinaryIO, digest: str, size: Optional[int], what: str) -> None:
        self._raw = raw
        self._digest = digest
        self._size = size
        self._what = what
        self._hash = hashlib.new(digest.partition(":")[0])
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._hash.update(data)
        self.count += len(data)
        if self._size is not None and self.count > self._size:
            raise UnpackError(f"{self._what} {self._digest}: blob is larger than the {self._size} bytes declared")
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def verify(self) -> None:
        if self._size is not None and self.count != self._size:
            raise UnpackError(
                f"{self._what} {self._digest}: blob has {self.count} bytes, its descriptor says {self._size}"
            )
        actual = f"{self._hash.name}:{self._hash.hexdigest()}"
        if actual != self._digest:
            raise UnpackError(f"{self._what} {self._digest}: content digest is {actual} (corrupted or tampered blob)")


def _read_json_blob(layout_dir: Path, descriptor: dict[str, Any], what: str) -> dict[str, Any]:
    digest, size = _check_descriptor(descriptor, what)
    if size > _MAX_JSON_BLOB:
        raise UnpackError(f"{what} {digest}: {size} bytes is too large for a JSON document")
    with open(_blob_path(layout_dir, digest), "rb") as f:
        reader = _VerifyingReader(f, digest, size, what)
        data = reader.read(size + 1)
        reader.verify()
    try:
        document = json.loads(data)
    except ValueError as e:
        raise UnpackError(f"{what} {digest}: invalid JSON: {e}") from None
    if not isinstance(document, dict):
        raise UnpackError(f"{what} {digest}: not a JSON object")
    return document


def read_index(layout_dir: PathLike) -> dict[str, Any]:
    layout_dir = Path(layout_dir)
    try:
        marker = json.loads((layout_dir / "oci-layout").read_text())
        index = json.loads((layout_dir / "index.json").read_text())
    except FileNotFoundError as e:
        raise UnpackError(f"{layout_dir} is not an OCI image layout: {e.filename} is missing") from None
    except ValueError as e:
        raise UnpackError(f"{layout_dir}: invalid JSON in oci-layout or index.json: {e}") from None
    if not isinstance(marker, dict) or marker.get("imageLayoutVersion") != "1.0.0":
        raise UnpackError(f"{layout_dir}: unsupported oci-layout {marker!r}")
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise UnpackError(f"{layout_dir}/index.json has no `manifests` list")
    return index


def select_manifest(layout_dir: PathLike, ref: Optional[str] = None) -> dict[str, Any]:
    """The manifest descriptor tagged `ref`, or the layout's only manifest when `ref` is None."""
    index = read_index(layout_dir)
    manifests = [m for m in index["manifests"] if isinstance(m, dict)]
    if ref is not None:
        chosen = [m for m in manifests if (m.get("annotations") or {}).get(REF_NAME_ANNOTATION) == ref]
        if not chosen:
            names = sorted(str((m.get("annotations") or {}).get(REF_NAME_ANNOTATION)) for m in manifests)
            raise UnpackError(f"{layout_dir}: no manifest tagged {ref!r} (tags: {', '.join(names) or 'none'})")
    else:
        chosen = manifests
    if len(chosen) != 1:
        raise UnpackError(
            f"{layout_dir}: {len(chosen)} manifests{f' tagged {ref!r}' if ref else ''}; name one with a ref"
        )
    descriptor = chosen[0]
    if descriptor.get("mediaType") in INDEX_MEDIA_TYPES:
        raise UnpackError(f"{layout_dir}: {descriptor.get('digest')} is a nested index; name a single image")
    if descriptor.get("mediaType") not in MANIFEST_MEDIA_TYPES:
        raise UnpackError(f"{layout_dir}: unsupported manifest media type {descriptor.get('mediaType')!r}")
    return descriptor


def read_image(layout_dir: PathLike, ref: Optional[str] = None) -> tuple[dict, dict, dict]:
    """(manifest descriptor, manifest, config blob), each blob checked against its digest."""
    layout_dir = Path(layout_dir)
    descriptor = select_manifest(layout_dir, ref)
    manifest = _read_json_blob(layout_dir, descriptor, "manifest")
    if manifest.get("mediaType", descriptor["mediaType"]) not in MANIFEST_MEDIA_TYPES:
        raise UnpackError(f"manifest {descriptor['digest']}: unsupported media type {manifest.get('mediaType')!r}")
    config_descriptor = manifest.get("config")
    if not isinstance(config_descriptor, dict) or config_descriptor.get("mediaType") not in CONFIG_MEDIA_TYPES:
        raise UnpackError(f"manifest {descriptor['digest']}: no image config of a known media type")
    config = _read_json_blob(layout_dir, config_descriptor, "config")
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise UnpackError(f"manifest {descriptor['digest']}: no `layers` list")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids")
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layers):
        raise UnpackError(
            f"config {config_descriptor['digest']}: rootfs.diff_ids does not list one entry per layer "
            f"({len(diff_ids) if isinstance(diff_ids, list) else 'none'} for {len(layers)} layers)"
        )
    return descriptor, manifest, config


# --- applying layers ----------------------------------------------------------------------------------


def _member_parts(name: str, what: str) -> list[str]:
    """A tar member name as path components relative to the rootfs; `..` anywhere is refused."""
    if "\x00" in name:
        raise UnpackError(f"{what}: path {name!r} contains a NUL byte")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnpackError(f"{what}: path {name!r} contains '..' and would escape the rootfs")
    return parts


class _LayerApplier:
    def __init__(self, rootfs: Path, what: str, preserve_owners: bool) -> None:
        self.rootfs = rootfs
        self.what = what
        self.preserve_owners = preserve_owners
        self.added: set[str] = set()  # resolved relative paths this layer wrote
        self.added_ancestors: set[str] = set()  # and every directory above them
        self.dir_modes: list[tuple[str, int]] = []

    def _abs(self, rel: list[str]) -> str:
        return os.path.join(self.rootfs, *rel)

    def resolve_dir(self, parts: list[str], member: str, create: bool) -> Optional[list[str]]:
        """The real directory (relative components) that `parts` names, following in-rootfs symlinks.

        Missing directories are created when `create` is set; otherwise None is returned for them.
        """
        pending = list(reversed(parts))
        resolved: list[str] = []
        hops = 0
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not resolved:
                    raise UnpackError(f"{self.what}: {member!r}: a symlink in its path climbs above the rootfs")
                resolved.pop()
                continue
            path = self._abs([*resolved, part])
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(path, 0o755)
                resolved.append(part)
                continue
            if stat.S_ISDIR(st.st_mode):
                resolved.append(part)
            elif stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise UnpackError(f"{self.what}: {member!r}: too many levels of symlinks")
                target = os.readlink(path)
                if target.startswith("/"):
                    raise UnpackError(
                        f"{self.what}: {member!r}: parent /{'/'.join([*resolved, part])} is a symlink to the "
                        f"absolute path {target!r}; refusing to write through it (it would escape the rootfs)"
                    )
                pending.extend(reversed(target.split("/")))
            else:
                raise UnpackError(f"{self.what}: {member!r}: /{'/'.join([*resolved, part])} is not a directory")
        return resolved

    def _remove(self, path: str) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)

    def _mark_added(self, rel: list[str]) -> None:
        self.added.add("/".join(rel))
        for i in range(len(rel)):
            self.added_ancestors.add("/".join(rel[:i]))

    def _prune(self, rel: list[str]) -> None:
        """Hide what lower layers put at `rel`, keeping whatever this layer itself wrote there."""
        key = "/".join(rel)
        path = self._abs(rel)
        if not os.path.lexists(path):
            return
        if key in self.added or key in self.added_ancestors:
            if os.path.isdir(path) and not os.path.islink(path):
                for child in sorted(os.listdir(path)):
                    self._prune([*rel, child])
            return
        self._remove(path)

    def _chown(self, path: str, member: tarfile.TarInfo) -> None:
        if self.preserve_owners:
            os.lchown(path, member.uid, member.gid)

    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        parts = _member_parts(member.name, self.what)
        if not parts:
            return  # the root directory itself
        *parent, name = parts
        if name.startswith(WHITEOUT_PREFIX):
            directory = self.resolve_dir(parent, member.name, create=False)
            if directory is None:
                return
            if name == OPAQUE_WHITEOUT:
                for child in sorted(os.listdir(self._abs(directory))):
                    self._prune([*directory, child])
            elif not name.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):  # other .wh..wh. names are AUFS metadata
                hidden = name[len(WHITEOUT_PREFIX):]
                if hidden in ("", ".", ".."):
                    raise UnpackError(f"{self.what}: invalid whiteout {member.name!r}")
                self._prune([*directory, hidden])
            return
        if member.ischr() or member.isblk():
            return
        directory = self.resolve_dir(parent, member.name, create=True)
        rel = [*directory, name]
        path = self._abs(rel)
        mode = member.mode & 0o7777
        if member.isdir():
            if not (os.path.isdir(path) and not os.path.islink(path)):
                self._remove(path)
                os.mkdir(path, 0o700)
            self._chown(path, member)
            self.dir_modes.append((path, mode))
        elif member.isreg():
            self._remove(path)
            source = tar.extractfile(member)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
            self._chown(path, member)
            os.chmod(path, mode)
        elif member.issym():
            self._remove(path)
            os.symlink(member.linkname, path)
            self._chown(path, member)
        elif member.islnk():
            target_parts = _member_parts(member.linkname, self.what)
            if not target_parts:
                raise UnpackError(f"{self.what}: hardlink {member.name!r} points at the root directory")
            target_dir = self.resolve_dir(target_parts[:-1], member.name, create=False)
            target = self._abs([*(target_dir or []), target_parts[-1]])
            is_directory = os.path.isdir(target) and not os.path.islink(target)
            if target_dir is None or not os.path.lexists(target) or is_directory:
                raise UnpackError(
                    f"{self.what}: hardlink {member.name!r} -> {member.linkname!r}: the target is not an existing file"
                )
            self._remove(path)
            os.link(target, path, follow_symlinks=False)
        elif member.isfifo():
            self._remove(path)
            os.mkfifo(path, mode)
            self._chown(path, member)
        else:
            raise UnpackError(f"{self.what}: {member.name!r} has an unsupported tar type {member.type!r}")
        self._mark_added(rel)

    def finish(self) -> None:
        # Directory modes last (deepest first), so that a read-only directory can still be filled.
        for path, mode in sorted(self.dir_modes, key=lambda item: item[0].count("/"), reverse=True):
            os.chmod(path, mode)


def apply_layer(
    layout_dir: PathLike,
    descriptor: dict[str, Any],
    diff_id: Optional[str],
    rootfs: PathLike,
    preserve_owners: bool = False,
) -> None:
    """Apply one layer blob to `rootfs`, checking its digest, size and (when given) diff_id as it streams."""
    layout_dir, rootfs = Path(layout_dir), Path(rootfs)
    digest, size = _check_descriptor(descriptor, "layer")
    media_type = descriptor.get("mediaType")
    if media_type not in _GZIP_LAYERS + _TAR_LAYERS:
        raise UnpackError(f"layer {digest}: unsupported media type {media_type!r} (gzip or plain tar only)")
    if diff_id is not None:
        match = _DIGEST.match(diff_id) if isinstance(diff_id, str) else None
        if match is None:
            raise UnpackError(f"layer {digest}: invalid diff_id {diff_id!r}")
    with open(_blob_path(layout_dir, digest), "rb") as f:
        blob = _VerifyingReader(f, digest, size, "layer")
        stream: Any = gzip.GzipFile(fileobj=blob, mode="rb") if media_type in _GZIP_LAYERS else blob
        tar_stream = _VerifyingReader(stream, diff_id, None, f"layer {digest}: uncompressed") if diff_id else stream
        applier = _LayerApplier(rootfs, f"layer {digest}", preserve_owners)
        try:
            with tarfile.open(fileobj=tar_stream, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    applier.apply(member, tar)
            # Whatever follows the end-of-archive blocks is still part of both digests.
            while tar_stream.read(_CHUNK):
                pass
            blob.drain()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise UnpackError(f"layer {digest}: {e}") from None
        finally:
            applier.finish()
        blob.verify()
        if diff_id:
            tar_stream.verify()


def unpack(
    layout_dir: PathLike,
    rootfs: PathLike,
    ref: Optional[str] = None,
    preserve_owners: Optional[bool] = None,
) -> UnpackedImage:
    """Unpack the image (tagged `ref`, or the layout's only one) into `rootfs`, which must be new or empty.

    `preserve_owners` defaults to "when running as root". On failure the partial rootfs is removed.
    """
    layout_dir, rootfs = Path(layout_dir), Path(rootfs)
    if preserve_owners is None:
        preserve_owners = os.geteuid() == 0
    descriptor, manifest, config = read_image(layout_dir, ref)
    created = not rootfs.exists()
    if not created and (not rootfs.is_dir() or any(rootfs.iterdir())):
        raise UnpackError(f"{rootfs} must be a new or empty directory")
    rootfs.mkdir(parents=True, exist_ok=True)
    try:
        for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"]):
            apply_layer(layout_dir, layer, diff_id, rootfs, preserve_owners)
    except BaseException:
        _clear(rootfs, remove_self=created)
        raise
    return UnpackedImage(
        rootfs=rootfs,
        manifest_digest=descriptor["digest"],
        config_digest=manifest["config"]["digest"],
        config=ImageConfig.from_blob(config),
        raw_config=config,
    )


def _clear(directory: Path, remove_self: bool) -> None:
    def make_writable(function: Any, path: str, _exc: Any) -> None:
        os.chmod(os.path.dirname(path), 0o700)
        function(path)

    if remove_self:
        shutil.rmtree(directory, onerror=make_writable)
        return
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, onerror=make_writable)
        else:
            child.unlink()
