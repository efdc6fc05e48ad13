"""An image's final filesystem, read top layer first as go-containerregistry's `mutate.Extract` reads it: the
highest layer that has a path decides it, a whiteout (`whiteout.py`) hides what the layers below have at its
path, a path below something an upper layer made a non-directory is gone, and a path an upper layer put entries
below is a directory. Within one layer the first entry of a path counts (the layers Aegis writes hold each path
once). Each layer is opened once, top first, only when the layers above it are done; nothing is held whole.

The publisher (the model files it signs) and the SBOM's completeness check (every file of the image) read
images through it, so they cannot disagree about what files an image holds."""
from __future__ import annotations

import posixpath
import tarfile
from typing import Callable, Iterable, Iterator, List, Sequence, Tuple, TypeVar, Union

from aegis_plugin.core.oci import whiteout

T = TypeVar("T")
Layer = Union[str, Callable[[], str]]  # a layer blob's path (gzip or plain tar), or what gives it when asked


def final(layers: Sequence[Callable[[], Iterable[T]]], name: Callable[[T], str], is_dir: Callable[[T], bool]
          ) -> Iterator[Tuple[str, T]]:
    """(absolute path, entry) of every entry of the final filesystem, top layer first. `layers` (bottom first)
    each give their entries when called; `name` and `is_dir` read an entry. Use an entry's content before asking
    for the next one: its layer may be a stream."""
    decided: dict = {}  # path -> whether an upper layer made it a directory
    implied: set = set()  # directories an upper layer put entries in, without an entry of their own
    hidden: List[Tuple[str, bool]] = []  # whiteouts of the layers above: (path, opaque)
    for layer in reversed(layers):
        found: List[Tuple[str, bool]] = []
        for entry in layer():
            path = posixpath.normpath("/" + name(entry).strip().lstrip("/"))
            if path == "/":
                continue
            parent, base = posixpath.split(path)
            if whiteout.is_whiteout(base):
                try:
                    hides = whiteout.parse(base)
                except whiteout.WhiteoutError as e:
                    raise whiteout.WhiteoutError(f"{path}: {e}") from None
                if hides is not None:
                    found.append((parent, True) if hides.hidden is None else (posixpath.join(parent, hides.hidden), False))
                continue
            if path in decided or _hidden(path, hidden) or _under_a_file(path, decided):
                continue
            if path in implied and not is_dir(entry):
                continue  # an upper layer has entries below it: it is a directory
            decided[path] = is_dir(entry)
            while parent != "/" and parent not in implied:
                implied.add(parent)
                parent = posixpath.dirname(parent)
            yield path, entry
        hidden.extend(found)  # a layer's whiteouts hide what is below it, never what it holds itself


def final_entries(layers: Sequence[Layer]) -> Iterator[Tuple[str, tarfile.TarInfo, tarfile.TarFile]]:
    """`final` over layer blobs: (absolute path, member, its open archive); read a file's content
    (`tar.extractfile(member)`) before asking for the next entry."""

    def members(layer: Layer) -> Callable[[], Iterator[Tuple[tarfile.TarInfo, tarfile.TarFile]]]:
        def read() -> Iterator[Tuple[tarfile.TarInfo, tarfile.TarFile]]:
            with tarfile.open(layer() if callable(layer) else layer) as tar:  # gzip detected; members streamed
                for member in tar:
                    yield member, tar
        return read

    for path, (member, tar) in final([members(layer) for layer in layers], lambda e: e[0].name, lambda e: e[0].isdir()):
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
