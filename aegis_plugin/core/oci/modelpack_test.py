from __future__ import annotations

import json

import pytest

from aegis_plugin.core.oci import modelpack
from aegis_plugin.core.oci.image import (
    MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_TAR,
    MEDIA_TYPE_LAYER_ZSTD,
    Descriptor,
    descriptor_for,
)


@pytest.mark.parametrize("count, text", [
    (0, "0K"), (241, "0.2K"), (1000, "1K"), (1_234_567, "1.2M"), (100_000_000, "100M"), (6_738_415_616, "6.7B"),
    (8_000_000_000, "8B"), (1_000_000_000_000, "1T"), (2 * 10**15, "2Q"),
])
def test_param_size_is_a_count_and_a_scale_prefix(count: int, text: str) -> None:
    assert modelpack.param_size(count) == text


def test_precision_names_every_dtype_once() -> None:
    assert modelpack.precision(["F32", "F32"]) == "float32"
    assert modelpack.precision(["BF16", "F8_E4M3", "F32"]) == "bfloat16,float32,float8_e4m3"
    with pytest.raises(ValueError, match="no ModelPack precision for dtype 'F4'"):
        modelpack.precision(["F4"])


def test_layer_media_types_follow_the_image_layers_compression() -> None:
    assert modelpack.layer_media_type("weight", MEDIA_TYPE_LAYER_TAR) == "application/vnd.cncf.model.weight.v1.tar"
    assert modelpack.layer_media_type("doc", MEDIA_TYPE_LAYER_GZIP) == "application/vnd.cncf.model.doc.v1.tar+gzip"
    assert modelpack.layer_media_type("doc", MEDIA_TYPE_LAYER_ZSTD) == "application/vnd.cncf.model.doc.v1.tar+zstd"
    with pytest.raises(ValueError, match="unknown ModelPack layer kind 'weights'"):
        modelpack.layer_media_type("weights", MEDIA_TYPE_LAYER_TAR)


def test_the_config_has_the_schemas_keys_only() -> None:
    config = json.loads(modelpack.build_config({"name": "m", "version": "1.0.0"}, {"format": "safetensors"},
                                               ["sha256:" + "a" * 64]))
    assert config == {"descriptor": {"name": "m", "version": "1.0.0"}, "config": {"format": "safetensors"},
                      "modelfs": {"type": "layers", "diffIds": ["sha256:" + "a" * 64]}}
    with pytest.raises(ValueError, match="ModelPack config has no key 'framework'"):
        modelpack.build_config({"name": "m"}, {"framework": "torch"}, ["sha256:" + "a" * 64])
    with pytest.raises(ValueError, match="at least one layer"):
        modelpack.build_config({"name": "m"}, {}, [])


def test_the_manifest_is_an_artifact_of_model_layers() -> None:
    config = descriptor_for(modelpack.MEDIA_TYPE_CONFIG, b"{}")
    layer = Descriptor("application/vnd.cncf.model.weight.v1.tar", "sha256:" + "b" * 64, 10,
                       annotations={modelpack.ANNOTATION_FILEPATH: "app/model/weights.safetensors"})
    manifest = json.loads(modelpack.build_manifest(config, [layer], {"org.opencontainers.image.version": "1"}))
    assert manifest["artifactType"] == modelpack.ARTIFACT_TYPE
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["layers"] == [layer.to_json()]
    with pytest.raises(ValueError, match="has no ModelPack media type"):
        modelpack.build_manifest(config, [Descriptor(MEDIA_TYPE_LAYER_TAR, layer.digest, 10)])


def test_card_fields_without_a_config_key_become_annotations() -> None:
    fields = {"model_id": "fraud", "license": "MIT", "architecture": "MLP", "task": "binary classification",
              "Learning type": "supervised", "owner": "ML team", "empty": " "}
    assert modelpack.card_annotations(fields) == {"aegis.model.card.task": "binary classification",
                                                  "aegis.model.card.learning_type": "supervised"}
