"""The unpacker writes exactly the final filesystem the flattener reads (`core/oci/flatten.py`, the SBOM's and
the publisher's view), on the escape test's generated layers: same paths, same kinds, same file contents."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from aegis_plugin.core.contract.unpack import UnpackError, unpack
from aegis_plugin.core.contract.unpack_escape_test import random_cases, substitute
from aegis_plugin.core.contract.unpack_test import Layout
from aegis_plugin.core.oci import flatten


def written(rootfs: Path) -> dict[str, tuple]:
    result = {}
    for directory, dirs, files in os.walk(rootfs):
        for name in dirs + files:
            path = Path(directory, name)
            mode = path.lstat().st_mode
            kind = ("dir" if stat.S_ISDIR(mode) else "symlink" if stat.S_ISLNK(mode) else "fifo" if stat.S_ISFIFO(mode)
                    else "file")
            content = path.read_bytes() if kind == "file" else os.readlink(path) if kind == "symlink" else None
            result["/" + str(path.relative_to(rootfs))] = (kind, content)
    return result


def flattened(layout: Layout, image: dict) -> dict[str, tuple]:
    result = {}
    for path, member, tar in flatten.final_entries([str(layout.path_of(d["digest"])) for d in image["layers"]]):
        if member.ischr() or member.isblk():
            continue
        while member.islnk():  # another name for an earlier member of its layer, which a runtime links
            members = tar.getmembers()
            target = os.path.normpath("/" + member.linkname)
            earlier = [m for m in members[: members.index(member)] if os.path.normpath("/" + m.name) == target]
            if not earlier:
                break
            member = earlier[-1]
        if member.islnk():
            result[path] = ("no target", None)  # the unpacker refuses it
            continue
        kind = ("dir" if member.isdir() else "symlink" if member.issym() else "fifo" if member.isfifo() else "file")
        content = member.linkname if kind == "symlink" else None
        if kind == "file":
            content = tar.extractfile(member).read()  # type: ignore[union-attr]
        result[path] = (kind, content)
    for path in list(result):  # a directory with entries but none of its own is made, as a runtime makes it
        while (path := os.path.dirname(path)) != "/":
            result.setdefault(path, ("dir", None))
    return result


def test_the_unpacker_writes_what_the_flattener_reads(tmp_path: Path) -> None:
    agreed = 0
    for i, layers in enumerate(random_cases(300, seed=20261202)):
        case = tmp_path / f"case{i}"
        layout = Layout(case / "layout")
        image = layout.add_image(substitute(layers, case / "host"))
        try:
            expected = flattened(layout, image)
        except flatten.FlattenError:
            expected = None
        try:
            unpack(layout.root, case / "rootfs")
        except UnpackError as e:  # beyond the flattener's refusals, only a hardlink with no file to name
            assert expected is None or "hardlink" in str(e), f"case {i}: the flattener reads it, the unpacker: {e}"
            continue
        assert expected is not None, f"case {i}: the flattener refused it, the unpacker did not"
        assert written(case / "rootfs") == expected, f"case {i}: {layers!r}"
        agreed += 1
    assert agreed >= 100
