import io
import tarfile
from pathlib import Path

import pytest

from aegis_plugin.core.oci.flatten import FlattenError, final_entries


def layer(path: Path, entries: list) -> str:
    """A plain-tar layer of (name, content) files, (name, None) directories."""
    with tarfile.open(path, "w") as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return str(path)


def final(layers: list) -> dict:
    return {path: (tar.extractfile(member).read() if member.isfile() else None)
            for path, member, tar in final_entries(layers)}


def test_the_highest_layer_decides_and_whiteouts_hide_only_what_is_below(tmp_path: Path) -> None:
    layers = [
        layer(tmp_path / "0", [("app/", None), ("app/model/", None), ("app/model/w", b"old"), ("app/model/card", b"c"),
                               ("etc/motd", b"m"), ("opt/a/b", b"b"), ("srv/x", b"x")]),
        layer(tmp_path / "1", [("app/model/w", b"new"), ("etc/.wh.motd", b""), ("opt/.wh..wh..opq", b""),
                               ("opt/kept", b"k"), ("srv", b"now a file")]),
        layer(tmp_path / "2", [("etc/motd", b"again"), ("etc/.wh.motd", b""),  # its own file survives its whiteout
                               ("lib", b"a file below"), ("var/log/x", b"x")]),
        layer(tmp_path / "3", [("lib/x", b"a directory above"), ("var/", None), ("./dot", b"d"), ("/abs", b"a")]),
    ]
    assert final(layers) == {
        "/app": None, "/app/model": None, "/app/model/w": b"new", "/app/model/card": b"c", "/etc/motd": b"again",
        "/opt/kept": b"k", "/srv": b"now a file", "/lib/x": b"a directory above", "/var": None, "/var/log/x": b"x",
        "/dot": b"d", "/abs": b"a",
    }


def test_layers_are_opened_top_first_and_only_when_reached(tmp_path: Path) -> None:
    opened = []

    def lazily(name: str, entries: list):
        return lambda: (opened.append(name), layer(tmp_path / name, entries))[1]

    entries = final_entries([lazily("base", [("a", b"1")]), lazily("top", [("b", b"2")])])
    assert next(entries)[0] == "/b" and opened == ["top"]
    assert [path for path, _, _ in entries] == ["/a"] and opened == ["top", "base"]


def test_within_a_layer_entries_apply_in_archive_order(tmp_path: Path) -> None:
    lower = layer(tmp_path / "0", [("keep", b"lower"), ("d/", None), ("d/x", b"x")])
    upper = layer(tmp_path / "1", [("f", b"first"), ("f", b"last"),  # the last entry of a path wins
                                   ("e/", None), ("e/gone", b"g"), ("e", b"a file now"),  # and takes what was below
                                   ("d", b"hides the lower directory")])
    assert final([lower, upper]) == {"/f": b"last", "/e": b"a file now", "/d": b"hides the lower directory",
                                     "/keep": b"lower"}


@pytest.mark.parametrize("entries, message", [
    ([("f", b"file"), ("f/g", b"below a file")], r"'f/g': /f is not a directory in its own layer"),
    ([("a/../../x", b"x")], r"'a/\.\./\.\./x': path contains '\.\.'"),
    ([("etc/.wh..", b"")], r"'etc/\.wh\.\.': invalid whiteout"),
])
def test_invalid_changesets_are_refused(tmp_path: Path, entries: list, message: str) -> None:
    with pytest.raises(FlattenError, match=message):
        final([layer(tmp_path / "0", entries)])


def test_a_stream_layer_is_verified_once_listed_and_closed(tmp_path: Path) -> None:
    events = []

    class Stream(io.BytesIO):
        def verify(self) -> None:
            events.append("verified")

        def close(self) -> None:
            events.append("closed")
            super().close()

    data = Path(layer(tmp_path / "0", [("a", b"1"), ("b", b"2")])).read_bytes()
    entries = final_entries([lambda: Stream(data)])
    path, member, tar = next(entries)
    assert (path, events) == ("/a", ["verified"])
    assert tar.extractfile(member).read() == b"1"
    assert [p for p, _, _ in entries] == ["/b"] and events == ["verified", "closed"]


def test_while_listing_reads_each_member_as_the_listing_reaches_it(tmp_path: Path) -> None:
    seen = []
    lower = layer(tmp_path / "0", [("a", b"lower a"), ("b", b"b")])
    upper = layer(tmp_path / "1", [("a", b"upper a")])

    def read(member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        seen.append((member.name, tar.extractfile(member).read()))

    entries = final_entries([lower, upper], read)
    assert [path for path, _, _ in entries] == ["/a", "/b"]
    assert seen == [("a", b"upper a"), ("a", b"lower a"), ("b", b"b")]  # top layer first, hidden files too
