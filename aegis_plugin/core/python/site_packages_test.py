from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import pytest

from aegis_plugin.core.python.site_packages import (
    Distribution,
    SitePackagesError,
    build_site_packages,
    Parties,
    declared_license,
    declared_parties,
    distributions,
    install_wheels,
    site_packages_entries,
)
from aegis_plugin.core.python.wheels import WheelError, install
from aegis_plugin.testutil.wheels import make_wheel


def make_installed(root: Path, wheels: dict[str, dict[str, bytes]]) -> Path:
    """Installed wheels: each an installed tree under .deps/<wheel file name>/."""
    for wheel, files in wheels.items():
        base = root / ".deps" / wheel
        (base / ".layout.json").parent.mkdir(parents=True, exist_ok=True)
        (base / ".layout.json").write_text("{}")
        for rel, data in files.items():
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_bytes(data)
    return root


def test_distributions_and_entries_with_a_generated_record(tmp_path) -> None:
    pex = make_installed(tmp_path / "pex", {
        "Foo_Bar-1.2.0-py3-none-any.whl": {
            "foo_bar/__init__.py": b"X = 1\n",
            "foo_bar-1.2.0.dist-info/METADATA": b"Name: Foo_Bar\nVersion: 1.2.0\n",
            "foo_bar/__pycache__/x.cpython-311.pyc": b"junk",
        },
    })
    assert [(d.name, d.version) for d in distributions(str(pex))] == [("foo-bar", "1.2.0")]
    entries = {e.path: e for e in site_packages_entries(str(pex), "/app/site-packages")}
    assert sorted(entries) == [
        "/app/site-packages/foo_bar-1.2.0.dist-info/METADATA",
        "/app/site-packages/foo_bar-1.2.0.dist-info/RECORD",
        "/app/site-packages/foo_bar/__init__.py",
    ]
    assert all(e.mode == 0o644 for e in entries.values())
    record = entries["/app/site-packages/foo_bar-1.2.0.dist-info/RECORD"].data.decode().splitlines()
    expected = base64.urlsafe_b64encode(hashlib.sha256(b"X = 1\n").digest()).rstrip(b"=").decode()
    assert f"foo_bar/__init__.py,sha256={expected},6" in record
    assert record[-1] == "foo_bar-1.2.0.dist-info/RECORD,,"
    assert not any(".layout.json" in line or ".pyc" in line for line in record)


def test_an_existing_record_is_kept(tmp_path) -> None:
    pex = make_installed(tmp_path / "pex", {
        "a-1.0-py3-none-any.whl": {"a.py": b"", "a-1.0.dist-info/RECORD": b"a.py,,\n"},
    })
    entries = {e.path: e for e in site_packages_entries(str(pex), "/sp")}
    assert entries["/sp/a-1.0.dist-info/RECORD"].source.endswith("RECORD")


def test_two_wheels_installing_one_file(tmp_path) -> None:
    pex = make_installed(tmp_path / "pex", {
        "a-1.0-py3-none-any.whl": {"shared.py": b"1"},
        "b-1.0-py3-none-any.whl": {"shared.py": b"2"},
    })
    with pytest.raises(SitePackagesError, match="shared.py is installed by both a-1.0"):
        site_packages_entries(str(pex), "/sp")


def test_two_wheels_installing_the_same_bytes_share_the_file(tmp_path) -> None:
    """Namespace packages: every nvidia-*-cu12 wheel installs the same empty nvidia/__init__.py."""
    pex = make_installed(tmp_path / "pex", {
        "nvidia_a-1.0-py3-none-any.whl": {"nvidia/__init__.py": b"", "nvidia/a/lib.so": b"a"},
        "nvidia_b-1.0-py3-none-any.whl": {"nvidia/__init__.py": b"", "nvidia/b/lib.so": b"b"},
    })
    site = build_site_packages(str(pex), "/sp")
    paths = [e.path for e in site.entries]
    assert paths.count("/sp/nvidia/__init__.py") == 1
    assert {"/sp/nvidia/a/lib.so", "/sp/nvidia/b/lib.so"} <= set(paths)
    # Both wheels own it (each one's RECORD lists it), so the SBOM counts it for both.
    assert "/sp/nvidia/__init__.py" in site.files["nvidia_a-1.0-py3-none-any.whl"]
    assert "/sp/nvidia/__init__.py" in site.files["nvidia_b-1.0-py3-none-any.whl"]


