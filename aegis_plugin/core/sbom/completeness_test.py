from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from aegis_plugin.core.sbom.completeness import (
    CompletenessError,
    Report,
    attribute,
    check,
    filesystem,
)
from aegis_plugin.core.sbom.testutil import write_layer

SITE = "/app/site-packages"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


SO = b"\x7fELF libfoo"
COPYRIGHT = b"copyright"
CHANGELOG = b"changelog"
STATUS = (
    "Package: libfoo\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n"
    f"Conffiles:\n /etc/foo.conf {md5(b'conf')}\nDescription: foo\n multi-line description\n"
).encode()
MD5SUMS = (
    f"{md5(SO)}  lib/x86_64-linux-gnu/libfoo.so.1\n"
    f"{md5(COPYRIGHT)}  usr/share/doc/libfoo/copyright\n"
    f"{md5(CHANGELOG)}  usr/share/doc/libfoo/changelog.gz\n"
).encode()
RECORD = (
    "demo/__init__.py,sha256=abc,1\n"
    "demo/core.py,sha256=def,4\n"
    '"demo/a,b.txt",sha256=ghi,3\n'
    "demo/missing.py,sha256=jkl,5\n"
    "demo-1.0.dist-info/METADATA,sha256=mno,6\n"
    "demo-1.0.dist-info/RECORD,,\n"
).encode()

BASE = [
    ("dir", "etc/"),
    ("file", "etc/passwd", b"root:x:0:0::/root:/sbin/nologin\n"),
    ("file", "etc/foo.conf", b"conf"),
    ("file", "etc/old.txt", b"gone"),
    ("dir", "dev/"),
    ("chr", "dev/null"),
    ("dir", "usr/lib/x86_64-linux-gnu/"),
    ("sym", "lib", "usr/lib"),  # merged /usr: the package lists lib/..., the file is in usr/lib/...
    ("file", "usr/lib/x86_64-linux-gnu/libfoo.so.1", SO),
    ("sym", "usr/lib/x86_64-linux-gnu/libfoo.so", "libfoo.so.1"),
    ("file", "usr/share/doc/libfoo/copyright", COPYRIGHT),
    ("file", "usr/share/doc/libfoo/changelog.gz", CHANGELOG),
    ("dir", "var/lib/dpkg/status.d/"),
    ("file", "var/lib/dpkg/status.d/libfoo", STATUS),
    ("file", "var/lib/dpkg/status.d/libfoo.md5sums", MD5SUMS),
    ("dir", "opt/cache/"),
    ("file", "opt/cache/a", b"a"),
    ("file", "opt/cache/b", b"b"),
    ("dir", "srv/data/"),
    ("file", "srv/data/x", b"x"),
    ("file", "usr/local/bin/tool", b"#!/bin/sh\n"),
]
TOP = [
    ("file", "etc/.wh.old.txt", b""),
    ("file", "usr/share/doc/libfoo/.wh.changelog.gz", b""),
    ("file", "opt/cache/.wh..wh..opq", b""),
    ("file", "opt/cache/c", b"c"),  # same layer as the opaque whiteout: survives
    ("file", "srv/data", b"now a file"),  # replaces the directory and its contents
    ("dir", "app/site-packages/demo-1.0.dist-info/"),
    ("file", "app/site-packages/demo-1.0.dist-info/METADATA", b"Name: demo\n"),
    ("file", "app/site-packages/demo-1.0.dist-info/INSTALLER", b"pex\n"),  # not in RECORD, still demo's
    ("file", "app/site-packages/demo-1.0.dist-info/RECORD", RECORD),
    ("file", "app/site-packages/demo/__init__.py", b"\n"),
    ("file", "app/site-packages/demo/core.py", b"x=1\n"),
    ("file", "app/site-packages/demo/a,b.txt", b"a,b"),
    ("file", "app/model/weights.safetensors", b"weights"),
    ("file", "app/model/vocab.json", b"{}"),
    ("link", "app/model/tokenizer.json", "app/model/vocab.json"),  # a hardlink counts as a file
    ("file", "app/server/handler.py", b"print()\n"),
]
COMPONENTS = [
    {
        "component": "model:fraud-detector",
        "files": ["/app/model/weights.safetensors", "/app/model/vocab.json", "/app/model/tokenizer.json"],
    },
    {"component": "app", "files": ["/app/server/handler.py"]},
]
ALLOW = ["/etc/passwd", "/opt/cache/*"]


@pytest.fixture
def layers(tmp_path: Path) -> list[str]:
    return [write_layer(tmp_path / "base", BASE), write_layer(tmp_path / "top", TOP)]


