from __future__ import annotations

import json
from typing import Any, Dict

import pytest

from aegis_plugin.core.oci.image import (
    ANNOTATION_REF_NAME,
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_INDEX,
    MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_MANIFEST,
    Descriptor,
    build_config,
    build_index,
    build_manifest,
    descriptor_for,
    parse_descriptor,
    sha256_digest,
    with_ref_name,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def config_kwargs(**overrides: Any) -> Dict[str, Any]:
    kwargs: Dict[str, Any] = dict(
        architecture="arm64",
        os="linux",
        diff_ids=[D1, D2],
        created="2024-01-02T03:04:05Z",
        user="65532:65532",
        env=["PATH=/usr/bin", "HF_HOME=/models"],
        entrypoint=["/app/serve"],
        cmd=["--port", "8080"],
        working_dir="/app",
        labels={"b": "2", "a": "1"},
        history=[{"created_by": "base"}, {"created_by": "noop", "empty_layer": True}, {"created_by": "app"}],
    )
    kwargs.update(overrides)
    return kwargs


def assert_canonical(data: bytes) -> Any:
    obj = json.loads(data)
    assert data == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert not data.endswith(b"\n")
    return obj


def test_sha256_digest() -> None:
    assert sha256_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_config_document() -> None:
    data = build_config(**config_kwargs())
    config = assert_canonical(data)
    assert config == {
        "architecture": "arm64",
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {
            "User": "65532:65532",
            "Env": ["PATH=/usr/bin", "HF_HOME=/models"],
            "Entrypoint": ["/app/serve"],
            "Cmd": ["--port", "8080"],
            "WorkingDir": "/app",
            "Labels": {"a": "1", "b": "2"},
        },
        "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
        "history": [{"created_by": "base"}, {"created_by": "noop", "empty_layer": True}, {"created_by": "app"}],
    }
    assert build_config(**config_kwargs()) == data


def test_config_omits_unset_fields() -> None:
    config = json.loads(
        build_config(
            **config_kwargs(
                user=None, env=[], entrypoint=None, cmd=None, working_dir=None, labels={}, history=None
            )
        )
    )
    assert config["config"] == {}
    assert "history" not in config and "variant" not in config


def test_config_variant() -> None:
    assert json.loads(build_config(**config_kwargs(variant="v8")))["variant"] == "v8"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(created="2024-01-02 03:04:05"), "created"),
        (dict(created="2024-01-02T03:04:05+01:00"), "created"),
        (dict(diff_ids=["sha256:abc"]), "digest"),
        (dict(env=["NO_EQUALS_SIGN"]), "env"),
        (dict(history=[{"created_by": "only one"}]), "history"),
        (dict(architecture=""), "architecture"),
    ],
)
def test_config_rejects_bad_input(overrides: Dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_config(**config_kwargs(**overrides))


def test_manifest_document() -> None:
    config_bytes = build_config(**config_kwargs())
    config = descriptor_for(MEDIA_TYPE_CONFIG, config_bytes)
    layers = [Descriptor(MEDIA_TYPE_LAYER_GZIP, D1, 10), Descriptor(MEDIA_TYPE_LAYER_GZIP, D2, 20)]
    manifest = assert_canonical(build_manifest(config=config, layers=layers, annotations={"k": "v"}))
    assert manifest == {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": MEDIA_TYPE_CONFIG, "digest": sha256_digest(config_bytes), "size": len(config_bytes)},
        "layers": [
            {"mediaType": MEDIA_TYPE_LAYER_GZIP, "digest": D1, "size": 10},
            {"mediaType": MEDIA_TYPE_LAYER_GZIP, "digest": D2, "size": 20},
        ],
        "annotations": {"k": "v"},
    }
    assert "annotations" not in json.loads(build_manifest(config=config, layers=layers, annotations={}))


def test_manifest_checks_media_types() -> None:
    layer = Descriptor(MEDIA_TYPE_LAYER_GZIP, D1, 1)
    with pytest.raises(ValueError, match="config"):
        build_manifest(config=Descriptor("application/json", D2, 1), layers=[layer], annotations={})
    with pytest.raises(ValueError, match="media type"):
        build_manifest(
            config=Descriptor(MEDIA_TYPE_CONFIG, D2, 1),
            layers=[Descriptor("application/octet-stream", D1, 1)],
            annotations={},
        )


def test_descriptor_json_round_trip() -> None:
    desc = Descriptor(MEDIA_TYPE_MANIFEST, D1, 5, annotations={"a": "b"}, platform={"architecture": "amd64", "os": "linux"})
    assert desc.to_json() == {
        "mediaType": MEDIA_TYPE_MANIFEST,
        "digest": D1,
        "size": 5,
        "annotations": {"a": "b"},
        "platform": {"architecture": "amd64", "os": "linux"},
    }
    assert parse_descriptor(desc.to_json()) == desc
    assert Descriptor(MEDIA_TYPE_MANIFEST, D1, 5, annotations={}).to_json() == {
        "mediaType": MEDIA_TYPE_MANIFEST,
        "digest": D1,
        "size": 5,
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(media_type=MEDIA_TYPE_MANIFEST, digest="sha256:" + "A" * 64, size=1),
        dict(media_type=MEDIA_TYPE_MANIFEST, digest="sha512:" + "1" * 128, size=1),
        dict(media_type=MEDIA_TYPE_MANIFEST, digest=D1, size=-1),
        dict(media_type="", digest=D1, size=1),
        dict(media_type=MEDIA_TYPE_MANIFEST, digest=D1, size=1, platform={"os": "linux"}),
        dict(media_type=MEDIA_TYPE_MANIFEST, digest=D1, size=1, annotations={"a": 1}),
    ],
)
def test_descriptor_validation(kwargs: Dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Descriptor(**kwargs)


def test_multi_platform_index() -> None:
    amd = Descriptor(MEDIA_TYPE_MANIFEST, D1, 100, platform={"architecture": "amd64", "os": "linux"})
    arm = Descriptor(MEDIA_TYPE_MANIFEST, D2, 200, platform={"architecture": "arm64", "os": "linux", "variant": "v8"})
    index = assert_canonical(build_index([amd, arm], annotations={"org.opencontainers.image.version": "1"}))
    assert index == {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": [amd.to_json(), arm.to_json()],  # order kept
        "annotations": {"org.opencontainers.image.version": "1"},
    }

    # The layout's index.json then names the platform index blob.
    inner = build_index([amd, arm])
    outer = json.loads(build_index([with_ref_name(descriptor_for(MEDIA_TYPE_INDEX, inner), "1.0")]))
    assert outer["manifests"] == [
        {
            "mediaType": MEDIA_TYPE_INDEX,
            "digest": sha256_digest(inner),
            "size": len(inner),
            "annotations": {ANNOTATION_REF_NAME: "1.0"},
        }
    ]


def test_index_rejects_duplicates_and_foreign_media_types() -> None:
    amd = Descriptor(MEDIA_TYPE_MANIFEST, D1, 100, platform={"architecture": "amd64", "os": "linux"})
    with pytest.raises(ValueError, match="duplicate"):
        build_index([amd, amd])
    with pytest.raises(ValueError, match="media type"):
        build_index([Descriptor(MEDIA_TYPE_LAYER_GZIP, D3, 1)])


def test_with_ref_name() -> None:
    desc = Descriptor(MEDIA_TYPE_MANIFEST, D1, 1, annotations={"keep": "me"})
    named = with_ref_name(desc, "registry.example.com/app:1.2.3")
    assert named.annotations == {"keep": "me", ANNOTATION_REF_NAME: "registry.example.com/app:1.2.3"}
    assert desc.annotations == {"keep": "me"}
    assert with_ref_name(named, "v2").annotations == {"keep": "me", ANNOTATION_REF_NAME: "v2"}
    for bad in ("", "-v1", "v1/", "a b", "v1..2"):
        with pytest.raises(ValueError, match="ref name"):
            with_ref_name(desc, bad)
