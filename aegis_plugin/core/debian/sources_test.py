from __future__ import annotations

from pathlib import Path

from aegis_plugin.core.debian.sources import (
    AptSource,
    find_source,
    mirror_for_suite,
    parse_deb822_sources,
    parse_sources_list,
    read_apt_sources,
)

DEB822 = """\
Types: deb
URIs: http://mirror.example.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example.invalid/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://disabled.example.invalid/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: http://security.example.invalid/debian-security
Suites: bookworm-security
Components: main contrib
"""


def test_deb822() -> None:
    sources = parse_deb822_sources(DEB822)
    assert [s.uri for s in sources] == [
        "http://mirror.example.invalid/debian",
        "http://security.example.invalid/debian-security",
    ]
    assert sources[0].suites == ("bookworm", "bookworm-updates")
    assert sources[0].signed_by == "/usr/share/keyrings/debian-archive-keyring.gpg"
    assert find_source(sources, "bookworm-updates") == sources[0]
    assert find_source(sources, "bookworm-security") == sources[1]
    assert find_source(sources, "trixie") is None
    assert find_source(sources, "bookworm", component="non-free") is None


def test_one_line_format() -> None:
    text = (
        "# a comment\n"
        "deb-src http://src.example.invalid/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example.invalid/debian bookworm main contrib  # tail\n"
        "deb http://two.example.invalid/debian bookworm-security main\n"
    )
    assert parse_sources_list(text) == [
        AptSource("http://one.example.invalid/debian", ("bookworm",), ("main", "contrib"), "/k.gpg"),
        AptSource("http://two.example.invalid/debian", ("bookworm-security",), ("main",), None),
    ]


def test_read_order_and_ignored_files(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://first.example.invalid/debian bookworm main\n")
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "b.sources").write_text(DEB822)
    (parts / "a.list").write_text("deb http://second.example.invalid/debian bookworm main\n")
    (parts / "c.list.disabled").write_text("deb http://never.example.invalid/debian bookworm main\n")
    uris = [s.uri for s in read_apt_sources(tmp_path)]
    assert uris[:3] == [
        "http://first.example.invalid/debian",
        "http://second.example.invalid/debian",
        "http://mirror.example.invalid/debian",
    ]
    assert "http://never.example.invalid/debian" not in uris
    assert read_apt_sources(tmp_path / "missing") == []


def test_mirror_for_suite() -> None:
    sources = parse_sources_list(
        "deb http://main.example.invalid/debian bookworm main\n"
        "deb http://sec.example.invalid/debian-security bookworm-security main\n"
    )
    assert mirror_for_suite(sources, "bookworm") == "http://main.example.invalid/debian"
    assert mirror_for_suite(sources, "bookworm-updates") == "http://main.example.invalid/debian"
    assert mirror_for_suite(sources, "bookworm-security") == "http://sec.example.invalid/debian-security"
    assert mirror_for_suite(sources, "trixie-security") is None
