"""Pushes to a real registry (Debian's docker-registry on 127.0.0.1), checked with skopeo."""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.push import TagConflictError, push_image
from aegis_plugin.core.registry.reference import parse
from aegis_plugin.core.registry.testutil import faulty_proxy, make_layout, running_registry
from aegis_plugin.core.registry.transport import RegistryError


@pytest.fixture
def registry(tmp_path: Path):
    with running_registry(tmp_path / "registry") as address:
        yield address


def _skopeo_digest(ref: str) -> str:
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"],
                         check=True, capture_output=True).stdout
    return "sha256:" + hashlib.sha256(out).hexdigest()


def test_push_by_digest_then_tag_and_a_second_push_uploads_nothing(registry: str, tmp_path: Path) -> None:
    image = make_layout(tmp_path / "oci", b"weights")
    target = parse(f"{registry}/ml/fraud:1.0.0")
    client = Registry.for_reference(target)
    first = push_image(client, image, target)
    assert first.uploaded_bytes > 0 and len(first.uploaded_blobs) == 2 and first.tag_created
    assert _skopeo_digest(f"{registry}/ml/fraud:1.0.0") == image.digest
    assert _skopeo_digest(f"{registry}/ml/fraud@{image.digest}") == image.digest

    again = push_image(client, image, target)
    assert again.uploaded_bytes == 0 and again.uploaded_blobs == [] and not again.tag_created
    assert "no layer bytes uploaded" in again.summary() and "already points to this digest" in again.summary()


def _skopeo_copy(source: str, layout: Path, *args: str) -> dict:
    """`skopeo copy` into an OCI layout; the manifest it wrote, with its config as `config`."""
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", *args, source, f"oci:{layout}:x"],
                   check=True, capture_output=True)
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads(_blob(layout, digest))
    return {**manifest, "digest": digest, "config": json.loads(_blob(layout, manifest["config"]["digest"]))}


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def test_a_zstd_image_goes_to_the_registry_and_back_unchanged(registry: str, tmp_path: Path) -> None:
    image = make_layout(tmp_path / "oci", b"weights", compression="zstd")
    target = parse(f"{registry}/ml/fraud:1.0.0")
    push_image(Registry.for_reference(target), image, target)
    assert _skopeo_digest(f"{registry}/ml/fraud:1.0.0") == image.digest
    # skopeo pulls it back as it is: the same manifest, and zstd layers ...
    back = _skopeo_copy(f"docker://{registry}/ml/fraud:1.0.0", tmp_path / "back", "--preserve-digests")
    assert back["digest"] == image.digest
    assert [layer["mediaType"] for layer in back["layers"]] == ["application/vnd.oci.image.layer.v1.tar+zstd"]
    # ... which it reads: recompressed to gzip, each layer is the tar that the config's diff_id names.
    recompressed = _skopeo_copy(f"docker://{registry}/ml/fraud:1.0.0", tmp_path / "gzip",
                                "--dest-compress-format", "gzip")
    assert [layer["mediaType"] for layer in recompressed["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    tars = [gzip.decompress(_blob(tmp_path / "gzip", layer["digest"])) for layer in recompressed["layers"]]
    assert ["sha256:" + hashlib.sha256(tar).hexdigest() for tar in tars] == recompressed["config"]["rootfs"]["diff_ids"]


def test_a_tag_is_never_moved(registry: str, tmp_path: Path) -> None:
    first, second = make_layout(tmp_path / "a", b"one"), make_layout(tmp_path / "b", b"two")
    target = parse(f"{registry}/ml/fraud:1.0.0")
    client = Registry.for_reference(target)
    push_image(client, first, target)
    with pytest.raises(TagConflictError, match=f"already points to {first.digest}; refusing to move it to {second.digest}"):
        push_image(client, second, target)
    assert _skopeo_digest(f"{registry}/ml/fraud:1.0.0") == first.digest


def test_cross_repository_mount_sends_no_bytes(registry: str, tmp_path: Path) -> None:
    image = make_layout(tmp_path / "oci", b"weights")
    client = Registry.for_reference(parse(f"{registry}/staging/fraud:1.0.0"))
    push_image(client, image, parse(f"{registry}/staging/fraud:1.0.0"))
    promoted = push_image(client, image, parse(f"{registry}/prod/fraud:1.0.0"), mount_from="staging/fraud")
    assert promoted.uploaded_bytes == 0 and len(promoted.skipped_blobs) == 2
    assert _skopeo_digest(f"{registry}/prod/fraud:1.0.0") == image.digest


def test_basic_auth_from_the_environment_and_the_docker_config(tmp_path: Path, monkeypatch) -> None:
    image = make_layout(tmp_path / "oci", b"weights")
    with running_registry(tmp_path / "registry", login=("ci", "s3cret")) as address:
        target = parse(f"{address}/ml/fraud:1.0.0")
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
        with pytest.raises(RegistryError, match="the registry wants a login"):
            push_image(Registry.for_reference(target), image, target)

        (tmp_path / "docker").mkdir()
        (tmp_path / "docker/config.json").write_text(json.dumps(
            {"auths": {address: {"auth": base64.b64encode(b"ci:wrong").decode()}}}))
        with pytest.raises(RegistryError, match="HTTP 401"):
            push_image(Registry.for_reference(target), image, target)

        monkeypatch.setenv("AEGIS_REGISTRY_USERNAME", "ci")
        monkeypatch.setenv("AEGIS_REGISTRY_PASSWORD", "s3cret")
        monkeypatch.setenv("AEGIS_REGISTRY_HOST", address)
        assert push_image(Registry.for_reference(target), image, target).tag_created


def test_registry_down(tmp_path: Path) -> None:
    image = make_layout(tmp_path / "oci", b"weights")
    target = parse("127.0.0.1:9/ml/fraud:1.0.0")
    with pytest.raises(RegistryError, match="127.0.0.1:9: cannot reach the registry"):
        push_image(Registry.for_reference(target), image, target)


def test_a_failed_blob_upload_is_retried(registry: str, tmp_path: Path) -> None:
    image = make_layout(tmp_path / "oci", b"weights")
    with faulty_proxy(registry, fail=lambda n: n == 2) as proxy:
        target = parse(f"{proxy}/ml/fraud:1.0.0")
        report = push_image(Registry.for_reference(target), image, target)
    assert report.tag_created and len(report.uploaded_blobs) == 2
    assert _skopeo_digest(f"{registry}/ml/fraud:1.0.0") == image.digest


def test_a_persistent_fault_leaves_no_tag_and_a_rerun_completes(registry: str, tmp_path: Path) -> None:
    image = make_layout(tmp_path / "oci", b"weights")
    with faulty_proxy(registry, fail=lambda n: n >= 2) as proxy:  # the first blob goes through, then nothing
        target = parse(f"{proxy}/ml/fraud:1.0.0")
        with pytest.raises(RegistryError, match="HTTP 500"):
            push_image(Registry.for_reference(target), image, target)
        client = Registry.for_reference(target)
        assert client.manifest_digest("ml/fraud", "1.0.0") is None  # no tag on a partial image
        assert client.get_manifest("ml/fraud", image.digest) is None
    # The interrupted push, run again: what arrived is not sent twice.
    target = parse(f"{registry}/ml/fraud:1.0.0")
    report = push_image(Registry.for_reference(target), image, target)
    assert report.tag_created and len(report.skipped_blobs) == 1 and len(report.uploaded_blobs) == 1
    assert _skopeo_digest(f"{registry}/ml/fraud:1.0.0") == image.digest
