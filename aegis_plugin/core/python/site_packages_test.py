from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from aegis_plugin.core.python.site_packages import (
    SitePackagesError,
    distributions,
    site_packages_entries,
)


def make_loose_pex(root: Path, wheels: dict[str, dict[str, bytes]]) -> Path:
    """A loose-layout PEX: each wheel an installed tree under .deps/<wheel file name>/."""
    for wheel, files in wheels.items():
        base = root / ".deps" / wheel
        (base / ".layout.json").parent.mkdir(parents=True, exist_ok=True)
        (base / ".layout.json").write_text("{}")
        for rel, data in files.items():
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_bytes(data)
    return root


def test_distributions_and_entries_with_a_generated_record(tmp_path) -> None:
    pex = make_loose_pex(tmp_path / "pex", {
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
    pex = make_loose_pex(tmp_path / "pex", {
        "a-1.0-py3-none-any.whl": {"a.py": b"", "a-1.0.dist-info/RECORD": b"a.py,,\n"},
    })
    entries = {e.path: e for e in site_packages_entries(str(pex), "/sp")}
    assert entries["/sp/a-1.0.dist-info/RECORD"].source.endswith("RECORD")


def test_two_wheels_installing_one_file(tmp_path) -> None:
    pex = make_loose_pex(tmp_path / "pex", {
        "a-1.0-py3-none-any.whl": {"shared.py": b"1"},
        "b-1.0-py3-none-any.whl": {"shared.py": b"2"},
    })
    with pytest.raises(SitePackagesError, match="shared.py is installed by both a-1.0"):
        site_packages_entries(str(pex), "/sp")


def test_not_a_loose_pex(tmp_path) -> None:
    with pytest.raises(SitePackagesError, match="not a loose-layout PEX"):
        distributions(str(tmp_path))
