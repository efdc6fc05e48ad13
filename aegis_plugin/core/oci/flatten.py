"""An image's final filesystem, read top layer first as go-containerregistry's `mutate.Extract` reads it: the
highest layer that has a path decides it, a whiteout (`whiteout.py`) hides what the layers below have at its
path, a path below something an upper layer made a non-directory is gone, and a path an upper layer put entries
below is a directory. Paths are paths, as in the image spec's changesets and overlay filesystems: a lower
layer's symlink never redirects an upper layer's entries.

Within one layer, entries apply in archive order, as a runtime extracts them: the last entry of a path wins, and
a directory replaced by a non-directory later in the layer loses what the layer put below it before. An entry
below a non-directory its own layer made earlier (a file written through a symlink) is refused, as are `..` in
a path and a whiteout naming nothing. Each layer's entries are listed before any is yielded (its table of
contents, not its content); layers are opened top first, only when the layers above them are done.

The contract test's unpacker, the publisher (the model files it signs) and the SBOM's completeness check
(every file of the image) read images through it, so they cannot disagree about what files an image holds."""
from __future__ import annotations

import contextlib
import posixpath
import tarfile
from typing import (
    BinaryIO, Callable, ContextManager, Dict, Iterator, List, Optional, Sequence, Set, Tuple, TypeVar, Union,
)

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.oci import whiteout
from aegis_plugin.core.oci.compression import open_layer_tar

T = TypeVar("T")
# A layer blob's path (plain, gzip or zstd tar), or what gives it when asked: its path, or a seekable stream of its
# uncompressed tar (see `final_entries`).
Layer = Union[str, Callable[[], Union[str, BinaryIO]]]


class FlattenError(AegisError):
    """A layer that is no valid changeset: `..` in a path, a whiteout naming nothing, an entry below a
    non-directory of its own layer."""


def final(layers: Sequence[Callable[[], ContextManager[Sequence[T]]]], name: Callable[[T], str],
          is_dir: Callable[[T], bool]) -> Iterator[Tuple[str, T]]:
    """(absolute path, entry) of every entry of the final filesystem, top layer first, each layer's in its
    archive order. `layers` (bottom first) each give, when called, a context holding the layer's entries; an
    entry's content can be read until the next layer is reached. `name` and `is_dir` read an entry."""
    decided: Dict[str, bool] = {}  # path -> whether an upper layer made it a directory
    implied: Set[str] = set()  # directories an upper layer put entries in, without an entry of their own
    hidden: List[Tuple[str, bool]] = []  # whiteouts of the layers above: (path, opaque)
    for layer in reversed(layers):
        with layer() as entries:
            changes, whiteouts = _changes(entries, name, is_dir)
            for path, entry, entry_is_dir in changes:
                if path in decided or _hidden(path, hidden) or _under_a_file(path, decided):
                    continue
                if path in implied and not entry_is_dir:
                    continue  # an upper layer has entries below it: it is a directory
                decided[path] = entry_is_dir
                parent = posixpath.dirname(path)
                while parent != "/" and parent not in implied:
                    implied.add(parent)
                    parent = posixpath.dirname(parent)
                yield path, entry
        hidden.extend(whiteouts)  # a layer's whiteouts hide what is below it, never what it holds itself


def _changes(entries: Sequence[T], name: Callable[[T], str], is_dir: Callable[[T], bool]
             ) -> Tuple[List[Tuple[str, T, bool]], List[Tuple[str, bool]]]:
    """One layer on its own, as extracting it in archive order leaves it: (path, entry, is a directory) in
    archive order, and its whiteouts."""
    listed: List[Tuple[str, T, bool]] = []
    whiteouts: List[Tuple[str, bool]] = []
    for entry in entries:
        path = _path(name(entry))
        if path == "/":
            continue
        parent, base = posixpath.split(path)
        if whiteout.is_whiteout(base):
            try:
                hides = whiteout.parse(base)
            except whiteout.WhiteoutError as e:
                raise FlattenError(f"{name(entry)!r}: {e}") from None
            if hides is not None:
                hidden = (parent, True) if hides.hidden is None else (posixpath.join(parent, hides.hidden), False)
                whiteouts.append(hidden)
            continue
        listed.append((path, entry, is_dir(entry)))
    kinds: Dict[str, List[Tuple[int, bool]]] = {}  # path -> (position, is a directory) of each of its entries
    for position, (path, _, entry_is_dir) in enumerate(listed):
        kinds.setdefault(path, []).append((position, entry_is_dir))
    changes = []
    for position, (path, entry, entry_is_dir) in enumerate(listed):
        if kinds[path][-1][0] != position:
            continue  # a later entry of the layer replaces it
        if not _survives_its_layer(position, path, kinds, name(entry)):
            continue
        changes.append((path, entry, entry_is_dir))
    return changes, whiteouts


