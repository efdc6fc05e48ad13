from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from aegis_plugin.core.sbom import cli, testutil
from aegis_plugin.core.sbom.cyclonedx import build_cyclonedx
from aegis_plugin.core.sbom.inventory import Blob
from aegis_plugin.core.sbom.spdx import build_spdx
from aegis_plugin.core.sbom.spdx3 import build_spdx3


def test_writes_the_documents_of_the_layers(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(testutil.inventory()))
    assert cli.main(["--inventory", str(inventory), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sbom.cdx.json", "sbom.spdx.json"]
    assert (tmp_path / "out" / "sbom.cdx.json").read_bytes() == build_cyclonedx(testutil.inventory())
    assert (tmp_path / "out" / "sbom.spdx.json").read_bytes() == build_spdx(testutil.inventory())


def _manifest(directory: Path, name: str = "") -> Path:
    data = b'{"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2}'
    path = directory / (name or hashlib.sha256(data).hexdigest())
    path.write_bytes(data)
    return path


def test_writes_the_spdx3_document_of_the_finished_image(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(testutil.inventory()))
    manifest = _manifest(tmp_path)
    args = ["--inventory", str(inventory), "--out", str(tmp_path / "out"), "--image-manifest", str(manifest)]
    assert cli.main(args) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sbom.spdx3.json"]
    data = manifest.read_bytes()
    expected = Blob(f"sha256:{manifest.name}", hashlib.sha512(data).hexdigest(), len(data),
                    "application/vnd.oci.image.manifest.v1+json")
    assert (tmp_path / "out" / "sbom.spdx3.json").read_bytes() == build_spdx3(testutil.inventory(), expected)


def test_a_manifest_not_named_by_its_digest_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(testutil.inventory()))
    manifest = _manifest(tmp_path, "0" * 64)
    args = ["--inventory", str(inventory), "--out", str(tmp_path / "out"), "--image-manifest", str(manifest)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"aegis: the image manifest {manifest} is not the blob its name says") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_bad_inventory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = testutil.inventory()
    data["image"]["git_sha"] = "main"
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(data))
    assert cli.main(["--inventory", str(inventory), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aegis: inventory: image.git_sha: expected 40 lowercase hex digits") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def _image_layers(tmp_path: Path, stray: bool = False) -> list:
    """Layers holding exactly what testutil.inventory() describes (its Debian and Python parts reduced to one
    package and one distribution, attributed through their dpkg and RECORD files), plus a stray file."""
    inv = testutil.inventory()
    base = [
        ("file", "etc/mime.types", b"text/plain txt\n"),
        ("file", "var/lib/dpkg/status.d/media-types", b"Package: media-types\nStatus: install ok installed\n"),
        ("file", "var/lib/dpkg/status.d/media-types.md5sums", b"0123  etc/mime.types\n"),
        ("file", "etc/passwd", b"root:x:0:0::/root:/sbin/nologin\n"),
    ]
    deps = [
        ("dir", "app/site-packages/safetensors-0.6.2.dist-info"),
        ("file", "app/site-packages/safetensors/__init__.py", b""),
        ("file", "app/site-packages/safetensors-0.6.2.dist-info/RECORD", b"safetensors/__init__.py,,\n"),
    ]
    app = [("file", f["path"].lstrip("/"), b"x") for f in inv["model"]["files"] + inv["app"]["files"]]
    if stray:
        app.append(("file", "app/server/debug_dump.bin", b"left behind"))
    return [
        testutil.write_layer(tmp_path / f"{name}.tar.gz", entries)
        for name, entries in (("base", base), ("deps", deps), ("app", app))
    ]


def _run(tmp_path: Path, layers: list, *extra: str) -> int:
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(testutil.inventory()))
    return cli.main(["--inventory", str(inventory), "--out", str(tmp_path / "out"), "--layers", *layers, *extra])


def test_completeness_counts_every_file(tmp_path: Path) -> None:
    assert _run(tmp_path, _image_layers(tmp_path), "--allow", "/etc/passwd") == 0
    report = json.loads((tmp_path / "out" / cli.COMPLETENESS_FILE).read_text())
    assert report["unattributed"] == []
    assert report["by_type"] == {"allowed": 1, "app": 5, "deb": 3, "model": 3, "pypi": 2}
    assert (report["total"], report["attributed"]) == (14, 13)
    assert (tmp_path / "out" / "sbom.cdx.json").exists() and (tmp_path / "out" / "sbom.spdx.json").exists()


def test_an_unattributed_file_fails_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, _image_layers(tmp_path, stray=True), "--allow", "/etc/passwd") == 2
    err = capsys.readouterr().err
    assert err.startswith("aegis: SBOM does not account for 1 of 15 files in the image: /app/server/debug_dump.bin: ")
    assert err.endswith("allow them knowingly with `[aegis-sbom].allow`\n") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_files_outside_the_allow_list_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, _image_layers(tmp_path)) == 2
    assert capsys.readouterr().err.startswith("aegis: SBOM does not account for 1 of 14 files in the image: /etc/passwd: ")
