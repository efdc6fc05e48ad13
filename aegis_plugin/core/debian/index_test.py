from __future__ import annotations

import pytest

from aegis_plugin.core.debian.errors import DebianError
from aegis_plugin.core.debian.index import (
    Relation,
    parse_packages,
    parse_relations,
    select_newest,
    unsatisfied,
    unused_ignores,
)

SHA = "0" * 64


def para(name: str, version: str, arch: str = "amd64", **fields: str) -> str:
    text = f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\n"
    text += f"Filename: pool/main/{name[0]}/{name}/{name}_{version}_{arch}.deb\nSize: 10\nSHA256: {SHA}\n"
    text += "".join(f"{k.replace('_', '-')}: {v}\n" for k, v in fields.items())
    return text + "Description: x\n long\n"


def index(*paragraphs: str, suite: str = "bookworm"):
    return parse_packages("\n".join(paragraphs), suite, "amd64")


def test_parse_relations() -> None:
    assert parse_relations("a (>= 1.0), b:any | c (<< 2) [amd64], d <!nocheck>") == [
        [Relation("a", ">=", "1.0")],
        [Relation("b"), Relation("c", "<<", "2")],
        [Relation("d")],
    ]
    assert parse_relations("") == []
    with pytest.raises(DebianError):
        parse_relations("a (>= )")


def test_parse_packages_fields_and_arch_filter() -> None:
    entries = index(
        para("libc6", "2.36-9", Source="glibc", Installed_Size="12986"),
        para("libfoo", "1.0-1+b2", Source="foo (1.0-1)"),
        para("media-types", "10.0.0", arch="all"),
        para("libarm", "1", arch="arm64"),
    )
    packages = {e.package.name: e.package for e in entries}
    assert sorted(packages) == ["libc6", "libfoo", "media-types"]
    assert (packages["libc6"].source, packages["libc6"].source_version) == ("glibc", "2.36-9")
    assert (packages["libfoo"].source, packages["libfoo"].source_version) == ("foo", "1.0-1")
    assert (packages["media-types"].source, packages["media-types"].architecture) == ("media-types", "all")
    assert entries[0].installed_size_kib == 12986


def test_newest_wins_and_ties_prefer_the_first_suite() -> None:
    main = index(para("a", "1.0-1"), para("b", "2.0"))
    security = index(para("a", "1.0-1+deb12u1"), para("b", "2.0"), suite="bookworm-security")
    selected = select_newest(["a", "b"], [main, security])
    assert (selected["a"].package.version, selected["a"].package.suite) == (
        "1.0-1+deb12u1",
        "bookworm-security",
    )
    assert selected["b"].package.suite == "bookworm"
    with pytest.raises(DebianError, match="not in any reachable suite: zz"):
        select_newest(["a", "zz"], [main])


def test_dependency_check() -> None:
    entries = index(
        para(
            "app",
            "1",
            Pre_Depends="libc6 (>= 2.34)",
            Depends="media-types | mime-support, virt, libx (= 2), debconf",
        ),
        para("libc6", "2.36"),
        para("mime-support", "3"),
        para("provider", "1", Provides="virt, libx (= 2)"),
    )
    selected = {e.package.name: e for e in entries}
    assert unsatisfied(selected, ignored=["debconf"]) == []
    assert unsatisfied(selected) == ["app Depends: debconf"]
    del selected["provider"]
    assert unsatisfied(selected, ignored=["debconf"]) == ["app Depends: virt", "app Depends: libx (= 2)"]


def test_versions_are_checked() -> None:
    entries = index(
        para("app", "1", Depends="libc6 (>= 2.38), prov (>= 2)"),
        para("libc6", "2.36"),
        para("p", "1", Provides="prov"),
    )
    selected = {e.package.name: e for e in entries}
    # an unversioned Provides does not satisfy a versioned dependency
    assert unsatisfied(selected) == ["app Depends: libc6 (>= 2.38)", "app Depends: prov (>= 2)"]


def test_unused_ignores() -> None:
    selected = {e.package.name: e for e in index(para("a", "1", Depends="debconf"))}
    assert unused_ignores(selected, ["debconf", "perl"]) == ["perl"]