def test_counts(layers: list[str]) -> None:
    report = attribute(layers, SITE, COMPONENTS, ALLOW)
    assert report.by_type == {"deb": 5, "pypi": 6, "model": 3, "app": 1, "allowed": 2}
    assert report.total == 19
    assert report.attributed == 15
    assert report.attributed_share == pytest.approx(15 / 19)
    assert report.unattributed == ["/srv/data", "/usr/local/bin/tool"]
    assert report.by_component == {"deb:libfoo": 5, "pypi:demo": 6, "model:fraud-detector": 3, "app": 1}
    assert report.overlaps == []
    assert report.unrecorded == []


def test_missing_listed_files_are_reported_not_counted(layers: list[str]) -> None:
    report = attribute(layers, SITE, COMPONENTS + [{"component": "app", "files": ["/app/server/gone.py"]}], ALLOW)
    assert report.missing == [
        ("app", "/app/server/gone.py"),
        ("deb:libfoo", "/usr/share/doc/libfoo/changelog.gz"),  # whited out by the top layer
        ("pypi:demo", "/app/site-packages/demo/missing.py"),
    ]
    check(report, max_unattributed=2)  # missing files never fail the check


def test_whiteouts(layers: list[str]) -> None:
    fs = filesystem(layers)
    files = {p for p, e in fs.items() if e.kind == "file"}
    for gone in ("/etc/old.txt", "/opt/cache/a", "/opt/cache/b", "/srv/data/x", "/usr/share/doc/libfoo/changelog.gz"):
        assert gone not in fs
    assert {"/opt/cache/c", "/srv/data", "/etc/foo.conf"} <= files
    assert fs["/opt/cache"].kind == "dir"
    assert fs["/lib"].kind == "symlink" and fs["/dev/null"].kind == "other"
    assert not any(".wh." in p for p in fs)


def test_whiteout_then_re_add_in_a_later_layer(tmp_path: Path) -> None:
    layers = [
        write_layer(tmp_path / "1", [("file", "etc/motd", b"1"), ("file", "etc/keep", b"k")]),
        write_layer(tmp_path / "2", [("file", "etc/.wh.motd", b""), ("file", "etc/.wh.keep", b"")]),
        write_layer(tmp_path / "3", [("file", "etc/motd", b"3")]),
        # A whiteout applies to the layers below only: the same layer may add the name back.
        write_layer(tmp_path / "4", [("file", "etc/.wh.motd", b""), ("file", "etc/motd", b"4")]),
        write_layer(tmp_path / "5", [("dir", "etc/"), ("file", "./etc/new", b"n")]),
    ]
    fs = filesystem(layers)
    assert sorted(p for p, e in fs.items() if e.kind == "file") == ["/etc/motd", "/etc/new"]
    report = attribute(layers, SITE, [], [])
    assert report.total == 2 and report.unattributed == ["/etc/motd", "/etc/new"]


def test_whiteout_of_a_directory_removes_its_contents(tmp_path: Path) -> None:
    layers = [
        write_layer(tmp_path / "1", [("dir", "a/"), ("file", "a/b/c", b"c"), ("file", "ab", b"ab")]),
        write_layer(tmp_path / "2", [("file", ".wh.a", b"")]),
    ]
    assert sorted(filesystem(layers)) == ["/ab"]


def test_a_whiteout_naming_no_entry_is_refused_as_the_unpacker_refuses_it(tmp_path: Path) -> None:
    layers = [write_layer(tmp_path / "1", [("file", "etc/motd", b"m")]),
              write_layer(tmp_path / "2", [("file", "etc/.wh..", b"")])]
    with pytest.raises(CompletenessError, match=r"'etc/\.wh\.\.': invalid whiteout '\.wh\.\.': it names no entry"):
        filesystem(layers)


def test_adding_one_stray_file_fails_check(tmp_path: Path, layers: list[str]) -> None:
    allow = ALLOW + ["/srv/data", "/usr/local/bin/*"]
    report = attribute(layers, SITE, COMPONENTS, allow)
    check(report)
    assert report.unattributed == []

    stray = write_layer(tmp_path / "stray", [("file", "app/server/debug_dump.py", b"oops")])
    report = attribute(layers + [stray], SITE, COMPONENTS, allow)
    with pytest.raises(CompletenessError) as error:
        check(report)
    assert str(error.value) == "SBOM does not account for 1 of 20 files in the image: /app/server/debug_dump.py"


def test_check_message_lists_the_first_few(layers: list[str]) -> None:
    report = attribute(layers, SITE, [], [])
    assert len(report.unattributed) == 8
    with pytest.raises(CompletenessError) as error:
        check(report, show=3)
    assert str(error.value) == (
        "SBOM does not account for 8 of 19 files in the image: "
        "/app/model/tokenizer.json, /app/model/vocab.json, /app/model/weights.safetensors and 5 more"
    )
    with pytest.raises(CompletenessError, match=r"^SBOM does not account for 8 of 19 files in the image \(at most 7"):
        check(report, max_unattributed=7)
    check(report, max_unattributed=8)


