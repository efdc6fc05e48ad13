"""Shared fixture: a small, real two-layer image built with the core modules."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Union

import pytest

from aegis_plugin.core.oci.image import (
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_MANIFEST,
    Descriptor,
    build_config,
    build_index,
    build_manifest,
    descriptor_for,
    with_ref_name,
)
from aegis_plugin.core.oci.layer import LayerEntry, LayerInfo, write_layer

MTIME = 1_700_000_000


@dataclass
class TestImage:
    __test__ = False  # not a test class, despite the name

    blobs: Dict[str, Union[Path, bytes]]
    config: bytes
    manifest: bytes
    manifest_digest: str
    index: bytes
    layers: List[LayerInfo]
    ref_name: str


@pytest.fixture
def test_image(tmp_path: Path) -> TestImage:
    return make_test_image(tmp_path)


def make_test_image(tmp_path: Path, compression: str = "gzip") -> TestImage:
    """Two layers (`compression`: gzip or zstd), their config, manifest and index, under `tmp_path`."""
    src = tmp_path / "src"
    src.mkdir(parents=True)
    weights = src / "weights.bin"
    weights.write_bytes(os.urandom(64 * 1024))

    base = write_layer(
        [
            LayerEntry("/etc/hostname", "file", 0o644, data=b"aegis\n"),
            LayerEntry("/usr/bin/tool", "file", 0o755, data=b"#!/bin/sh\necho hi\n"),
        ],
        tmp_path / "base.blob",
        MTIME,
        compression,
    )
    app = write_layer(
        [
            LayerEntry("/app/model/weights.bin", "file", 0o644, source=str(weights)),
            LayerEntry("/app/current", "symlink", 0o777, linkname="model"),
        ],
        tmp_path / "app.blob",
        MTIME,
        compression,
    )
    config = build_config(
        architecture="amd64",
        os="linux",
        diff_ids=[base.diff_id, app.diff_id],
        created="2024-01-02T03:04:05Z",
        user="1000",
        env=["PATH=/usr/bin:/bin"],
        entrypoint=["/usr/bin/tool"],
        cmd=None,
        working_dir="/app",
        labels={"org.opencontainers.image.title": "test"},
        history=None,
    )
    manifest = build_manifest(
        config=descriptor_for(MEDIA_TYPE_CONFIG, config),
        layers=[Descriptor(info.media_type, info.digest, info.size) for info in (base, app)],
        annotations={},
    )
    manifest_desc = descriptor_for(
        MEDIA_TYPE_MANIFEST, manifest, platform={"architecture": "amd64", "os": "linux"}
    )
    ref_name = "v1"
    index = build_index([with_ref_name(manifest_desc, ref_name)])
    blobs: Dict[str, Union[Path, bytes]] = {
        base.digest: tmp_path / "base.blob",
        app.digest: tmp_path / "app.blob",
        manifest_desc.digest: manifest,
        descriptor_for(MEDIA_TYPE_CONFIG, config).digest: config,
    }
    return TestImage(
        blobs=blobs,
        config=config,
        manifest=manifest,
        manifest_digest=manifest_desc.digest,
        index=index,
        layers=[base, app],
        ref_name=ref_name,
    )
