import json

import pytest

from aegis_plugin.core.specs import (
    FilesLayerSpec,
    HandlerCheckSpec,
    ImageSpec,
    LayerEntrySpec,
    SpecError,
    to_json,
)

ENTRY = LayerEntrySpec("/app/model/w.safetensors", "field `weights`", "w.safetensors", 0o644, source="in/0/w",
                       check="safetensors")


def test_a_spec_reads_back_as_written() -> None:
    spec = FilesLayerSpec(
        mtime=1, description="app", entries=(ENTRY, LayerEntrySpec("/app/x", "the manifest", "x", 0o644, text="t")),
        checkpoint={"w.safetensors": "checkpoint/0/w"},
        handler_check=HandlerCheckSpec("m/h.py", "/app/server/handler.py", "/app/src", ("numpy",)),
    )
    data = json.loads(json.dumps(to_json(spec)))
    assert FilesLayerSpec.from_json(data) == spec
    assert "text" not in data["entries"][0] and "check" not in data["entries"][1]  # None is left out
    image = ImageSpec(("layer0/out",), "amd64", "linux", 2, "65532", ("A=1",), ("python3",), "/app", {}, {}, "1.0.0",
                      ("aegis/x:1.0.0",))
    assert ImageSpec.from_json(json.loads(json.dumps(to_json(image)))) == image


def test_a_renamed_or_missing_field_names_itself() -> None:
    data = to_json(FilesLayerSpec(mtime=1, description="d", entries=(ENTRY,)))
    data["entries"][0]["sourc"] = data["entries"][0].pop("source")
    with pytest.raises(SpecError, match=r"spec.entries\[0\]: unknown field\(s\) \['sourc'\]"):
        FilesLayerSpec.from_json(data)
    with pytest.raises(SpecError, match=r"spec: missing field\(s\) \['mtime'\]"):
        FilesLayerSpec.from_json({"description": "d", "entries": []})


def test_an_entry_has_one_content_and_a_known_check() -> None:
    with pytest.raises(SpecError, match="exactly one of `source` and `text`"):
        LayerEntrySpec("/a", "o", "a", 0o644)
    with pytest.raises(SpecError, match="unknown check 'safetensor'"):
        LayerEntrySpec("/a", "o", "a", 0o644, text="x", check="safetensor")
    for bad in (dict(text="x", sha256="0" * 64), dict(source="in/0/a", sha256="0" * 63),
                dict(source="in/0/a", sha256="A" * 64)):
        with pytest.raises(SpecError, match="`sha256` is 64 lowercase hex digits, of a `source`"):
            LayerEntrySpec("/a", "o", "a", 0o644, **bad)
    assert LayerEntrySpec("/a", "o", "a", 0o644, source="in/0/a", sha256="0" * 64).sha256 == "0" * 64