def _survives_its_layer(position: int, path: str, kinds: Dict[str, List[Tuple[int, bool]]], name: str) -> bool:
    """Whether the entry at `position` is still there once its layer is extracted: False when a later
    non-directory replaces one of its parents (taking what is below); refused when an earlier non-directory is
    its parent (writing below it would write through a symlink, or fail)."""
    parent = posixpath.dirname(path)
    while parent != "/":
        before = [parent_is_dir for at, parent_is_dir in kinds.get(parent, ()) if at < position]
        if any(not parent_is_dir for at, parent_is_dir in kinds.get(parent, ()) if at > position):
            return False
        if before and not before[-1]:
            raise FlattenError(f"{name!r}: {parent} is not a directory in its own layer")
        parent = posixpath.dirname(parent)
    return True


def _path(name: str) -> str:
    parts = [part for part in name.strip().split("/") if part not in ("", ".")]
    if ".." in parts:
        raise FlattenError(f"{name!r}: path contains '..'")
    if any("\x00" in part for part in parts):
        raise FlattenError(f"{name!r}: path contains a NUL byte")
    return "/" + "/".join(parts)


def final_entries(layers: Sequence[Layer], while_listing: Optional[Callable[[tarfile.TarInfo, tarfile.TarFile], None]]
                  = None) -> Iterator[Tuple[str, tarfile.TarInfo, tarfile.TarFile]]:
    """`final` over layer blobs: (absolute path, member, its open archive), to read a file with
    `tar.extractfile(member)` before asking for an entry of the next layer. A layer given as a stream (the
    uncompressed tar, seekable) is closed when done; when it has a `verify()` (`layout.LayerReader`), that is
    called once the layer's entries are listed, before any is yielded.

    `while_listing(member, tar)` sees every member as the listing reaches it, its content next in the stream:
    a consumer that reads every file (the unpacker) reads it there, in the one pass over a gzip layer, rather
    than through `extractfile` later (which would decompress the layer again)."""

    def listing(layer: Layer) -> Callable[[], ContextManager[List[Tuple[tarfile.TarInfo, tarfile.TarFile]]]]:
        @contextlib.contextmanager
        def opened() -> Iterator[List[Tuple[tarfile.TarInfo, tarfile.TarFile]]]:
            source = layer() if callable(layer) else layer
            with contextlib.ExitStack() as stack:
                if isinstance(source, str):
                    tar = stack.enter_context(open_layer_tar(source))  # random access
                else:
                    stack.enter_context(contextlib.closing(source))
                    tar = stack.enter_context(tarfile.open(fileobj=source, mode="r:"))
                members = []
                for member in tar:
                    members.append((member, tar))
                    if while_listing is not None:
                        while_listing(member, tar)
                verify: Optional[Callable[[], None]] = getattr(source, "verify", None)
                if verify is not None:
                    verify()
                yield members
        return opened

    for path, (member, tar) in final([listing(layer) for layer in layers], lambda e: e[0].name, lambda e: e[0].isdir()):
        yield path, member, tar


def _hidden(path: str, hidden: List[Tuple[str, bool]]) -> bool:
    return any(path.startswith(at + "/") or (path == at and not opaque) for at, opaque in hidden)


def _under_a_file(path: str, decided: dict) -> bool:
    parent = posixpath.dirname(path)
    while parent != "/":
        if decided.get(parent) is False:
            return True
        parent = posixpath.dirname(parent)
    return False
