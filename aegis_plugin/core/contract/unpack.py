"""Unpack an OCI image layout into a root filesystem directory, in pure Python.

The layout is read by `core/oci/layout.py` (index.json -> manifest -> config, every blob checked against its
descriptor's size and digest while it is read); each layer is applied in order, with OCI whiteouts
(`core/oci/whiteout.py`), its uncompressed stream checked against the config's `diff_ids`.

Nothing a layer says can read, write, chmod or chown anything outside the rootfs (the contract test unpacks as
root): member paths with `..` are refused, and a member whose parent path runs through a symlink is resolved
inside the rootfs, one component at a time through directory descriptors opened with O_NOFOLLOW; a symlink to
an absolute path, or one whose `..` climbs above the root, is refused rather than followed. Every operation
acts on the entry itself, relative to its parent's descriptor, and never follows a symlink. Existing entries
are replaced, never written through (a new file gets a new inode, so earlier hardlinks keep their content).
Directory modes are set at the end of each layer on the very directory the member named, or not at all.

Character and block devices are skipped (the sandbox supplies /dev). When run as root, owners are kept
(`preserve_owners`), so that a process running as the image's user sees the permissions it would see in a
real container runtime.
"""
from __future__ import annotations

import errno
import gzip
import os
import shutil
import stat
import tarfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.oci import whiteout
from aegis_plugin.core.oci.layout import (
    GZIP_LAYERS,
    TAR_LAYERS,
    VerifyingReader,
    check_descriptor,
    existing_blob,
    is_digest,
    read_image,
)

_MAX_SYMLINK_HOPS = 40  # as Linux's MAXSYMLINKS
_CHUNK = 1024 * 1024
# The rootfs itself is the caller's path; every directory below it is opened as itself: O_NOFOLLOW fails on a
# symlink instead of following it.
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_DIR_FLAGS = _ROOT_FLAGS | os.O_NOFOLLOW

PathLike = Union[str, "os.PathLike[str]"]


