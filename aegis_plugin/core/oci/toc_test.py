from __future__ import annotations

import json

import pytest

from aegis_plugin.core.oci.layer import LayerEntry, write_layer
from aegis_plugin.core.oci.toc import TocEntry, TocError, is_bookkeeping, read_toc, write_toc


def test_a_layer_writes_its_entries_in_archive_order_with_the_bookkeeping_content(tmp_path) -> None:
    record = tmp_path / "RECORD"
    record.write_bytes(b"demo/__init__.py,,\n")
    info = write_layer([
        LayerEntry("/app/site-packages/demo/__init__.py", "file", 0o644, data=b""),
        LayerEntry("/app/site-packages/demo-1.0.dist-info/RECORD", "file", 0o644, source=str(record)),
        LayerEntry("/var/lib/dpkg/status.d/libfoo", "file", 0o644, data=b"Package: libfoo\n"),
        LayerEntry("/app/link", "symlink", 0o777, linkname="site-packages"),
    ], tmp_path / "layer.tar.gz", 0)
    write_toc(tmp_path / "toc.json", info.diff_id, info.toc)
    entries = read_toc(tmp_path / "toc.json")
    assert entries == list(info.toc)
    by_path = {e.path: e for e in entries}
    assert by_path["/app/site-packages/demo-1.0.dist-info/RECORD"].data == b"demo/__init__.py,,\n"
    assert by_path["/var/lib/dpkg/status.d/libfoo"].data == b"Package: libfoo\n"
    assert by_path["/app/site-packages/demo/__init__.py"].data is None  # only bookkeeping content is kept
    assert by_path["/app/link"] == TocEntry("/app/link", "symlink", "site-packages")
    assert by_path["/app"].kind == "dir"  # parents the layer adds are listed too
    assert json.loads((tmp_path / "toc.json").read_text())["diff_id"] == info.diff_id


@pytest.mark.parametrize("path, expected", [
    ("/var/lib/dpkg/status.d/libc6", True),
    ("/var/lib/dpkg/status.d/libc6.md5sums", True),
    ("/app/site-packages/numpy-2.0.dist-info/RECORD", True),
    ("/app/site-packages/numpy-2.0.dist-info/METADATA", False),
    ("/app/site-packages/numpy/RECORD", False),
    ("/var/lib/dpkg/status", False),
])
def test_bookkeeping_files(path: str, expected: bool) -> None:
    assert is_bookkeeping(path) is expected


def test_a_broken_toc_is_one_error(tmp_path) -> None:
    (tmp_path / "toc.json").write_text("[")
    with pytest.raises(TocError, match="not a layer table of contents"):
        read_toc(tmp_path / "toc.json")
