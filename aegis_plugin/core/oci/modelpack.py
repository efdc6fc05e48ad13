"""ModelPack model artifacts (CNCF `modelpack/model-spec` v0.0.7): the model's files as an OCI artifact that
serving platforms mount instead of baking into an image (Kubernetes `image` volumes, KServe `oci+native://`,
modctl, KitOps).

An artifact is an OCI image manifest with `artifactType` `application/vnd.cncf.model.manifest.v1+json`, a
config of media type `application/vnd.cncf.model.config.v1+json` (`descriptor`, `config` and `modelfs`, no
other key), and layers typed by what they hold: `weight`, `weight.config` (tokenizer, config.json), `doc`
(the model card), `code`, `dataset`, each `.tar`, `.tar+gzip` or `.tar+zstd`.

Aegis writes no layer of its own for it: each is a layer blob of the runnable image (`app/model/...` inside),
referenced under the ModelPack media type of its kind. A registry then stores the weights once whichever of
the two is pulled, and the spec's rules for reproducible tars and uncompressed weights are the image layers'
own (`oci/layer.py`). Every layer carries `org.cncf.model.filepath`: the path of its file in the tar, or, for
a layer of several files, the directory they unpack into.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Optional, Sequence

from aegis_plugin.core.oci.image import (
    MEDIA_TYPE_LAYER_GZIP,
    MEDIA_TYPE_LAYER_TAR,
    MEDIA_TYPE_LAYER_ZSTD,
    MEDIA_TYPE_MANIFEST,
    Descriptor,
    canonical_json,
)

SPEC_VERSION = "v0.0.7"
ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
MEDIA_TYPE_CONFIG = "application/vnd.cncf.model.config.v1+json"
ANNOTATION_FILEPATH = "org.cncf.model.filepath"
KINDS = ("weight", "weight.config", "doc", "code", "dataset")
# Facts of the model that the config's schema has no key for, as annotations of the artifact's manifest.
ANNOTATION_FRAMEWORK = "aegis.model.framework"  # the handler's framework at its locked version: "torch==2.4.0"
ANNOTATION_ACCELERATOR = "aegis.model.accelerator"  # "cpu", "cuda-12.4"
ANNOTATION_CARD_PREFIX = "aegis.model.card."  # + a model card field the config has no key for: "...task"
# The card's fields the config or the other annotations carry already.
_CARD_FIELDS_MAPPED = ("model_id", "version", "license", "owner", "architecture", "framework")
REF_NAME_SUFFIX = "_modelpack"  # `<version>_modelpack`: `_` is never in a semantic version, so never an image tag

# The config schema's keys (additionalProperties is false at every level).
DESCRIPTOR_KEYS = ("createdAt", "authors", "family", "name", "docURL", "sourceURL", "version", "revision",
                   "vendor", "licenses", "title", "description")
CONFIG_KEYS = ("architecture", "format", "paramSize", "precision", "quantization", "capabilities")
_ARCHIVES = {MEDIA_TYPE_LAYER_TAR: "tar", MEDIA_TYPE_LAYER_GZIP: "tar+gzip", MEDIA_TYPE_LAYER_ZSTD: "tar+zstd"}
_SCALES = (("Q", 10**15), ("T", 10**12), ("B", 10**9), ("M", 10**6), ("K", 10**3))
# safetensors dtypes -> the spec's precision names
PRECISIONS = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "F8_E4M3": "float8_e4m3",
    "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64",
    "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
}


def layer_media_type(kind: str, image_layer_media_type: str) -> str:
    """The ModelPack media type of an image layer of `kind` (`application/vnd.cncf.model.<kind>.v1.<archive>`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown ModelPack layer kind {kind!r} (one of {', '.join(KINDS)})")
    if image_layer_media_type not in _ARCHIVES:
        raise ValueError(f"no ModelPack media type for a layer of {image_layer_media_type}")
    return f"application/vnd.cncf.model.{kind}.v1.{_ARCHIVES[image_layer_media_type]}"


def param_size(count: int) -> str:
    """A parameter count as the spec writes it: `<count><scale-prefix>`, at most one decimal (`6.7B`, `100M`,
    `0.2K` for 241 parameters)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"a parameter count is a non-negative integer, got {count!r}")
    prefix, scale = next(((p, s) for p, s in _SCALES if count >= s), _SCALES[-1])
    text = f"{count / scale:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + prefix


def precision(dtypes: Sequence[str]) -> str:
    """The spec's precision of weights holding `dtypes` (safetensors names), comma-separated when several."""
    unknown = sorted(set(dtypes) - set(PRECISIONS))
    if unknown:
        raise ValueError(f"no ModelPack precision for dtype {unknown[0]!r}")
    return ",".join(sorted({PRECISIONS[d] for d in dtypes}))


def card_annotations(fields: Mapping[str, str]) -> Dict[str, str]:
    """The model card's fields that no key of the config carries (its task, say), as manifest annotations:
    `aegis.model.card.<field>`, the field's name lowercased with every other character as `_`."""
    found = {}
    for name, value in fields.items():
        key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        if key and key not in _CARD_FIELDS_MAPPED and value.strip():
            found[f"{ANNOTATION_CARD_PREFIX}{key}"] = value.strip()
    return found


def build_config(descriptor: Mapping[str, Any], config: Mapping[str, Any], diff_ids: Sequence[str]) -> bytes:
    """The artifact's config JSON: `modelfs` lists the layers' diff_ids in manifest order."""
    for what, given, allowed in (("descriptor", descriptor, DESCRIPTOR_KEYS), ("config", config, CONFIG_KEYS)):
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise ValueError(f"ModelPack {what} has no key {unknown[0]!r} (it allows {', '.join(allowed)})")
    if not descriptor.get("name"):
        raise ValueError("ModelPack descriptor needs a name")
    if not diff_ids:
        raise ValueError("a ModelPack artifact needs at least one layer")
    return canonical_json({
        "descriptor": dict(descriptor),
        "config": dict(config),
        "modelfs": {"type": "layers", "diffIds": list(diff_ids)},
    })


def build_manifest(config: Descriptor, layers: Sequence[Descriptor],
                   annotations: Optional[Mapping[str, str]] = None) -> bytes:
    """The artifact's manifest JSON: an OCI image manifest with the ModelPack artifact type."""
    if config.media_type != MEDIA_TYPE_CONFIG:
        raise ValueError(f"config descriptor must have media type {MEDIA_TYPE_CONFIG}, got {config.media_type}")
    for layer in layers:
        if not layer.media_type.startswith("application/vnd.cncf.model."):
            raise ValueError(f"layer {layer.digest} has no ModelPack media type: {layer.media_type}")
        if not (layer.annotations or {}).get(ANNOTATION_FILEPATH):
            raise ValueError(f"layer {layer.digest} has no {ANNOTATION_FILEPATH} annotation")
    manifest: Dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": config.to_json(),
        "layers": [layer.to_json() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return canonical_json(manifest)