class UnpackError(AegisError):
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
    """Applies one layer's members to the rootfs through directory file descriptors.

    Every path is walked one component at a time from the rootfs's descriptor: each directory is opened with
    O_NOFOLLOW, and every operation is relative to its parent's descriptor and acts on the entry itself (lstat,
    unlink, rmdir, mkdir, mkfifo, symlink, linkat and lchown without following; files created with O_EXCL and
    O_NOFOLLOW, then fchown-ed and fchmod-ed). A symlink in a member's parent path is followed only by this
    walk, inside the rootfs, so no operation ever reaches a path the kernel resolved through a symlink a layer
    made.
    """

    def __init__(self, rootfs: Path, what: str, preserve_owners: bool) -> None:
        self.root_fd = os.open(rootfs, _ROOT_FLAGS)
        self.what = what
        self.preserve_owners = preserve_owners
        self.added: set[str] = set()  # resolved relative paths this layer wrote
        self.added_ancestors: set[str] = set()  # and every directory above them
        # resolved relative path -> (mode, st_dev, st_ino) of the directory a member named
        self.dir_modes: dict[str, tuple[int, int, int]] = {}

    def close(self) -> None:
        os.close(self.root_fd)

    @contextmanager
    def opened_dir(self, parts: list[str], member: str, create: bool) -> Iterator[Optional[tuple[list[str], int]]]:
        """The real directory that `parts` names, as (relative components, open descriptor).

        Symlinks on the way are followed inside the rootfs only: an absolute target, or `..` above the root, is
        refused. Missing directories are created when `create` is set; otherwise None is yielded for them.
        """
        pending = list(reversed(parts))
        resolved: list[str] = []
        fds = [os.dup(self.root_fd)]  # fds[i] is the directory resolved[:i]
        hops = 0
        try:
            while pending:
                part = pending.pop()
                if part in ("", "."):
                    continue
                if part == "..":
                    if not resolved:
                        raise UnpackError(f"{self.what}: {member!r}: a symlink in its path climbs above the rootfs")
                    resolved.pop()
                    os.close(fds.pop())
                    continue
                st = _lstat(part, fds[-1])
                if st is None:
                    if not create:
                        yield None
                        return
                    os.mkdir(part, 0o755, dir_fd=fds[-1])
                elif stat.S_ISLNK(st.st_mode):
                    hops += 1
                    if hops > _MAX_SYMLINK_HOPS:
                        raise UnpackError(f"{self.what}: {member!r}: too many levels of symlinks")
                    target = os.readlink(part, dir_fd=fds[-1])
                    if target.startswith("/"):
                        raise UnpackError(
                            f"{self.what}: {member!r}: parent /{'/'.join([*resolved, part])} is a symlink to the "
                            f"absolute path {target!r}; refusing to write through it (it would escape the rootfs)"
                        )
                    pending.extend(reversed(target.split("/")))
                    continue
                elif not stat.S_ISDIR(st.st_mode):
                    raise UnpackError(f"{self.what}: {member!r}: /{'/'.join([*resolved, part])} is not a directory")
                fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
                resolved.append(part)
            yield resolved, fds[-1]
        finally:
            for fd in fds:
                os.close(fd)

    def _mark_added(self, rel: list[str]) -> None:
        self.added.add("/".join(rel))
        for i in range(len(rel)):
            self.added_ancestors.add("/".join(rel[:i]))

    def _prune(self, directory: list[str], dir_fd: int, name: str) -> None:
        """Hide what lower layers put at `directory/name`, keeping whatever this layer itself wrote there."""
        key = "/".join([*directory, name])
        st = _lstat(name, dir_fd)
        if st is None:
            return
        if key in self.added or key in self.added_ancestors:
            if stat.S_ISDIR(st.st_mode):
                child_fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    for child in sorted(os.listdir(child_fd)):
                        self._prune([*directory, name], child_fd, child)
                finally:
                    os.close(child_fd)
            return
        _remove(name, dir_fd)

    def _chown(self, name: str, dir_fd: int, member: tarfile.TarInfo) -> None:
        if self.preserve_owners:
            os.chown(name, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)

    def apply(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        parts = _member_parts(member.name, self.what)
        if not parts:
            return  # the root directory itself
        *parent, name = parts
        if whiteout.is_whiteout(name):
            self._whiteout(member, parent, name)
            return
        if member.ischr() or member.isblk():
            return
        with self.opened_dir(parent, member.name, create=True) as found:
            assert found is not None
            directory, dir_fd = found
            self._write(member, tar, directory, dir_fd, name)
            self._mark_added([*directory, name])

    def _whiteout(self, member: tarfile.TarInfo, parent: list[str], name: str) -> None:
        try:
            hides = whiteout.parse(name)
        except whiteout.WhiteoutError as e:
            raise UnpackError(f"{self.what}: {member.name!r}: {e}") from None
        if hides is None:
            return  # AUFS metadata
        with self.opened_dir(parent, member.name, create=False) as found:
            if found is None:
                return
            directory, dir_fd = found
            if hides.hidden is None:
                for child in sorted(os.listdir(dir_fd)):
                    self._prune(directory, dir_fd, child)
            else:
                self._prune(directory, dir_fd, hides.hidden)

    def _write(
        self, member: tarfile.TarInfo, tar: tarfile.TarFile, directory: list[str], dir_fd: int, name: str
    ) -> None:
        mode = member.mode & 0o7777
        if member.isdir():
            st = _lstat(name, dir_fd)
            if st is None or not stat.S_ISDIR(st.st_mode):
                _remove(name, dir_fd)
                os.mkdir(name, 0o700, dir_fd=dir_fd)
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                if self.preserve_owners:
                    os.fchown(fd, member.uid, member.gid)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            self.dir_modes["/".join([*directory, name])] = (mode, st.st_dev, st.st_ino)
        elif member.isreg():
            _remove(name, dir_fd)
            source = tar.extractfile(member)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with os.fdopen(os.open(name, flags, 0o600, dir_fd=dir_fd), "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
                out.flush()  # before the mode: a later write would clear setuid bits
                if self.preserve_owners:
                    os.fchown(out.fileno(), member.uid, member.gid)
                os.fchmod(out.fileno(), mode)
        elif member.issym():
            _remove(name, dir_fd)
            os.symlink(member.linkname, name, dir_fd=dir_fd)
            self._chown(name, dir_fd, member)
        elif member.islnk():
            self._hardlink(member, dir_fd, name)
        elif member.isfifo():
            _remove(name, dir_fd)
            os.mkfifo(name, mode, dir_fd=dir_fd)
            self._chown(name, dir_fd, member)
        else:
            raise UnpackError(f"{self.what}: {member.name!r} has an unsupported tar type {member.type!r}")

    def _hardlink(self, member: tarfile.TarInfo, dir_fd: int, name: str) -> None:
        """A new name for an entry already in the rootfs (a symlink is linked itself, never its target)."""
        target_parts = _member_parts(member.linkname, f"{self.what}: hardlink {member.name!r}")
        if not target_parts:
            raise UnpackError(f"{self.what}: hardlink {member.name!r} points at the root directory")
        with self.opened_dir(target_parts[:-1], member.name, create=False) as found:
            st = _lstat(target_parts[-1], found[1]) if found is not None else None
            if found is None or st is None or stat.S_ISDIR(st.st_mode):
                raise UnpackError(
                    f"{self.what}: hardlink {member.name!r} -> {member.linkname!r}: the target is not an existing file"
                )
            _remove(name, dir_fd)
            os.link(target_parts[-1], name, src_dir_fd=found[1], dst_dir_fd=dir_fd, follow_symlinks=False)

    def finish(self) -> None:
        """Directory modes last (deepest first), so that a read-only directory can still be filled.

        Each directory is reopened without following any symlink and must still be the one its member named:
        a later member may have replaced it (by a symlink to anywhere, say), and then there is nothing to set.
        """
        for key, (mode, dev, ino) in sorted(self.dir_modes.items(), key=lambda item: item[0].count("/"), reverse=True):
            fd = _open_exact(self.root_fd, key.split("/"))
            if fd is None:
                continue
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    os.fchmod(fd, mode)
            finally:
                os.close(fd)


def _lstat(name: str, dir_fd: int) -> Optional[os.stat_result]:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open_exact(root_fd: int, parts: list[str]) -> Optional[int]:
    """The directory at exactly `parts` below root_fd, following no symlink at all; None if it is not one."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except (FileNotFoundError, NotADirectoryError):
        os.close(fd)
        return None
    except OSError as e:
        os.close(fd)
        if e.errno == errno.ELOOP:  # a symlink: O_NOFOLLOW refused it
            return None
        raise
    return fd


def apply_layer(
    layout_dir: PathLike,
    descriptor: dict[str, Any],
    diff_id: Optional[str],
    rootfs: PathLike,
    preserve_owners: bool = False,
) -> None:
    """Apply one layer blob to `rootfs`, checking its digest, size and (when given) diff_id as it streams."""
    layout_dir, rootfs = Path(layout_dir), Path(rootfs)
    digest, size = check_descriptor(descriptor, "layer")
    media_type = descriptor.get("mediaType")
    if media_type not in GZIP_LAYERS + TAR_LAYERS:
        raise UnpackError(f"layer {digest}: unsupported media type {media_type!r} (gzip or plain tar only)")
    if diff_id is not None and not is_digest(diff_id):
        raise UnpackError(f"layer {digest}: invalid diff_id {diff_id!r}")
    with open(existing_blob(layout_dir, digest), "rb") as f:
        blob = VerifyingReader(f, digest, size, "layer")
        stream: Any = gzip.GzipFile(fileobj=blob, mode="rb") if media_type in GZIP_LAYERS else blob
        tar_stream = VerifyingReader(stream, diff_id, None, f"layer {digest}: uncompressed") if diff_id else stream
        applier = _LayerApplier(rootfs, f"layer {digest}", preserve_owners)
        try:
            with tarfile.open(fileobj=tar_stream, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    try:
                        applier.apply(member, tar)
                    except OSError as e:
                        raise UnpackError(f"layer {digest}: {member.name!r}: {e.strerror or e}") from None
            # Whatever follows the end-of-archive blocks is still part of both digests.
            while tar_stream.read(_CHUNK):
                pass
            blob.drain()
            applier.finish()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise UnpackError(f"layer {digest}: {e}") from None
        finally:
            applier.close()
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


def _remove(name: str, dir_fd: int) -> None:
    """Remove the entry `name` in dir_fd, and a directory's contents first, without following any symlink.

    A directory a layer made unreadable or read-only is made 0700 first, so that an unpack as non-root (which
    owns everything it made) can still replace or clean it up.
    """
    st = _lstat(name, dir_fd)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    if stat.S_IMODE(st.st_mode) & 0o700 != 0o700:
        os.chmod(name, 0o700, dir_fd=dir_fd)  # just lstat-ed as a directory, and nothing else writes here
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            _remove(child, fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def _clear(directory: Path, remove_self: bool) -> None:
    fd = os.open(directory, _ROOT_FLAGS)
    try:
        for child in os.listdir(fd):
            _remove(child, fd)
    finally:
        os.close(fd)
    if remove_self:
        os.rmdir(directory)
