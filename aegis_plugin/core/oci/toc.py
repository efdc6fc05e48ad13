"""A layer's table of contents (`toc.json`): every entry of its tar in archive order, written beside the blob
by the step that wrote the blob, with the content of the few small files that say who owns the others
(package bookkeeping). Later steps (the SBOM's completeness check) learn what a layer holds from it without
decompressing gigabytes of CUDA libraries or seeking through weights.

    {"diff_id": "sha256:...", "entries": [[path, kind, linkname or null], ...], "contents": {path: base64}}

Paths are absolute image paths; kinds are those of `layer.LayerEntry` ("file", "dir", "symlink", "hardlink").
"""
from __future__ import annotations

import base64
import json
import os
import posixpath
from dataclasses import dataclass
from typing import Iterable, List, Optional, Union

from aegis_plugin.core.errors import AegisError

DPKG_STATUS_DIR = "/var/lib/dpkg/status.d"  # a distroless-style dpkg database: one record file per package


@dataclass(frozen=True)
class TocEntry:
    path: str
    kind: str
    linkname: Optional[str] = None
    data: Optional[bytes] = None  # bookkeeping files only


class TocError(AegisError, ValueError):
    pass


def is_bookkeeping(path: str) -> bool:
    """dpkg records and Python `*.dist-info/RECORD` files: the lists of which package owns which file."""
    parent = posixpath.dirname(path)
    return parent == DPKG_STATUS_DIR or (posixpath.basename(path) == "RECORD" and parent.endswith(".dist-info"))


def write_toc(path: Union[str, os.PathLike[str]], diff_id: str, entries: Iterable[TocEntry]) -> None:
    listing, contents = [], {}
    for entry in entries:
        listing.append([entry.path, entry.kind, entry.linkname])
        if entry.data is not None:
            contents[entry.path] = base64.b64encode(entry.data).decode()
    with open(path, "w") as f:
        json.dump({"diff_id": diff_id, "entries": listing, "contents": contents}, f, sort_keys=True,
                  separators=(",", ":"))


def read_toc(path: Union[str, os.PathLike[str]]) -> List[TocEntry]:
    try:
        with open(path) as f:
            toc = json.load(f)
        contents = toc["contents"]
        return [TocEntry(p, kind, link, base64.b64decode(contents[p]) if p in contents else None)
                for p, kind, link in toc["entries"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TocError(f"{path}: not a layer table of contents ({e})") from e
