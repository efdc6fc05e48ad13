"""Unpack an OCI image layout into a root filesystem directory, in pure Python.

The layout is read by `core/oci/layout.py` (index.json -> manifest -> config, every blob checked against its
descriptor's size and digest, each layer's tar against the config's `diff_ids`, before anything of it is
written). What the rootfs holds is the image's final filesystem as `core/oci/flatten.py` reads it, the view the
SBOM's completeness check and the publisher share: each entry is written once, top layer first, and a path is a
path (a lower layer's symlink never redirects an upper layer's entries, as in overlay-based runtimes). Each
file's content is staged in a directory beside the rootfs while its layer is listed, so a layer is decompressed
once, and moved into place when the flattener yields it; the staging directory is removed either way.

Nothing a layer says can read, write, chmod or chown anything outside the rootfs (the contract test unpacks as
root): the flattener refuses `..` and never yields an entry below a symlink, and every write here walks from the
rootfs one directory at a time with O_NOFOLLOW, acting on the entry itself relative to its parent's descriptor,
so a symlink anywhere on the way is refused rather than followed. Directory modes are set last, deepest first,
on the very directory the entry named.

Character and block devices are skipped (the sandbox supplies /dev). When run as root, owners are kept
(`preserve_owners`), so that a process running as the image's user sees the permissions it would see in a
real container runtime.
"""
from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.oci import flatten
from aegis_plugin.core.oci.layout import LayerReader, read_image

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


# --- writing the final filesystem --------------------------------------------------------------------