def test_not_a_loose_pex(tmp_path) -> None:
    with pytest.raises(SitePackagesError, match="holds no installed wheels"):
        distributions(str(tmp_path))


def test_each_wheel_reports_its_files_including_the_generated_record(tmp_path) -> None:
    pex = make_installed(tmp_path / "pex", {
        "a-1.0-py3-none-any.whl": {"a.py": b"", "a-1.0.dist-info/METADATA": b"Name: a\n"},
        "b-2.0-py3-none-any.whl": {"b/__init__.py": b"", "b-2.0.dist-info/RECORD": b"b/__init__.py,,\n"},
    })
    installed = build_site_packages(str(pex), "/sp")
    assert installed.files == {
        "a-1.0-py3-none-any.whl": ["/sp/a-1.0.dist-info/METADATA", "/sp/a-1.0.dist-info/RECORD", "/sp/a.py"],
        "b-2.0-py3-none-any.whl": ["/sp/b-2.0.dist-info/RECORD", "/sp/b/__init__.py"],
    }
    assert sorted(p for files in installed.files.values() for p in files) == sorted(
        e.path for e in installed.entries
    )


@pytest.mark.parametrize(
    "metadata, expected",
    [
        (b"License-Expression: MIT OR Apache-2.0\nLicense: ignored\n", "MIT OR Apache-2.0"),
        (b"License: BSD-3-Clause\n", "BSD-3-Clause"),
        (
            b"License: Copyright (c) someone\n        the whole text\n"
            b"Classifier: License :: OSI Approved :: MIT License\n"
            b"Classifier: License :: OSI Approved :: Apache Software License\n"
            b"Classifier: Programming Language :: Python\n",
            "Apache Software License AND MIT License",
        ),
        (b"License: UNKNOWN\n", None),
        (b"Name: x\n", None),
    ],
)
def test_declared_license(tmp_path, metadata: bytes, expected) -> None:
    pex = make_installed(tmp_path / "pex", {"x-1-py3-none-any.whl": {"x-1.dist-info/METADATA": metadata}})
    assert declared_license(str(pex), Distribution("x", "1", "x-1-py3-none-any.whl")) == expected


@pytest.mark.parametrize(
    "metadata, authors, maintainers",
    [
        # A name and a bare address make one entry; core metadata 2.1+ address lists keep their order.
        (b"Author: Nathaniel J. Smith\nAuthor-email: njs@example.org\n", ("Nathaniel J. Smith <njs@example.org>",), ()),
        ('Author-email: "Hugging Face, Inc." <hf@example.org>, Luc <luc@example.org>\n'
         "Maintainer-email: Pallets <contact@example.org>\n".encode(),
         ("Hugging Face, Inc. <hf@example.org>", "Luc <luc@example.org>"), ("Pallets <contact@example.org>",)),
        ("Author: Travis E. Oliphant et al.\nMaintainer-Email: NumPy Developers <np@example.org>\n".encode(),
         ("Travis E. Oliphant et al.",), ("NumPy Developers <np@example.org>",)),
        ("Author-email: Alex Grönholm <alex@example.org>\n".encode(), ("Alex Grönholm <alex@example.org>",), ()),
        (b"Author: UNKNOWN\nName: x\n", (), ()),
    ],
)
def test_declared_parties(tmp_path, metadata: bytes, authors, maintainers) -> None:
    pex = make_installed(tmp_path / "pex", {"x-1-py3-none-any.whl": {"x-1.dist-info/METADATA": metadata}})
    parties = declared_parties(str(pex), Distribution("x", "1", "x-1-py3-none-any.whl"))
    assert parties == Parties(authors=authors, maintainers=maintainers, copyright=())


