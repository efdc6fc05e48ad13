from __future__ import annotations

import json
import uuid
from typing import Any, Dict, Iterator, List

import pytest

from aegis_plugin.core.sbom import common, testutil
from aegis_plugin.core.sbom.cyclonedx import build_cyclonedx, validate_cyclonedx
from aegis_plugin.core.sbom.inventory import InventoryError, from_dict

IMAGE_REF = "image:aegis/fraud-detector@1.0.0"
MODEL_REF = "model:fraud-detector@1.0.0"
APP_REF = "app:aegis/fraud-detector@1.0.0"


@pytest.fixture(scope="module")
def data() -> bytes:
    return build_cyclonedx(from_dict(testutil.inventory()))


@pytest.fixture(scope="module")
def bom(data: bytes) -> Dict[str, Any]:
    return json.loads(data)


def _walk(components: List[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    for component in components:
        yield component
        yield from _walk(component.get("components", []))


def _component(bom: Dict[str, Any], ref: str) -> Dict[str, Any]:
    return next(c for c in _walk(bom["components"]) if c["bom-ref"] == ref)


def _hashes(component: Dict[str, Any]) -> Dict[str, str]:
    return {h["alg"]: h["content"] for h in component.get("hashes", [])}


def test_valid_against_the_1_7_schema(data: bytes, bom: Dict[str, Any]) -> None:
    assert validate_cyclonedx(data) == []
    assert bom["specVersion"] == "1.7" and bom["bomFormat"] == "CycloneDX"


def test_validator_reports_schema_errors(bom: Dict[str, Any]) -> None:
    broken = json.loads(json.dumps(bom))
    broken["components"][0]["type"] = "spaceship"
    broken["metadata"]["timestamp"] = "yesterday"
    messages = validate_cyclonedx(json.dumps(broken))
    assert any("components/0/type" in m and "spaceship" in m for m in messages), messages
    assert any("metadata/timestamp" in m for m in messages), messages
    assert validate_cyclonedx(b"{") != []
    assert any("specVersion" in m for m in validate_cyclonedx(json.dumps({**bom, "specVersion": "1.5"})))


def test_iri_formats_are_still_checked_without_rfc3987_syntax(bom: Dict[str, Any]) -> None:
    import sys

    assert sys.modules.get("rfc3987_syntax", None) is None  # its 1.5 s import is skipped
    broken = json.loads(json.dumps(bom))
    broken["metadata"]["component"]["externalReferences"] = [{"type": "vcs", "url": "http://exa mple/ x"}]
    messages = validate_cyclonedx(json.dumps(broken))
    assert any("externalReferences/0/url" in m for m in messages), messages


def test_bytes_are_canonical(data: bytes, bom: Dict[str, Any]) -> None:
    assert data.endswith(b"}\n")
    assert data == common.canonical_json(bom)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_shuffled_input_gives_identical_bytes(data: bytes, seed: int) -> None:
    assert build_cyclonedx(testutil.shuffled(testutil.inventory(), seed)) == data


def test_no_wall_clock_and_no_random_serial(data: bytes, bom: Dict[str, Any]) -> None:
    assert bom["metadata"]["timestamp"] == "2025-11-24T16:00:00Z"
    serial = uuid.UUID(bom["serialNumber"].removeprefix("urn:uuid:"))
    assert serial.version == 5
    # The serial number is derived from the rest of the content ...
    rest = {k: v for k, v in bom.items() if k != "serialNumber"}
    assert serial == common.content_uuid("cyclonedx", rest)
    # ... so any change of content changes it, and nothing else does.
    changed = testutil.inventory()
    changed["python"][0]["version"] = "2.4.7"
    assert json.loads(build_cyclonedx(changed))["serialNumber"] != bom["serialNumber"]
    later = testutil.inventory()
    later["image"]["created"] += 1
    assert json.loads(build_cyclonedx(later))["metadata"]["timestamp"] == "2025-11-24T16:00:01Z"


def test_metadata(bom: Dict[str, Any]) -> None:
    metadata = bom["metadata"]
    image = metadata["component"]
    assert image["type"] == "container" and image["bom-ref"] == IMAGE_REF
    assert (image["name"], image["version"]) == ("aegis/fraud-detector", "1.0.0")
    assert image["purl"] == "pkg:oci/fraud-detector?arch=amd64&tag=1.0.0"
    assert {"name": "aegis:git_sha", "value": "0123456789abcdef0123456789abcdef01234567"} in metadata["properties"]
    assert [t["name"] for t in metadata["tools"]["components"]] == ["aegis"]
    assert image["externalReferences"] == [{"type": "vcs", "url": "https://example.invalid/aegis.git"}]


def test_debian_packages(bom: Dict[str, Any]) -> None:
    inv = from_dict(testutil.inventory())
    for pkg in inv.debian:
        purl = f"pkg:deb/debian/{pkg.name}@{pkg.version.replace('+', '%2B')}?arch=amd64&distro=debian-12"
        component = _component(bom, purl)
        assert component["purl"] == purl and component["type"] == "library"
        assert _hashes(component) == {"SHA-256": pkg.sha256, "SHA-512": pkg.sha512}
        assert [o["location"] for o in component["evidence"]["occurrences"]] == list(pkg.files)
    libc6 = _component(bom, "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12")
    assert [lic["license"].get("id") or lic["license"]["name"] for lic in libc6["licenses"]] == [
        "GPL-2.0-or-later", "LGPL-2.1-or-later", "public-domain"
    ]
    assert {"name": "aegis:debian:source", "value": "glibc"} in libc6["properties"]
    libgcc = _component(bom, "pkg:deb/debian/libgcc-s1@12.2.0-14%2Bdeb12u1?arch=amd64&distro=debian-12")
    assert libgcc["licenses"] == [
        {"acknowledgement": "declared", "expression": "GPL-3.0-or-later WITH GCC-exception-3.1"}
    ]
    libcrypt = _component(bom, "pkg:deb/debian/libcrypt1@1:4.4.33-2?arch=amd64&distro=debian-12")
    assert {"name": "aegis:debian:package_file", "value": "libcrypt1_4.4.33-2_amd64.deb"} in libcrypt["properties"]
    assert "licenses" not in _component(bom, "pkg:deb/debian/media-types@10.0.0?arch=amd64&distro=debian-12")


def test_python_distributions(bom: Dict[str, Any]) -> None:
    inv = from_dict(testutil.inventory())
    for dist in inv.python:
        component = _component(bom, f"pkg:pypi/{dist.name}@{dist.version}")
        assert component["purl"] == f"pkg:pypi/{dist.name}@{dist.version}"
        assert _hashes(component) == {"SHA-256": dist.wheel_sha256, "SHA-512": dist.wheel_sha512}
        assert {"name": "aegis:python:wheel", "value": dist.wheel} in component["properties"]
    numpy = _component(bom, "pkg:pypi/numpy@2.4.6")
    assert numpy["licenses"] == [
        {"acknowledgement": "declared", "expression": "BSD-3-Clause AND 0BSD AND MIT AND Zlib AND CC0-1.0"}
    ]
    assert _component(bom, "pkg:pypi/tokenizers@0.22.1")["licenses"][0]["license"]["id"] == "Apache-2.0"
    filelock = _component(bom, "pkg:pypi/filelock@4.3.1")
    assert filelock["licenses"][0]["license"]["name"] == "The Unlicense (Unlicense)"
    assert "licenses" not in _component(bom, "pkg:pypi/huggingface-hub@0.36.0")


def test_model_component_and_files(bom: Dict[str, Any]) -> None:
    inv = from_dict(testutil.inventory())
    model = _component(bom, MODEL_REF)
    assert model["type"] == "machine-learning-model"
    assert (model["name"], model["version"]) == ("fraud-detector", "1.0.0")
    assert model["licenses"][0]["license"]["id"] == "Apache-2.0"
    assert model["supplier"] == {"name": "Aegis maintainers"}
    assert {"name": "aegis:model:framework_version", "value": "2.4.6"} in model["properties"]
    files = {c["name"]: c for c in model["components"]}
    assert set(files) == {f.path for f in inv.model.files}
    for f in inv.model.files:
        assert files[f.path]["type"] == "file" and files[f.path]["bom-ref"] == f"file:{f.path}"
        assert _hashes(files[f.path]) == {"SHA-256": f.sha256, "SHA-1": f.sha1}
        assert {"name": "aegis:model:role", "value": f.role} in files[f.path]["properties"]


def test_model_card(bom: Dict[str, Any]) -> None:
    card = _component(bom, MODEL_REF)["modelCard"]
    assert card["bom-ref"] == "model-card:fraud-detector@1.0.0"
    parameters = card["modelParameters"]
    assert parameters["task"] == "binary classification"
    assert parameters["modelArchitecture"].startswith("multilayer perceptron")
    assert parameters["datasets"][0]["type"] == "dataset" and parameters["datasets"][0]["name"] == "Training data"
    assert card["quantitativeAnalysis"]["performanceMetrics"] == [
        {"type": "ROC AUC", "value": "0.862"},
        {"type": "average precision (PR AUC)", "value": "0.377"},
        {"type": "log loss", "value": "0.1575"},
    ]
    considerations = card["considerations"]
    assert considerations["useCases"][0].startswith("Demonstrating and testing Aegis end to end")
    assert considerations["technicalLimitations"] == [
        "Synthetic, stationary data: real fraud shifts as fraudsters adapt.",
        "The merchant vocabulary is closed (60 words, all from the generator). New brands, categories or cities"
        " contribute nothing.",
    ]
    assert considerations["ethicalConsiderations"][0]["name"].startswith("The model is trained on invented")
    out_of_scope = [p["value"] for p in card["properties"] if p["name"] == "aegis:modelcard:outOfScopeUse"]
    assert out_of_scope[0].startswith("Any real payment, credit, account or customer decision")


def test_model_card_without_optional_sections_is_still_valid() -> None:
    data = testutil.inventory()
    data["model"]["card"] = {"sections": {}, "fields": {}}
    output = build_cyclonedx(data)
    assert validate_cyclonedx(output) == []
    model = _component(json.loads(output), MODEL_REF)
    assert model["modelCard"] == {
        "bom-ref": "model-card:fraud-detector@1.0.0",
        "properties": [{"name": "aegis:modelcard:file", "value": "/app/model/model_card.md"}],
    }
    assert "licenses" not in model and "supplier" not in model


def test_app_component(bom: Dict[str, Any]) -> None:
    inv = from_dict(testutil.inventory())
    app = _component(bom, APP_REF)
    assert app["type"] == "application" and app["name"] == "fraud-detector-server"
    assert {c["name"]: _hashes(c) for c in app["components"]} == {
        f.path: {"SHA-256": f.sha256, "SHA-1": f.sha1} for f in inv.app.files
    }


def test_dependency_graph(bom: Dict[str, Any]) -> None:
    inv = from_dict(testutil.inventory())
    graph = {d["ref"]: set(d.get("dependsOn", [])) for d in bom["dependencies"]}
    debs = {common.debian_purl(p) for p in inv.debian}
    dists = {common.python_purl(d) for d in inv.python}
    assert graph[IMAGE_REF] == debs | dists | {MODEL_REF, APP_REF}
    assert graph[APP_REF] == dists | {f"file:{f.path}" for f in inv.app.files}
    assert graph[MODEL_REF] == {f"file:{f.path}" for f in inv.model.files}
    # Every component is in the graph (leaves with no dependencies), and every reference resolves.
    refs = {c["bom-ref"] for c in _walk(bom["components"])} | {IMAGE_REF}
    assert set(graph) == refs
    assert set().union(*graph.values()) <= refs
    for leaf in debs | dists:
        assert graph[leaf] == set()


def test_bad_inventory_is_rejected() -> None:
    data = testutil.inventory()
    data["debian"][0]["sha256"] = "nope"
    with pytest.raises(InventoryError, match=r"debian\[0\]\.sha256"):
        build_cyclonedx(data)


def test_license_text_and_empty_package_lists() -> None:
    data = testutil.inventory()
    data["debian"], data["python"] = [], [data["python"][0]]
    data["python"][0]["license"] = "Copyright (c) 2005, NumPy Developers.\nAll rights reserved.\n\nRedistribution..."
    output = build_cyclonedx(data)
    assert validate_cyclonedx(output) == []
    bom = json.loads(output)
    license_ = _component(bom, "pkg:pypi/numpy@2.4.6")["licenses"][0]["license"]
    assert license_["name"] == "Copyright (c) 2005, NumPy Developers."
    assert license_["text"]["content"].endswith("Redistribution...")
    graph = {d["ref"]: d.get("dependsOn", []) for d in bom["dependencies"]}
    assert graph[IMAGE_REF] == [APP_REF, MODEL_REF, "pkg:pypi/numpy@2.4.6"]



LIBC6_REF = "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12"


def test_each_list_is_sorted_and_holds_each_entry_once() -> None:
    """Entries that say the same thing (two DEP-5 names for one SPDX id, one author spelt two ways) appear once,
    license ids before names and authors by name, whatever order the inventory gives them in."""
    data = testutil.inventory()
    libc6 = next(p for p in data["debian"] if p["name"] == "libc6")
    libc6["licenses"] = ["BSD-variant", "GPL-2.0", "LGPL-2.1+", "GPL-2"]
    numpy = next(d for d in data["python"] if d["name"] == "numpy")
    numpy["maintainers"] = ["NumPy Developers <numpy@numpy.invalid>"]
    numpy["authors"] = ["numpy author <a@numpy.invalid>", '"Zed" <z@numpy.invalid>', "Zed  <z@numpy.invalid>"]
    output = build_cyclonedx(data)
    assert validate_cyclonedx(output) == []
    bom = json.loads(output)
    declared = {"acknowledgement": "declared"}
    assert _component(bom, LIBC6_REF)["licenses"] == [
        {"license": {"id": "GPL-2.0-only", **declared}},
        {"license": {"id": "LGPL-2.1-or-later", **declared}},
        {"license": {"name": "BSD-variant", **declared}},
    ]
    assert _component(bom, "pkg:pypi/numpy@2.4.6")["authors"] == [
        {"name": "Zed", "email": "z@numpy.invalid"}, {"name": "numpy author", "email": "a@numpy.invalid"}]
    assert build_cyclonedx(testutil.shuffled(data, 3)) == output


def test_characters_a_uri_cannot_hold_are_escaped_and_a_broken_one_is_reported() -> None:
    data = testutil.inventory()
    data["image"]["creator"]["url"] = "https://example.invalid/ml platform/{team}"
    output = build_cyclonedx(data)
    assert validate_cyclonedx(output) == []
    assert json.loads(output)["metadata"]["supplier"]["url"] == ["https://example.invalid/ml%20platform/%7Bteam%7D"]

    data["image"]["creator"]["url"] = "https://example.invalid/%zz"
    assert "metadata/supplier/url/0: 'https://example.invalid/%zz' is not a 'iri-reference'" in validate_cyclonedx(
        build_cyclonedx(data))


REGISTRY = {
    "source": "models:/fraud-detector/3",
    "run_id": "7211af93442a47abba7694e4e7920b6d",
    "experiment": "fraud",
    "registered_model": "fraud-detector",
    "model_version": "3",
    "git_commit": "b" * 40,
    "tracking_uri": "https://mlflow.example.com",
    "params": {"lr": "0.05", "epochs": "200"},
    "metrics": {"auc": 0.981, "f1": 0.88},
}


def test_registry_provenance_of_the_model() -> None:
    data = testutil.inventory()
    data["model"]["registry"] = REGISTRY
    output = build_cyclonedx(from_dict(data))
    assert validate_cyclonedx(output) == []
    model = _component(json.loads(output), MODEL_REF)
    properties = {p["name"]: p["value"] for p in model["properties"]}
    assert {k: v for k, v in properties.items() if ":mlflow:" in k} == {
        f"{common.PROPERTY_PREFIX}:mlflow:{k}": v for k, v in {
            "source": "models:/fraud-detector/3", "run_id": REGISTRY["run_id"], "experiment": "fraud",
            "registered_model": "fraud-detector", "model_version": "3", "training_git_commit": "b" * 40,
            "tracking_uri": "https://mlflow.example.com", "param:epochs": "200", "param:lr": "0.05",
        }.items()
    }
    assert sorted((r["type"], r["url"]) for r in model["externalReferences"]) == [
        ("build-meta", f"runs:/{REGISTRY['run_id']}"), ("distribution", "models:/fraud-detector/3"),
    ]
    metrics = model["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
    assert {"type": "auc", "value": "0.981", "slice": f"MLflow run {REGISTRY['run_id']}"} in metrics
    assert build_cyclonedx(from_dict(testutil.shuffled(data))) == output


def test_registry_metrics_must_be_numbers() -> None:
    data = testutil.inventory()
    data["model"]["registry"] = {**REGISTRY, "metrics": {"auc": "high"}}
    with pytest.raises(InventoryError, match="model.registry.metrics: expected an object of finite numbers"):
        from_dict(data)


def test_who_supplied_and_wrote_each_component(bom: Dict[str, Any]) -> None:
    """The SPDX document's supplier, author and copyright facts, in CycloneDX's fields."""
    team = {"name": "Example ML Platform Team", "url": ["https://example.invalid/ml-platform"],
            "contact": [{"name": "Example ML Platform Team", "email": "ml-platform@example.invalid"}]}
    metadata = bom["metadata"]
    assert metadata["manufacturer"] == metadata["supplier"] == metadata["component"]["supplier"] == team
    assert metadata["authors"] == [{"name": "Example ML Platform Team", "email": "ml-platform@example.invalid"}]
    assert metadata["lifecycles"] == [{"phase": "build"}]
    libc6 = _component(bom, "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12")
    assert libc6["supplier"] == {"name": "glibc Maintainers",
                                 "contact": [{"name": "glibc Maintainers", "email": "glibc@lists.debian.org"}]}
    assert libc6["copyright"] == "2001-2024 The glibc authors"
    numpy = _component(bom, "pkg:pypi/numpy@2.4.6")
    assert numpy["authors"] == [{"name": "numpy author", "email": "a@numpy.invalid"}]
    assert numpy["supplier"]["name"] == "numpy author"
    assert numpy["copyright"] == "Copyright (c) 2024 numpy author"
    app = _component(bom, "app:aegis/fraud-detector@1.0.0")
    assert app["supplier"] == {"name": "Aegis maintainers"}
    assert app["licenses"][0]["license"]["id"] == "Apache-2.0"



def test_image_concludes_its_parts_licenses() -> None:
    data = testutil.inventory()
    next(p for p in data["debian"] if p["name"] == "media-types")["licenses"] = ["public-domain"]
    next(d for d in data["python"] if d["name"] == "huggingface-hub")["license"] = "Apache-2.0"
    data["model"]["card"]["fields"]["copyright"] = "Copyright 2026 Aegis maintainers"
    image = json.loads(build_cyclonedx(data))["metadata"]["component"]
    (concluded,) = image["licenses"]
    assert concluded["acknowledgement"] == "concluded" and "Apache-2.0" in concluded["expression"].split(" AND ")
    assert image["copyright"] == "Copyright 2026 Aegis maintainers"


LINEAGE = {
    "datasets": [
        {"role": "training", "name": "train.csv", "location": "models/fraud/data/train.csv", "sha256": "1" * 64,
         "size": 2048},
        {"role": "evaluation", "name": "holdout.parquet", "location": "https://data.example.com/holdout.parquet",
         "sha256": "2" * 64, "size": 4096},
    ],
    "base_model": "pkg:huggingface/google-bert/bert-base-uncased@86b5e0934494bd15c9632b12f734a8a67f723594",
    "training": {"script": "models/fraud/train.py", "sha256": "3" * 64},
}


def test_lineage_datasets_base_model_and_training_run() -> None:
    data = testutil.inventory()
    data["model"]["lineage"] = LINEAGE
    output = build_cyclonedx(from_dict(data))
    assert validate_cyclonedx(output) == []
    bom = json.loads(output)
    train = _component(bom, "data:training:models/fraud/data/train.csv")
    assert train["type"] == "data" and _hashes(train) == {"SHA-256": "1" * 64}
    assert train["data"][0]["type"] == "dataset" and train["data"][0]["description"].startswith("20,000 synthetic")
    assert train["data"][0]["governance"] == {"owners": [{"organization": {"name": "Aegis maintainers"}}]}
    holdout = _component(bom, "data:evaluation:https://data.example.com/holdout.parquet")
    url = "https://data.example.com/holdout.parquet"
    assert holdout["externalReferences"] == [{"type": "distribution", "url": url}]
    assert holdout["data"][0]["contents"] == {"url": "https://data.example.com/holdout.parquet"}

    model = _component(bom, MODEL_REF)
    assert model["modelCard"]["modelParameters"]["datasets"] == [
        {"ref": "data:training:models/fraud/data/train.csv"},
        {"ref": "data:evaluation:https://data.example.com/holdout.parquet"},
    ]
    (ancestor,) = model["pedigree"]["ancestors"]
    assert (ancestor["type"], ancestor["name"], ancestor["version"]) == (
        "machine-learning-model", "google-bert/bert-base-uncased", "86b5e0934494bd15c9632b12f734a8a67f723594")
    assert ancestor["purl"] == LINEAGE["base_model"]

    (formula,) = bom["formulation"]
    (workflow,) = formula["workflows"]
    assert formula["components"] == [{"type": "file", "name": "models/fraud/train.py",
                                      "bom-ref": "file:models/fraud/train.py",
                                      "hashes": [{"alg": "SHA-256", "content": "3" * 64}]}]
    assert workflow["outputs"] == [{"resource": {"ref": MODEL_REF}}]
    assert [i["resource"]["ref"] for i in workflow["inputs"]] == [  # datasets by role, then the base model
        "data:evaluation:https://data.example.com/holdout.parquet", "data:training:models/fraud/data/train.csv",
        f"base-model:{LINEAGE['base_model']}",
    ]
    assert {"name": "aegis:training:revision", "value": data["image"]["git_sha"]} in workflow["properties"]
    assert build_cyclonedx(from_dict(testutil.shuffled(data))) == output


def test_an_mlflow_run_is_the_training_run() -> None:
    data = testutil.inventory()
    data["model"]["registry"] = REGISTRY
    bom = json.loads(build_cyclonedx(from_dict(data)))
    (workflow,) = bom["formulation"][0]["workflows"]
    assert workflow["uid"] == f"mlflow-run:{REGISTRY['run_id']}"
    assert {"name": "aegis:mlflow:experiment", "value": "fraud"} in workflow["properties"]


def test_without_lineage_the_card_describes_the_datasets_inline(bom: Dict[str, Any]) -> None:
    datasets = _component(bom, MODEL_REF)["modelCard"]["modelParameters"]["datasets"]
    assert [d["name"] for d in datasets] == ["Training data"] and "formulation" not in bom
