from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Dict, Tuple

import pytest

from aegis_plugin.core.oci.conftest import TestImage
from aegis_plugin.core.oci.image import (
    ANNOTATION_REF_NAME,
    MEDIA_TYPE_MANIFEST,
    Descriptor,
    build_index,
)
from aegis_plugin.core.oci.layout import write_layout
from aegis_plugin.core.oci.tarball import (
    ANNOTATION_CONTAINERD_IMAGE_NAME,
    normalize_repo_tag,
    write_image_tar,
)

MTIME = 1_600_000_000


def read_tar(path: Path) -> Tuple[Dict[str, tarfile.TarInfo], Dict[str, bytes]]:
    infos: Dict[str, tarfile.TarInfo] = {}
    files: Dict[str, bytes] = {}
    with tarfile.open(path, "r:") as tar:  # "r:" also proves it is uncompressed
        for member in tar.getmembers():
            infos[member.name] = member
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                files[member.name] = f.read()
    return infos, files


@pytest.fixture
def layout(tmp_path: Path, test_image: TestImage) -> Path:
    out = tmp_path / "layout"
    write_layout(out, test_image.blobs, test_image.index)
    return out


def test_archive_members_and_metadata(tmp_path: Path, layout: Path, test_image: TestImage) -> None:
    out = tmp_path / "image.tar"
    write_image_tar(out, layout, ["aegis/app:1.0"], MTIME)
    infos, files = read_tar(out)

    blob_names = sorted("blobs/sha256/" + d.split(":")[1] for d in test_image.blobs)
    with tarfile.open(out) as tar:
        order = tar.getnames()
    assert order == ["blobs", "blobs/sha256", *blob_names, "index.json", "manifest.json", "oci-layout"]
    for name, info in infos.items():
        assert (info.uid, info.gid, info.uname, info.gname, info.mtime) == (0, 0, "", "", MTIME)
        assert info.mode == (0o755 if info.isdir() else 0o644), name
    for name in blob_names:
        assert hashlib.sha256(files[name]).hexdigest() == name.rsplit("/", 1)[1]
    assert files["oci-layout"] == b'{"imageLayoutVersion":"1.0.0"}'


def test_docker_and_oci_views_agree(tmp_path: Path, layout: Path, test_image: TestImage) -> None:
    out = tmp_path / "image.tar"
    write_image_tar(out, layout, ["aegis/app:1.0", "registry.example.com:5000/team/app"], MTIME)
    _, files = read_tar(out)

    index = json.loads(files["index.json"])
    assert [m["digest"] for m in index["manifests"]] == [test_image.manifest_digest] * 2
    assert [m["annotations"] for m in index["manifests"]] == [
        {ANNOTATION_CONTAINERD_IMAGE_NAME: "docker.io/aegis/app:1.0", ANNOTATION_REF_NAME: "1.0"},
        {ANNOTATION_CONTAINERD_IMAGE_NAME: "registry.example.com:5000/team/app:latest", ANNOTATION_REF_NAME: "latest"},
    ]
    assert all(m["platform"] == {"architecture": "amd64", "os": "linux"} for m in index["manifests"])

    manifest_member = "blobs/sha256/" + test_image.manifest_digest.split(":")[1]
    manifest = json.loads(files[manifest_member])
    (docker,) = json.loads(files["manifest.json"])
    assert docker["RepoTags"] == ["aegis/app:1.0", "registry.example.com:5000/team/app"]
    assert docker["Config"] == "blobs/sha256/" + manifest["config"]["digest"].split(":")[1]
    assert docker["Layers"] == ["blobs/sha256/" + layer["digest"].split(":")[1] for layer in manifest["layers"]]
    assert files[docker["Config"]] == test_image.config
    config = json.loads(files[docker["Config"]])
    assert config["rootfs"]["diff_ids"] == [info.diff_id for info in test_image.layers]
    for path, info in zip(docker["Layers"], test_image.layers):
        assert len(files[path]) == info.size


def test_without_tags_index_is_kept(tmp_path: Path, layout: Path, test_image: TestImage) -> None:
    out = tmp_path / "image.tar"
    write_image_tar(out, layout, [], MTIME)
    _, files = read_tar(out)
    assert json.loads(files["index.json"]) == json.loads(test_image.index)
    assert json.loads(files["manifest.json"])[0]["RepoTags"] == []


def test_deterministic(tmp_path: Path, layout: Path) -> None:
    write_image_tar(tmp_path / "a.tar", layout, ["app:1"], MTIME)
    write_image_tar(tmp_path / "b.tar", layout, ["app:1"], MTIME)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_requires_a_single_image_manifest(tmp_path: Path, test_image: TestImage) -> None:
    other = b'{"schemaVersion":2}'
    blobs = dict(test_image.blobs)
    other_desc = Descriptor(MEDIA_TYPE_MANIFEST, "sha256:" + hashlib.sha256(other).hexdigest(), len(other))
    blobs[other_desc.digest] = other
    two = build_index([Descriptor(MEDIA_TYPE_MANIFEST, test_image.manifest_digest, len(test_image.manifest)), other_desc])
    write_layout(tmp_path / "layout", blobs, two)
    with pytest.raises(ValueError, match="exactly one image manifest"):
        write_image_tar(tmp_path / "image.tar", tmp_path / "layout", ["app:1"], MTIME)


def test_rejects_stray_files_in_blobs(tmp_path: Path, layout: Path) -> None:
    (layout / "blobs" / "sha256" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="digest"):
        write_image_tar(tmp_path / "image.tar", layout, [], MTIME)


@pytest.mark.parametrize(
    "repo_tag, expected",
    [
        ("app", ("docker.io/library/app:latest", "latest")),
        ("app:1.0", ("docker.io/library/app:1.0", "1.0")),
        ("team/app:v2", ("docker.io/team/app:v2", "v2")),
        ("docker.io/app:x", ("docker.io/library/app:x", "x")),
        ("index.docker.io/team/app:x", ("docker.io/team/app:x", "x")),
        ("localhost/app:x", ("localhost/app:x", "x")),
        ("localhost:5000/a/b/c:x", ("localhost:5000/a/b/c:x", "x")),
        ("ghcr.io/org/app-name_x:1.2.3-rc1", ("ghcr.io/org/app-name_x:1.2.3-rc1", "1.2.3-rc1")),
    ],
)
def test_normalize_repo_tag(repo_tag: str, expected: Tuple[str, str]) -> None:
    assert normalize_repo_tag(repo_tag) == expected


@pytest.mark.parametrize("repo_tag", ["App:1", "app:", "app@sha256:" + "1" * 64, "a//b", "app:-x", ""])
def test_normalize_repo_tag_rejects(repo_tag: str) -> None:
    with pytest.raises(ValueError):
        normalize_repo_tag(repo_tag)
