"""The specs a rule hands a core command as `--spec spec.json`, typed on both sides: the rule builds one of
these dataclasses and the command reads the same one back, so a renamed or missing field fails where the rule
builds it (a TypeError in Pants), or as one `aegis:` line naming the field, never as a KeyError in a sandbox."""
from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any, Mapping, Optional, Tuple

from aegis_plugin.core.errors import AegisError

# What a files layer checks of a file before it ships it.
CHECKS = ("safetensors", "model_card", "json")


class SpecError(AegisError, ValueError):
    """A spec file does not have the fields its command reads."""


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _read(cls: type, data: Any, where: str) -> dict:
    """`data`'s fields for `cls`, refusing unknown and missing ones."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected an object")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {unknown}")
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    missing = sorted(required - set(data))
    if missing:
        raise SpecError(f"{where}: missing field(s) {missing}")
    return data


def to_json(spec: Any) -> Any:
    """JSON data of a spec: tuples as lists, nested specs as objects, fields that are None left out."""
    if hasattr(spec, "__dataclass_fields__"):
        return {f.name: to_json(getattr(spec, f.name)) for f in fields(spec) if getattr(spec, f.name) is not None}
    if isinstance(spec, (tuple, list)):
        return [to_json(v) for v in spec]
    if isinstance(spec, Mapping):
        return {k: to_json(v) for k, v in spec.items()}
    return spec


@dataclass(frozen=True)
class LayerEntrySpec:
    """One file of a files layer: its content is the input file `source` or the literal `text`."""

    path: str  # in the image
    origin: str  # the field or part it comes from, for messages
    name: str  # its name where it comes from, for messages
    mode: int
    source: Optional[str] = None
    text: Optional[str] = None
    check: Optional[str] = None  # one of CHECKS
    # The source's SHA-256 when the rule has it (Pants' digest of the input file): not hashed again, which is a
    # pass over every byte of GBs of weights.
    sha256: Optional[str] = None

    def __post_init__(self) -> None:
        if (self.source is None) == (self.text is None):
            raise SpecError(f"{self.path}: give exactly one of `source` and `text`")
        if self.sha256 is not None and (self.source is None or not _is_sha256(self.sha256)):
            raise SpecError(f"{self.path}: `sha256` is 64 lowercase hex digits, of a `source`")
        if self.check is not None and self.check not in CHECKS:
            raise SpecError(f"{self.path}: unknown check {self.check!r} (one of {', '.join(CHECKS)})")

    @classmethod
    def from_json(cls, data: Any, where: str) -> "LayerEntrySpec":
        return cls(**_read(cls, data, where))


@dataclass(frozen=True)
class HandlerCheckSpec:
    """What the app layer checks of the handler before it ships it (core/python/handler_check.py)."""

    handler: str  # its path in the repository
    in_image: str
    first_party_dir: str
    importable: Tuple[str, ...]  # the top-level modules of the deps layer

    @classmethod
    def from_json(cls, data: Any, where: str) -> "HandlerCheckSpec":
        values = _read(cls, data, where)
        return cls(**{**values, "importable": tuple(values["importable"])})


@dataclass(frozen=True)
class FilesLayerSpec:
    mtime: int
    description: str
    entries: Tuple[LayerEntrySpec, ...]
    compression: str = "gzip"  # or "zstd", or "none" (weights)
    checkpoint: Optional[Mapping[str, str]] = None  # file name -> input path, checked together as one checkpoint
    handler_check: Optional[HandlerCheckSpec] = None

    @classmethod
    def from_json(cls, data: Any, where: str = "spec") -> "FilesLayerSpec":
        values = _read(cls, data, where)
        return cls(**{
            **values,
            "entries": tuple(LayerEntrySpec.from_json(e, f"{where}.entries[{i}]")
                             for i, e in enumerate(values["entries"])),
            "handler_check": HandlerCheckSpec.from_json(values["handler_check"], f"{where}.handler_check")
            if values.get("handler_check") is not None else None,
        })


@dataclass(frozen=True)
class ModelArtifactLayerSpec:
    """An image layer that the ModelPack artifact references too (core/oci/modelpack.py)."""

    layer: str  # one of ImageSpec.layers
    kind: str  # modelpack.KINDS: "weight", "weight.config", "doc", ...
    filepath: str  # its file in the tar (or the directory of its files), for `org.cncf.model.filepath`

    @classmethod
    def from_json(cls, data: Any, where: str) -> "ModelArtifactLayerSpec":
        return cls(**_read(cls, data, where))


@dataclass(frozen=True)
class ModelArtifactSpec:
    """The ModelPack artifact written beside the image, from some of its layers."""

    layers: Tuple[ModelArtifactLayerSpec, ...]
    descriptor: Mapping[str, Any]  # the config's `descriptor` (modelpack.DESCRIPTOR_KEYS)
    config: Mapping[str, Any]  # the config's `config` (modelpack.CONFIG_KEYS)
    annotations: Mapping[str, str]  # of its manifest
    ref_name: str  # its tag in the layout's index

    @classmethod
    def from_json(cls, data: Any, where: str) -> "ModelArtifactSpec":
        values = _read(cls, data, where)
        return cls(**{**values, "layers": tuple(ModelArtifactLayerSpec.from_json(layer, f"{where}.layers[{i}]")
                                                for i, layer in enumerate(values["layers"]))})


@dataclass(frozen=True)
class ImageSpec:
    """One image's config, manifest and index, from the layers the layer steps wrote (in `layers` order)."""

    layers: Tuple[str, ...]  # the layer steps' output directories among the inputs, bottom first
    architecture: str
    os: str
    created: int  # the source revision's time
    user: str
    env: Tuple[str, ...]
    entrypoint: Tuple[str, ...]
    working_dir: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    ref_name: str  # the tag in the layout's index
    repo_tags: Tuple[str, ...]  # of image.tar
    docker_archive: bool = False  # also write image.tar
    model_artifact: Optional[ModelArtifactSpec] = None  # also write this ModelPack artifact into the layout
    top_layer: Optional[FilesLayerSpec] = None  # a small layer on top of `layers`, written by the image step

    @classmethod
    def from_json(cls, data: Any, where: str = "spec") -> "ImageSpec":
        values = _read(cls, data, where)
        artifact, top = values.get("model_artifact"), values.get("top_layer")
        return cls(**{
            **values, **{k: tuple(values[k]) for k in ("layers", "env", "entrypoint", "repo_tags")},
            "model_artifact": ModelArtifactSpec.from_json(artifact, f"{where}.model_artifact")
            if artifact is not None else None,
            "top_layer": FilesLayerSpec.from_json(top, f"{where}.top_layer") if top is not None else None,
        })