def test_copyright_notices_of_license_files(tmp_path) -> None:
    pex = make_installed(tmp_path / "pex", {"x-1-py3-none-any.whl": {
        "x-1.dist-info/METADATA": b"Name: x\n",
        "x-1.dist-info/licenses/LICENSE": b"MIT License\n\nCopyright (c) 2018 Alex\n\nPermission is granted\n",
        "x-1.dist-info/licenses/vendor/zlib/COPYING": "  Copyright © 1995-2013  Jean-loup Gailly\n".encode(),
        "x-1.dist-info/LICENSE.txt": b"Copyright (c) 2018 Alex\nCopyright 2020 Other\n",
        "x-1.dist-info/RECORD": b"Copyright (c) is not read from here\n",
    }})
    assert declared_parties(str(pex), Distribution("x", "1", "x-1-py3-none-any.whl")).copyright == (
        "Copyright (c) 2018 Alex", "Copyright 2020 Other", "Copyright © 1995-2013 Jean-loup Gailly",
    )


def test_copyright_notices_of_text_files_when_license_files_state_none(tmp_path) -> None:
    pex = make_installed(tmp_path / "pex", {"x-1-py3-none-any.whl": {
        "x-1.dist-info/METADATA": b"Name: x\n",
        "x-1.dist-info/licenses/LICENSE": b"Apache License\nVersion 2.0, January 2004\n",
        "x/__init__.py": b"# Copyright 2020 The X Team. All rights reserved.\nCOPYRIGHT = 'copyright 3'\n",
        "x/ext.c": b"/*\n * Copyright (c) 2001 Y */\n",
        "x/_native.so": b"\x7fELF\0\0Copyright 1999 Compiled In\n",
        "x/util.py": b"#   Copyright 2020 The X Team.   All rights reserved.\n",
    }})
    assert declared_parties(str(pex), Distribution("x", "1", "x-1-py3-none-any.whl")).copyright == (
        "Copyright 2020 The X Team. All rights reserved.", "Copyright (c) 2001 Y",
    )


def test_no_copyright_notice_in_any_text_file(tmp_path) -> None:
    pex = make_installed(tmp_path / "pex", {"x-1-py3-none-any.whl": {
        "x-1.dist-info/METADATA": b"Name: x\n", "x/__init__.py": b"'''The copyright holders are named elsewhere.'''\n",
    }})
    assert declared_parties(str(pex), Distribution("x", "1", "x-1-py3-none-any.whl")).copyright == ()


def test_wheels_installed_side_by_side_are_each_as_installed_alone(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    paths = [str(make_wheel(tmp_path, name, "1.0", {f"{name}/__init__.py": name.encode() * size}))
             for name, size in [("small", 1), ("large", 100_000), ("middle", 1_000)]]
    install_wheels(paths, {"large"}, str(tmp_path / "together"))
    for path in paths:
        alone = tmp_path / "alone" / os.path.basename(path)
        install(path, str(alone), requested="large" in path)
        together = tmp_path / "together" / ".deps" / os.path.basename(path)
        assert {p.relative_to(together): p.read_bytes() for p in together.rglob("*") if p.is_file()} == {
            p.relative_to(alone): p.read_bytes() for p in alone.rglob("*") if p.is_file()}


def test_of_several_damaged_wheels_the_first_in_path_order_is_named(tmp_path: Path) -> None:
    paths = []
    for name, size in [("a", 10), ("b", 10_000), ("c", 100_000)]:  # the largest is installed first
        path = tmp_path / f"{name}-1.0-py3-none-any.whl"
        path.write_bytes(b"not a zip" * size)
        paths.append(str(path))
    with pytest.raises(WheelError, match=r"^a-1\.0-py3-none-any\.whl is not a valid wheel"):
        install_wheels(paths, set(), str(tmp_path / "site"))