def test_first_claim_wins_and_overlaps_are_listed(layers: list[str]) -> None:
    components = COMPONENTS + [{"component": "app", "files": ["/etc/foo.conf", "/app/model/vocab.json"]}]
    report = attribute(layers, SITE, components, ALLOW)
    assert report.by_type["deb"] == 5 and report.by_type["model"] == 3 and report.by_type["app"] == 1
    assert report.overlaps == ["/app/model/vocab.json", "/etc/foo.conf"]


def test_a_distribution_without_record(tmp_path: Path) -> None:
    layers = [
        write_layer(tmp_path / "1", [
            ("dir", "app/site-packages/nor-2.0.dist-info/"),
            ("file", "app/site-packages/nor-2.0.dist-info/METADATA", b"Name: nor\n"),
            ("file", "app/site-packages/nor/__init__.py", b""),
        ])
    ]
    report = attribute(layers, SITE, [], [])
    assert report.by_component == {"pypi:nor": 1}
    assert report.unattributed == ["/app/site-packages/nor/__init__.py"]
    assert report.unrecorded == ["/app/site-packages/nor-2.0.dist-info"]


def test_record_only_counts_under_the_given_site_packages(layers: list[str]) -> None:
    report = attribute(layers, "/usr/lib/python3/dist-packages", COMPONENTS, ALLOW)
    assert report.by_type["pypi"] == 0
    assert "/app/site-packages/demo/core.py" in report.unattributed


def test_uncompressed_layers_are_read(tmp_path: Path) -> None:
    layers = [write_layer(tmp_path / "base", BASE, compress=False), write_layer(tmp_path / "top", TOP)]
    assert attribute(layers, SITE, COMPONENTS, ALLOW).by_type["deb"] == 5


def test_not_a_layer(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(CompletenessError, match="not a plain, gzip or zstd tar layer"):
        attribute([str(bad)], SITE, [], [])


def test_to_json_is_deterministic(layers: list[str]) -> None:
    first = attribute(layers, SITE, COMPONENTS, ALLOW).to_json()
    second = attribute(layers, SITE + "/", list(COMPONENTS), list(ALLOW)).to_json()
    assert first == second
    data = json.loads(first)
    assert list(data) == sorted(data)
    assert data["total"] == 19 and data["attributed"] == 15 and data["attributed_share"] == round(15 / 19, 6)
    assert data["by_type"] == {"allowed": 2, "app": 1, "deb": 5, "model": 3, "pypi": 6}
    assert data["missing"][0] == {"component": "deb:libfoo", "path": "/usr/share/doc/libfoo/changelog.gz"}


def test_empty_image() -> None:
    report = attribute([], SITE, [], [])
    assert isinstance(report, Report) and report.total == 0 and report.attributed_share == 1.0
    check(report)


@pytest.mark.parametrize(
    "component", [{"files": []}, {"component": "", "files": []}, {"component": "app", "files": "/x"}]
)
def test_malformed_component(layers: list[str], component: dict) -> None:
    with pytest.raises(CompletenessError, match="a component needs a name and a list of files"):
        attribute(layers, SITE, [component], [])


def test_a_layer_read_from_its_table_of_contents_is_the_layer(tmp_path: Path) -> None:
    """The SBOM step reads the toc.json a layer step wrote instead of its blob: same filesystem, same report."""
    from aegis_plugin.core.oci.layer import LayerEntry
    from aegis_plugin.core.oci.layer import write_layer as write_oci_layer
    from aegis_plugin.core.oci.toc import write_toc

    blobs, tocs = [], []
    for name, spec in (("base", BASE), ("top", TOP)):
        entries = []
        for kind, member, *rest in spec:
            path = "/" + member.rstrip("/")
            if kind == "file":
                entries.append(LayerEntry(path, "file", 0o644, data=rest[0]))
            elif kind == "dir":
                entries.append(LayerEntry(path, "dir", 0o755))
            elif kind == "sym":
                entries.append(LayerEntry(path, "symlink", 0o777, linkname=rest[0]))
            elif kind == "link":
                entries.append(LayerEntry(path, "hardlink", 0o644, linkname="/" + rest[0]))
        info = write_oci_layer(entries, tmp_path / f"{name}.tar.gz", 0)
        write_toc(tmp_path / f"{name}.toc.json", info.diff_id, info.toc)
        blobs.append(str(tmp_path / f"{name}.tar.gz"))
        tocs.append(str(tmp_path / f"{name}.toc.json"))
    from_blobs = attribute(blobs, SITE, COMPONENTS, ALLOW)
    from_tocs = attribute(tocs, SITE, COMPONENTS, ALLOW)
    assert from_tocs == from_blobs
    assert from_tocs.by_type["deb"] == 5 and from_tocs.by_type["pypi"] == 6


def test_not_a_table_of_contents(tmp_path: Path) -> None:
    bad = tmp_path / "toc.json"
    bad.write_text('{"entries": 3}')
    with pytest.raises(CompletenessError, match="not a layer table of contents"):
        attribute([str(bad)], SITE, [], [])