class _RootfsWriter:
    """Writes the final filesystem's entries, each once, through directory file descriptors.

    Every parent is walked one component at a time from the rootfs's descriptor, each directory opened with
    O_NOFOLLOW (created, 0755, when an upper layer's entry comes before its own directory's entry); every
    operation is relative to its parent's descriptor and acts on the entry itself (lstat, mkdir, mkfifo, symlink,
    linkat and lchown without following; files created with O_EXCL and O_NOFOLLOW, then fchown-ed and fchmod-ed).
    """

    def __init__(self, rootfs: Path, preserve_owners: bool, staging: Path) -> None:
        self.root_fd = os.open(rootfs, _ROOT_FLAGS)
        self.staging_fd = os.open(staging, _ROOT_FLAGS)
        self.preserve_owners = preserve_owners
        self.written: dict[str, tarfile.TarFile] = {}  # path -> the archive of the layer that wrote it
        self.dir_modes: dict[str, tuple[int, int, int]] = {}  # path -> (mode, st_dev, st_ino) of a directory entry
        self.staged: dict[tarfile.TarInfo, str] = {}  # a file member -> its content's name in the staging directory
        self.staged_count = 0

    def close(self) -> None:
        os.close(self.root_fd)
        os.close(self.staging_fd)

    def stage(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        """While its layer is listed, a regular file's content goes to the staging directory (beside the
        rootfs, on its filesystem) with its owner and mode: moved into place if the file is in the final
        filesystem, removed with the directory if not. The layer is decompressed once."""
        if member.isreg():
            self.staged_count += 1
            name = str(self.staged_count)
            self._write_file(member, tar, self.staging_fd, name)
            self.staged[member] = name

    @contextmanager
    def parent_dir(self, path: str, create: bool) -> Iterator[Optional[int]]:
        """The open directory holding `path` (absolute, normalized); None when it is missing and not `create`d."""
        fds = [os.dup(self.root_fd)]
        try:
            for part in path.strip("/").split("/")[:-1]:
                st = _lstat(part, fds[-1])
                if st is None:
                    if not create:
                        yield None
                        return
                    os.mkdir(part, 0o755, dir_fd=fds[-1])
                elif not stat.S_ISDIR(st.st_mode):  # the flattener never yields an entry below a non-directory
                    raise UnpackError(f"{path!r}: {part!r} on its way is not a directory")
                fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
            yield fds[-1]
        finally:
            for fd in fds:
                os.close(fd)

    def write(self, path: str, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        if member.ischr() or member.isblk():
            return
        name = posixpath.basename(path)
        with self.parent_dir(path, create=True) as dir_fd:
            assert dir_fd is not None
            existing = _lstat(name, dir_fd)
            if member.isdir():
                if existing is None:
                    os.mkdir(name, 0o700, dir_fd=dir_fd)
                elif not stat.S_ISDIR(existing.st_mode):
                    raise UnpackError(f"{member.name!r}: written twice")
                fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    if self.preserve_owners:
                        os.fchown(fd, member.uid, member.gid)
                    st = os.fstat(fd)
                finally:
                    os.close(fd)
                self.dir_modes[path] = (member.mode & 0o7777, st.st_dev, st.st_ino)
            elif existing is not None:  # the flattener yields each path once
                raise UnpackError(f"{member.name!r}: written twice")
            elif member.islnk():
                self._hardlink(path, member, tar, dir_fd, name)
            else:
                self._create(member, tar, dir_fd, name)
        self.written[path] = tar

    def _write_file(self, member: tarfile.TarInfo, tar: tarfile.TarFile, dir_fd: int, name: str) -> None:
        source = tar.extractfile(member)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(name, flags, 0o600, dir_fd=dir_fd), "wb") as out:
            shutil.copyfileobj(source, out, _CHUNK)  # type: ignore[misc]
            out.flush()  # before the mode: a later write would clear setuid bits
            if self.preserve_owners:
                os.fchown(out.fileno(), member.uid, member.gid)
            os.fchmod(out.fileno(), member.mode & 0o7777)

    def _create(self, member: tarfile.TarInfo, tar: tarfile.TarFile, dir_fd: int, name: str) -> None:
        mode = member.mode & 0o7777
        if member.isreg():
            staged = self.staged.pop(member, None)
            if staged is None:  # a copy of an earlier member (a hardlink's), or a file nobody staged
                self._write_file(member, tar, dir_fd, name)
            else:
                os.rename(staged, name, src_dir_fd=self.staging_fd, dst_dir_fd=dir_fd)
            return
        if member.issym():
            os.symlink(member.linkname, name, dir_fd=dir_fd)
        elif member.isfifo():
            os.mkfifo(name, mode, dir_fd=dir_fd)
        else:
            raise UnpackError(f"{member.name!r} has an unsupported tar type {member.type!r}")
        if self.preserve_owners:
            os.chown(name, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)

    def _hardlink(self, path: str, member: tarfile.TarInfo, tar: tarfile.TarFile, dir_fd: int, name: str) -> None:
        """A new name for an earlier entry of the same layer: linked when that entry is in the final filesystem
        (a symlink is linked itself, never its target), else a copy of it, as the layer made it."""
        target = _archive_path(member.linkname, f"hardlink {member.name!r}")
        if target == path:
            raise UnpackError(f"hardlink {member.name!r} -> {member.linkname!r} links to itself")
        missing = UnpackError(
            f"hardlink {member.name!r} -> {member.linkname!r}: the target is not an existing file of its layer"
        )
        if self.written.get(target) is tar:
            with self.parent_dir(target, create=False) as target_dir:
                assert target_dir is not None
                st = _lstat(posixpath.basename(target), target_dir)
                if st is None or stat.S_ISDIR(st.st_mode):
                    raise missing
                os.link(posixpath.basename(target), name, src_dir_fd=target_dir, dst_dir_fd=dir_fd,
                        follow_symlinks=False)
            return
        source = _earlier_member(tar, member, target)
        while source is not None and source.islnk():  # a link to a link names the same file
            source = _earlier_member(tar, source, _archive_path(source.linkname, f"hardlink {source.name!r}"))
        if source is None or not (source.isreg() or source.issym()):
            raise missing
        self._create(source, tar, dir_fd, name)

    def finish(self) -> None:
        """Directory modes last (deepest first), so that a read-only directory can still be filled. Each
        directory is reopened without following any symlink and must still be the one its entry made."""
        for path, (mode, dev, ino) in sorted(self.dir_modes.items(), key=lambda item: item[0].count("/"), reverse=True):
            fd = _open_exact(self.root_fd, path.strip("/").split("/"))
            if fd is None:
                continue
            try:
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    os.fchmod(fd, mode)
            finally:
                os.close(fd)


def _archive_path(name: str, what: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts or "\x00" in name:
        raise UnpackError(f"{what}: path {name!r} contains '..' or a NUL byte")
    return "/" + "/".join(parts)


def _earlier_member(tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> Optional[tarfile.TarInfo]:
    """The last member named `path` before `member`: what a hardlink in a tar names."""
    members = tar.getmembers()  # already listed: no reading
    for earlier in reversed(members[: members.index(member)]):
        if _archive_path(earlier.name, "member") == path:
            return earlier
    return None


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


def unpack(
    layout_dir: PathLike,
    rootfs: PathLike,
    ref: Optional[str] = None,
    preserve_owners: Optional[bool] = None,
    platform: Optional[str] = None,
) -> UnpackedImage:
    """Unpack the image (tagged `ref`, or the layout's only one; `platform`'s of an image index) into `rootfs`,
    which must be new or empty.

    `preserve_owners` defaults to "when running as root". On failure the partial rootfs is removed.
    """
    layout_dir, rootfs = Path(layout_dir), Path(rootfs)
    if preserve_owners is None:
        preserve_owners = os.geteuid() == 0
    descriptor, manifest, config = read_image(layout_dir, ref, platform)
    created = not rootfs.exists()
    if not created and (not rootfs.is_dir() or any(rootfs.iterdir())):
        raise UnpackError(f"{rootfs} must be a new or empty directory")
    rootfs.mkdir(parents=True, exist_ok=True)
    try:
        _write_final_filesystem(layout_dir, manifest["layers"], config["rootfs"]["diff_ids"], rootfs, preserve_owners)
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


def _write_final_filesystem(
    layout_dir: Path, layers: list, diff_ids: list, rootfs: Path, preserve_owners: bool
) -> None:
    reading = [""]  # the digest of the layer being read, for errors

    def opener(descriptor: Any, diff_id: Any) -> Any:
        def open_layer() -> LayerReader:
            reading[0] = str(descriptor.get("digest") if isinstance(descriptor, dict) else descriptor)
            return LayerReader(layout_dir, descriptor, diff_id)
        return open_layer

    staging = Path(tempfile.mkdtemp(prefix=f".{rootfs.name}.staging-", dir=rootfs.parent))
    writer = _RootfsWriter(rootfs, preserve_owners, staging)
    try:
        try:
            listed = flatten.final_entries([opener(d, i) for d, i in zip(layers, diff_ids)], writer.stage)
            for path, member, tar in listed:
                try:
                    writer.write(path, member, tar)
                except OSError as e:
                    raise UnpackError(f"{member.name!r}: {e.strerror or e}") from None
        except (UnpackError, flatten.FlattenError, tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise UnpackError(f"layer {reading[0]}: {e}") from None
        writer.finish()
    finally:
        writer.close()
        _clear(staging, remove_self=True)


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
