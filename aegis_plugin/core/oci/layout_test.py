from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from aegis_plugin.core.oci.conftest import TestImage
from aegis_plugin.core.oci.image import (
    ANNOTATION_REF_NAME,
    MEDIA_TYPE_INDEX,
    MEDIA_TYPE_MANIFEST,
    Descriptor,
    build_index,
    sha256_digest,
)
from aegis_plugin.core.oci.layout import (
    LayoutError, blob_path, read_index, select_artifact, select_manifest, write_layout,
)
from aegis_plugin.core.oci.modelpack import ARTIFACT_TYPE


def test_layout_files(tmp_path: Path, test_image: TestImage) -> None:
    out = tmp_path / "layout"
    write_layout(out, test_image.blobs, test_image.index)

    assert (out / "oci-layout").read_bytes() == b'{"imageLayoutVersion":"1.0.0"}'
    assert (out / "index.json").read_bytes() == test_image.index
    names = sorted(os.listdir(out / "blobs" / "sha256"))
    assert names == sorted(d.split(":")[1] for d in test_image.blobs)
    for name in names:
        content = (out / "blobs" / "sha256" / name).read_bytes()
        assert hashlib.sha256(content).hexdigest() == name

    index = read_index(out)
    (desc,) = index["manifests"]
    assert desc["digest"] == test_image.manifest_digest
    assert desc["mediaType"] == MEDIA_TYPE_MANIFEST
    assert desc["annotations"] == {ANNOTATION_REF_NAME: "v1"}
    assert desc["platform"] == {"architecture": "amd64", "os": "linux"}


def test_blobs_are_independent_copies(tmp_path: Path, test_image: TestImage) -> None:
    out = tmp_path / "layout"
    write_layout(out, test_image.blobs, test_image.index)
    for digest, source in test_image.blobs.items():
        copied = Path(blob_path(out, digest))
        assert copied.stat().st_nlink == 1
        if isinstance(source, Path):
            assert not copied.samefile(source)
            assert copied.read_bytes() == source.read_bytes()


def test_digest_mismatch_raises_and_leaves_no_index(tmp_path: Path, test_image: TestImage) -> None:
    layer_digest = test_image.layers[1].digest
    layer_path = test_image.blobs[layer_digest]
    assert isinstance(layer_path, Path)
    corrupted = bytearray(layer_path.read_bytes())
    corrupted[-9] ^= 0xFF  # same size, different content
    layer_path.write_bytes(bytes(corrupted))

    out = tmp_path / "layout"
    with pytest.raises(ValueError, match=layer_digest):
        write_layout(out, test_image.blobs, test_image.index)
    assert not (out / "index.json").exists()
    assert not any(name.endswith(".partial") for name in os.listdir(out / "blobs" / "sha256"))
    assert not Path(blob_path(out, layer_digest)).exists()


def test_bytes_blob_with_wrong_digest_raises(tmp_path: Path) -> None:
    wrong = "sha256:" + "0" * 64
    index = build_index([])
    with pytest.raises(ValueError, match=sha256_digest(b"hello")):
        write_layout(tmp_path / "layout", {wrong: b"hello"}, index)


def test_missing_or_mis_sized_blobs_are_reported(tmp_path: Path, test_image: TestImage) -> None:
    blobs = dict(test_image.blobs)
    del blobs[test_image.layers[0].digest]
    with pytest.raises(ValueError, match=f"{test_image.layers[0].digest}.*not provided"):
        write_layout(tmp_path / "a", blobs, test_image.index)

    manifest_desc = Descriptor(MEDIA_TYPE_MANIFEST, test_image.manifest_digest, len(test_image.manifest) + 1)
    with pytest.raises(ValueError, match="bytes but its descriptor says"):
        write_layout(tmp_path / "b", test_image.blobs, build_index([manifest_desc]))


def test_refuses_non_empty_directory(tmp_path: Path, test_image: TestImage) -> None:
    out = tmp_path / "layout"
    out.mkdir()
    (out / "stale").write_text("x")
    with pytest.raises(FileExistsError):
        write_layout(out, test_image.blobs, test_image.index)


def test_rejects_bad_digest_keys_and_non_index(tmp_path: Path, test_image: TestImage) -> None:
    with pytest.raises(ValueError, match="digest"):
        write_layout(tmp_path / "a", {"md5:abc": b"x"}, test_image.index)
    with pytest.raises(ValueError, match="schemaVersion"):
        write_layout(tmp_path / "b", test_image.blobs, json.dumps({"manifests": []}).encode())


def test_read_index_checks_layout_version(tmp_path: Path) -> None:
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion":"2.0.0"}')
    (tmp_path / "index.json").write_bytes(build_index([]))
    with pytest.raises(ValueError, match="imageLayoutVersion"):
        read_index(tmp_path)


def test_an_artifact_beside_the_image_is_not_taken_for_it(tmp_path: Path) -> None:
    image = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "1" * 64, "size": 1,
             "annotations": {"org.opencontainers.image.ref.name": "1.0.0"}}
    model = {**image, "digest": "sha256:" + "2" * 64, "artifactType": ARTIFACT_TYPE,
             "annotations": {"org.opencontainers.image.ref.name": "1.0.0_modelpack"}}
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (tmp_path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [image, model]}))
    assert select_manifest(tmp_path) == image
    assert select_manifest(tmp_path, "1.0.0_modelpack") == model
    assert select_artifact(tmp_path, ARTIFACT_TYPE) == model
    assert select_artifact(tmp_path, "application/x-other") is None


def test_an_image_index_is_read_for_a_platform(tmp_path: Path) -> None:
    manifests = {arch: b'{"schemaVersion":2,"arch":"%s"}' % arch.encode() for arch in ("amd64", "arm64")}
    entries = [Descriptor(MEDIA_TYPE_MANIFEST, sha256_digest(data), len(data),
                          platform={"os": "linux", "architecture": arch}) for arch, data in manifests.items()]
    index_blob = build_index(entries)
    index_entry = Descriptor(MEDIA_TYPE_INDEX, sha256_digest(index_blob), len(index_blob),
                             annotations={ANNOTATION_REF_NAME: "1.0.0"})
    write_layout(tmp_path / "oci", {**{sha256_digest(d): d for d in manifests.values()},
                                    index_entry.digest: index_blob}, build_index([index_entry]))
    assert select_manifest(tmp_path / "oci", platform="linux/arm64") == entries[1].to_json()
    assert select_manifest(tmp_path / "oci", "1.0.0", "linux/amd64") == entries[0].to_json()
    with pytest.raises(LayoutError, match=r"the image is an index over linux/amd64, linux/arm64: name a platform$"):
        select_manifest(tmp_path / "oci")
    with pytest.raises(LayoutError, match=r"0 manifests for linux/riscv64 \(it offers linux/amd64, linux/arm64\)$"):
        select_manifest(tmp_path / "oci", platform="linux/riscv64")
