"""Checks our layouts and tarballs with independent OCI tools (umoci, skopeo)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, List

import pytest

from aegis_plugin.core.oci import compression
from aegis_plugin.core.oci.conftest import TestImage, make_test_image
from aegis_plugin.core.oci.layout import write_layout
from aegis_plugin.core.oci.tarball import write_image_tar


def run(binary: str, *args: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed: build-support/test.sh installs it (`apt-get install {binary}`)")
    proc = subprocess.run([path, *args], capture_output=True, text=True)
    assert proc.returncode == 0, f"{binary} {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def run_json(binary: str, *args: str) -> Any:
    return json.loads(run(binary, *args))


@pytest.fixture
def layout(tmp_path: Path, test_image: TestImage) -> Path:
    out = tmp_path / "layout"
    write_layout(out, test_image.blobs, test_image.index)
    return out


def layer_digests(test_image: TestImage) -> List[str]:
    return [info.digest for info in test_image.layers]


def test_umoci_lists_and_unpacks_layout(tmp_path: Path, layout: Path, test_image: TestImage) -> None:
    assert run("umoci", "ls", "--layout", str(layout)).split() == [test_image.ref_name]

    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--rootless", "--image", f"{layout}:{test_image.ref_name}", str(bundle))
    rootfs = bundle / "rootfs"
    assert (rootfs / "etc" / "hostname").read_bytes() == b"aegis\n"
    assert (rootfs / "usr" / "bin" / "tool").stat().st_mode & 0o777 == 0o755
    assert os.readlink(rootfs / "app" / "current") == "model"
    assert (rootfs / "app" / "model" / "weights.bin").stat().st_size == 64 * 1024
    runtime = json.loads((bundle / "config.json").read_text())
    assert runtime["process"]["args"] == ["/usr/bin/tool"]
    assert runtime["process"]["cwd"] == "/app"


def test_skopeo_inspects_layout(layout: Path, test_image: TestImage) -> None:
    info = run_json("skopeo", "inspect", f"oci:{layout}:{test_image.ref_name}")
    assert info["Digest"] == test_image.manifest_digest
    assert info["Layers"] == layer_digests(test_image)
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    raw = run("skopeo", "inspect", "--raw", f"oci:{layout}:{test_image.ref_name}")
    assert raw.encode() == test_image.manifest


def test_skopeo_reads_tarball_as_oci_and_docker_archive(
    tmp_path: Path, layout: Path, test_image: TestImage
) -> None:
    tar = tmp_path / "image.tar"
    write_image_tar(tar, layout, ["aegis/app:1.0"], 0)

    oci = run_json("skopeo", "inspect", f"oci-archive:{tar}:1.0")
    assert oci["Digest"] == test_image.manifest_digest

    # docker-archive reads manifest.json; its layers are named by diff_id.
    docker = run_json("skopeo", "inspect", f"docker-archive:{tar}")
    assert docker["Layers"] == [info.diff_id for info in test_image.layers]
    config = run_json("skopeo", "inspect", "--config", f"docker-archive:{tar}")
    assert config == json.loads(test_image.config)

    # A full copy reads every layer and checks it against the config.
    run("skopeo", "--insecure-policy", "copy", f"docker-archive:{tar}:aegis/app:1.0", f"oci:{tmp_path / 'copy'}:x")


def test_skopeo_reads_zstd_layers_of_many_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `layer_compression="zstd"` image, its layers cut into many frames, read by the Go tools' zstd decoder:
    skopeo recompresses it to gzip without changing what the layers hold, and umoci (0.4.7 reads no zstd)
    unpacks that copy."""
    monkeypatch.setattr(compression, "FRAME_BYTES", 4096)
    image = make_test_image(tmp_path / "src", compression="zstd")
    assert image.layers[1].size > 3 * 4096  # the weights' layer: several frames
    zstd_layout, gzip_layout = tmp_path / "zstd", tmp_path / "gzip"
    write_layout(zstd_layout, image.blobs, image.index)
    info = run_json("skopeo", "inspect", f"oci:{zstd_layout}:{image.ref_name}")
    assert info["Digest"] == image.manifest_digest and info["Layers"] == layer_digests(image)
    raw = json.loads(run("skopeo", "inspect", "--raw", f"oci:{zstd_layout}:{image.ref_name}"))
    assert [layer["mediaType"] for layer in raw["layers"]] == ["application/vnd.oci.image.layer.v1.tar+zstd"] * 2

    run("skopeo", "--insecure-policy", "copy", "--dest-compress-format", "gzip",
        f"oci:{zstd_layout}:{image.ref_name}", f"oci:{gzip_layout}:{image.ref_name}")
    index = json.loads((gzip_layout / "index.json").read_text())
    manifest = json.loads(blob(gzip_layout, index["manifests"][0]["digest"]))
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"] * 2
    # Each layer holds exactly the tar our zstd frames hold: its diff_id, the config's, is unchanged.
    for layer, ours in zip(manifest["layers"], image.layers):
        assert "sha256:" + hashlib.sha256(gzip.decompress(blob(gzip_layout, layer["digest"]))).hexdigest() == ours.diff_id

    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--rootless", "--image", f"{gzip_layout}:{image.ref_name}", str(bundle))
    assert (bundle / "rootfs" / "etc" / "hostname").read_bytes() == b"aegis\n"
    assert (bundle / "rootfs" / "app" / "model" / "weights.bin").read_bytes() == (
        tmp_path / "src" / "src" / "weights.bin"
    ).read_bytes()


def blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
