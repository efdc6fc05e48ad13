from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from aegis_plugin.core.sbom import testutil
from aegis_plugin.core.sbom.inventory import InventoryError, ModelCard, from_dict, load


def test_fixture_loads_in_canonical_order() -> None:
    inv = from_dict(testutil.inventory())
    assert [p.name for p in inv.debian] == sorted(p.name for p in inv.debian)
    assert [d.name for d in inv.python] == sorted(d.name for d in inv.python)
    assert [f.path for f in inv.model.files] == sorted(f.path for f in inv.model.files)
    assert [f.path for f in inv.app.files] == sorted(f.path for f in inv.app.files)
    libc6 = next(p for p in inv.debian if p.name == "libc6")
    assert libc6.licenses == ("GPL-2+", "LGPL-2.1+", "public-domain")
    assert inv.image.created == 1764000000
    assert next(d for d in inv.python if d.name == "huggingface-hub").license is None


def test_input_order_does_not_matter() -> None:
    assert from_dict(testutil.shuffled(testutil.inventory())) == from_dict(testutil.inventory())


def test_deb_filename_drops_the_epoch() -> None:
    inv = from_dict(testutil.inventory())
    libcrypt = next(p for p in inv.debian if p.name == "libcrypt1")
    assert libcrypt.deb_filename == "libcrypt1_4.4.33-2_amd64.deb"


def test_file_hashes_are_the_installed_files_own() -> None:
    data = testutil.inventory()
    numpy = next(d for d in data["python"] if d["name"] == "numpy")
    numpy["hashes"].append("sha256:" + "f" * 64)  # another file of the release, for another platform
    dist = next(d for d in from_dict(data).python if d.name == "numpy")
    assert dist.file_hashes == (("sha256", numpy["wheel_sha256"]), ("sha512", numpy["wheel_sha512"]))
    # An inventory from before the layer step reported the wheel: the lock's hashes, as then.
    del numpy["wheel_sha256"], numpy["wheel_sha512"]
    dist = next(d for d in from_dict(data).python if d.name == "numpy")
    assert dist.file_hashes == tuple(("sha256", h) for h in dist.sha256s) and len(dist.file_hashes) == 2


def test_card_lookup_ignores_case_and_dashes() -> None:
    card = from_dict(testutil.inventory()).model.card
    assert card.section("out of scope use") == card.sections["Out-of-scope use"]
    assert card.section("Nope", "INTENDED USE") == card.sections["Intended use"]
    assert card.field("Owner") == "Aegis maintainers"
    assert card.section("missing") is None
    numbered = ModelCard({"3. Out-of-Scope Use": "- no"}, {"Model ID": "m"})
    assert numbered.section("Out-of-scope use") == "- no" and numbered.field("model_id") == "m"


def _set(path: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    def change(data: Dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        elif value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    "change, message",
    [
        (_set("debian.0.sha256", "abc"), r"debian\[0\]\.sha256: expected 64 lowercase hex digits"),
        (_set("debian.0.sha512", "0" * 64), r"debian\[0\]\.sha512: expected 128 lowercase hex digits"),
        (_set("python.0.wheel_sha512", "F" * 128), r"python\[0\]\.wheel_sha512: expected 128 lowercase hex"),
        (_set("python.1.name", "Safe_Tensors"), r"python\[1\]\.name: expected a PEP 503 normalised name"),
        (_set("python.0.hashes", ["md5:00"]), r"python\[0\]\.hashes\[0\]: expected \"sha256:\""),
        (_set("python.0.hashes", []), r"python\[0\]\.hashes: expected at least one hash"),
        (_set("python.0.wheel", "numpy.tar.gz"), r"python\[0\]\.wheel: expected a wheel file name"),
        (_set("image.git_sha", "HEAD"), r"image\.git_sha: expected 40 lowercase hex digits"),
        (_set("image.created", "yesterday"), r"image\.created: expected a non-negative integer, got 'yesterday'"),
        (_set("image.created", True), r"image\.created: expected a non-negative integer"),
        (_set("image.name", _DELETE), r"image: missing key\(s\) 'name'"),
        (_set("image.colour", "blue"), r"image: unknown key\(s\) 'colour'"),
        (_set("model.files.0.sha1", _DELETE), r"model\.files\[0\]: missing key\(s\) 'sha1'"),
        (_set("model.files.0.role", "brain"), r"model\.files\[0\]\.role: expected one of weights"),
        (_set("model.files.0.path", "model/weights.safetensors"), r"expected a normalised absolute path"),
        (_set("app.files.0.path", "/app/model/tokenizer.json"), r"path '/app/model/tokenizer.json' appears twice"),
        (_set("debian.1", testutil.inventory()["debian"][0]), r"debian: package 'libc6:amd64' appears twice"),
        (_set("debian.0.files", ["/usr/../etc/passwd"]), r"debian\[0\]\.files\[0\]: expected a normalised"),
        (_set("model.card.fields.license", 2), r"model\.card\.fields\['license'\]: expected a string"),
        (_set("app.files", []), r"app\.files: expected at least one file"),
        (_set("python", {}), r"inventory: python: expected a list, got an object"),
    ],
)
def test_bad_inventory(change: Callable[[Dict[str, Any]], None], message: str) -> None:
    data = testutil.inventory()
    change(data)
    with pytest.raises(InventoryError, match=message):
        from_dict(data)


def test_model_needs_weights() -> None:
    data = testutil.inventory()
    data["model"]["files"] = [f for f in data["model"]["files"] if f["role"] != "weights"]
    with pytest.raises(InventoryError, match=r"model\.files: no file with role 'weights'"):
        from_dict(data)


def test_not_an_object() -> None:
    with pytest.raises(InventoryError, match=r"^inventory: expected an object, got a list$"):
        from_dict([])


def test_load(tmp_path: Path) -> None:
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(testutil.inventory()))
    assert load(str(path)) == from_dict(testutil.inventory())
    path.write_text("{not json")
    with pytest.raises(InventoryError, match="is not valid JSON"):
        load(str(path))
    with pytest.raises(InventoryError, match="cannot read"):
        load(str(tmp_path / "missing.json"))


def test_lineage_is_checked_and_ordered() -> None:
    data = testutil.inventory()
    dataset = {"role": "training", "name": "b.csv", "location": "d/b.csv", "sha256": "1" * 64, "size": 1}
    data["model"]["lineage"] = {
        "datasets": [dataset, {**dataset, "name": "a.csv", "location": "d/a.csv"}],
        "base_model": None, "training": None,
    }
    lineage = from_dict(data).model.lineage
    assert lineage is not None and [d.location for d in lineage.datasets] == ["d/a.csv", "d/b.csv"]
    data["model"]["lineage"]["datasets"][0]["role"] = "testing"
    with pytest.raises(InventoryError, match=r"model.lineage.datasets\[0\].role: expected one of training, evaluation"):
        from_dict(data)
