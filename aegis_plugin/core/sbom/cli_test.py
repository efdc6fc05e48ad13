from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from aegis_plugin.core.sbom import cli, testutil
from aegis_plugin.core.sbom.cyclonedx import build_cyclonedx
from aegis_plugin.core.sbom.spdx import build_spdx
from aegis_plugin.core.sbom.spdx3 import Deployable, Deployables, build_spdx3


def test_writes_the_documents_of_the_layers(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(testutil.inventory()))
    assert cli.main(["--inventory", str(inventory), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sbom.cdx.json", "sbom.spdx.json"]
    assert (tmp_path / "out" / "sbom.cdx.json").read_bytes() == build_cyclonedx(testutil.inventory())
    assert (tmp_path / "out" / "sbom.spdx.json").read_bytes() == build_spdx(testutil.inventory())


def _blob(directory: Path, data: bytes, name: str = "") -> Path:
    path = directory / (name or hashlib.sha256(data).hexdigest())
    path.write_bytes(data)
    return path


APP_LAYER = b"an app layer"
MANIFEST = json.dumps({"mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": [
    {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
     "digest": f"sha256:{hashlib.sha256(APP_LAYER).hexdigest()}", "size": len(APP_LAYER)}]}).encode()
ARTIFACT = b'{"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"x/y"}'


def test_writes_the_spdx3_document_of_the_finished_image(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(testutil.inventory()))
    manifest, app, artifact = (_blob(tmp_path, data) for data in (MANIFEST, APP_LAYER, ARTIFACT))
    args = ["--inventory", str(inventory), "--out", str(tmp_path / "out"), "--image-manifest", str(manifest),
            "--app-layer", str(app), "--model-artifact", str(artifact)]
    assert cli.main(args) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sbom.spdx3.json"]
    expected = Deployables(
        image=Deployable(f"sha256:{manifest.name}", hashlib.sha512(MANIFEST).hexdigest(),
                         "application/vnd.oci.image.manifest.v1+json"),
        app=Deployable(f"sha256:{app.name}", hashlib.sha512(APP_LAYER).hexdigest(),
                       "application/vnd.oci.image.layer.v1.tar+gzip"),
        model=Deployable(f"sha256:{artifact.name}", hashlib.sha512(ARTIFACT).hexdigest(),
                         "application/vnd.oci.image.manifest.v1+json"),
    )
    assert (tmp_path / "out" / "sbom.spdx3.json").read_bytes() == build_spdx3(testutil.inventory(), expected)


@pytest.mark.parametrize("blobs, message", [
    (lambda d: (_blob(d, MANIFEST, "0" * 64), _blob(d, APP_LAYER)),
     "the image manifest {0} is not the blob its name says"),
    (lambda d: (_blob(d, MANIFEST), _blob(d, b"another layer")),
     "the app layer {1} is not a layer of the image manifest"),
])
def test_finished_image_blobs_are_checked_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], blobs,
                                                       message: str) -> None:
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(testutil.inventory()))
    manifest, app = blobs(tmp_path)
    args = ["--inventory", str(inventory), "--out", str(tmp_path / "out"), "--image-manifest", str(manifest),
            "--app-layer", str(app)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("aegis: " + message.format(manifest, app)) and err.count("\n") == 1
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


def test_an_invalid_cyclonedx_document_fails_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CycloneDX is built and validated in a forked child: its verdict reaches the one-line error."""
    from aegis_plugin.core.sbom import cyclonedx

    monkeypatch.setattr(cyclonedx, "build_cyclonedx", lambda inv: b'{"specVersion": "1.4"}')
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(testutil.inventory()))
    assert cli.main(["--inventory", str(inventory), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aegis: the SBOM is invalid: sbom.cdx.json: specVersion must be '1.7', got '1.4'")
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_an_error_building_cyclonedx_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aegis_plugin.core.sbom import cyclonedx, inventory as inventory_module

    def refuse(inv: object) -> bytes:
        raise inventory_module.InventoryError("the model card's license is not an SPDX expression")

    monkeypatch.setattr(cyclonedx, "build_cyclonedx", refuse)
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(testutil.inventory()))
    assert cli.main(["--inventory", str(inventory), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "aegis: the model card's license is not an SPDX expression\n"
    assert not (tmp_path / "out").exists()
