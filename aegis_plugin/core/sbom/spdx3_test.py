from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from aegis_plugin.core.sbom import testutil
from aegis_plugin.core.sbom.inventory import from_dict
from aegis_plugin.core.sbom.spdx3 import CONTEXT, Deployable, Deployables, build_spdx3


@pytest.fixture(scope="module")
def data() -> bytes:
    return build_spdx3(from_dict(testutil.inventory()))


@pytest.fixture(scope="module")
def graph(data: bytes) -> Dict[str, Dict[str, Any]]:
    document = json.loads(data)
    assert document["@context"] == CONTEXT
    return {e.get("spdxId", e.get("@id")): e for e in document["@graph"]}


def _named(graph: Dict[str, Dict[str, Any]], name: str, kind: str = "software_Package") -> Dict[str, Any]:
    return next(e for e in graph.values() if e.get("name") == name and e["type"] == kind)


def _relations(graph: Dict[str, Dict[str, Any]], source: str, kind: str) -> List[str]:
    return [t for e in graph.values() if e["type"] == "Relationship" and e["from"] == source
            and e["relationshipType"] == kind for t in e["to"]]


def test_a_build_sbom_rooted_at_the_image(graph: Dict[str, Dict[str, Any]]) -> None:
    (document,) = [e for e in graph.values() if e["type"] == "SpdxDocument"]
    sbom = graph[document["rootElement"][0]]
    assert sbom["type"] == "software_Sbom" and sbom["software_sbomType"] == ["build"]
    image = graph[sbom["rootElement"][0]]
    assert (image["name"], image["software_primaryPurpose"]) == ("aegis/fraud-detector", "container")
    info = graph["_:creationinfo"]
    assert info["specVersion"] == "3.0.1" and info["created"] == "2025-11-24T16:00:00Z"
    (creator,) = info["createdBy"]
    assert graph[creator]["type"] == "Organization" and graph[creator]["externalIdentifier"] == [
        {"type": "ExternalIdentifier", "externalIdentifierType": "email", "identifier": "ml-platform@example.invalid"},
        {"type": "ExternalIdentifier", "externalIdentifierType": "urlScheme",
         "identifier": "https://example.invalid/ml-platform"},
    ]
    assert graph[info["createdUsing"][0]]["type"] == "Tool"
    # Every element is in the document and the SBOM, and every identifier lives under the document's namespace.
    assert set(document["element"]) == set(graph) - {"_:creationinfo", document["spdxId"]}
    assert all(i.startswith(document["spdxId"].split("#")[0] + "#") for i in graph if i != "_:creationinfo")


def test_packages_with_who_licenses_and_files(graph: Dict[str, Dict[str, Any]]) -> None:
    libc = _named(graph, "libc6")
    assert graph[libc["suppliedBy"]]["name"] == "glibc Maintainers"
    assert [graph[o]["name"] for o in libc["originatedBy"]] == ["glibc Maintainers"]
    assert libc["software_copyrightText"] == "2001-2024 The glibc authors"
    assert libc["verifiedUsing"][0]["algorithm"] == "sha256"
    (declared,) = _relations(graph, libc["spdxId"], "hasDeclaredLicense")
    assert _relations(graph, libc["spdxId"], "hasConcludedLicense") == [declared]
    assert graph[declared]["simplelicensing_licenseExpression"].startswith("GPL-2.0-or-later")
    hub = _named(graph, "huggingface-hub")  # declares no license: no license element, no relationship
    assert _relations(graph, hub["spdxId"], "hasConcludedLicense") == []
    image = _named(graph, "aegis/fraud-detector")  # so the image concludes none either
    assert _relations(graph, image["spdxId"], "hasConcludedLicense") == []
    assert "software_copyrightText" not in image  # the card states no notice
    model = _named(graph, "fraud-detector")
    assert model["software_primaryPurpose"] == "model"
    files = [graph[f]["name"] for f in _relations(graph, model["spdxId"], "contains")]
    assert sorted(files) == ["/app/model/model_card.md", "/app/model/tokenizer.json", "/app/model/weights.safetensors"]
    app = _named(graph, "fraud-detector-server")
    assert sorted(graph[d]["name"] for d in _relations(graph, app["spdxId"], "dependsOn")) == [
        "filelock", "huggingface-hub", "numpy", "safetensors", "tokenizers"]
    for relationship in (e for e in graph.values() if e["type"] == "Relationship"):
        assert relationship.get("completeness") == (
            "complete" if relationship["relationshipType"] in ("contains", "dependsOn") else None)


def test_each_package_names_the_file_it_was_installed_from(graph: Dict[str, Dict[str, Any]]) -> None:
    for name, filename in [("libc6", "libc6_2.36-9+deb12u14_amd64.deb"),
                           ("numpy", "numpy-2.4.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")]:
        package = _named(graph, name)
        (artifact,) = _relations(graph, package["spdxId"], "hasDistributionArtifact")
        file = graph[artifact]
        assert (file["type"], file["name"]) == ("software_File", filename)
        assert [h["algorithm"] for h in file["verifiedUsing"]] == ["sha256", "sha512"]
        assert file["verifiedUsing"][0]["hashValue"] in [h["hashValue"] for h in package["verifiedUsing"]]
        assert len(file["verifiedUsing"][1]["hashValue"]) == 128
        assert (file["software_primaryPurpose"], file["software_additionalPurpose"]) == ("archive", ["container"])


DEPLOYABLES = Deployables(
    image=Deployable("sha256:" + "a1" * 32, "b1" * 64, "application/vnd.oci.image.manifest.v1+json"),
    app=Deployable("sha256:" + "a2" * 32, "b2" * 64, "application/vnd.oci.image.layer.v1.tar+gzip"),
    model=Deployable("sha256:" + "a3" * 32, "b3" * 64, "application/vnd.oci.image.manifest.v1+json"),
)


def test_the_image_the_app_and_the_model_name_what_they_are_deployed_as_once_it_is_known(
    graph: Dict[str, Dict[str, Any]]
) -> None:
    names = {"aegis/fraud-detector": DEPLOYABLES.image, "fraud-detector-server": DEPLOYABLES.app,
             "fraud-detector": DEPLOYABLES.model}
    for name in names:  # before the image exists (a document of the layers alone)
        assert _relations(graph, _named(graph, name)["spdxId"], "hasDistributionArtifact") == []
    assert _named(graph, "aegis/fraud-detector")["software_packageUrl"] == "pkg:oci/fraud-detector?arch=amd64&tag=1.0.0"

    document = json.loads(build_spdx3(from_dict(testutil.inventory()), DEPLOYABLES))
    after = {e.get("spdxId", e.get("@id")): e for e in document["@graph"]}
    for name, deployable in names.items():
        (artifact,) = _relations(after, _named(after, name)["spdxId"], "hasDistributionArtifact")
        file = after[artifact]
        assert (file["name"], file["contentType"]) == (f"blobs/sha256/{deployable.digest[7:]}", deployable.media_type)
        assert file["verifiedUsing"] == [
            {"type": "Hash", "algorithm": "sha256", "hashValue": deployable.digest[7:]},
            {"type": "Hash", "algorithm": "sha512", "hashValue": deployable.sha512}]
        assert (file["software_primaryPurpose"], file["software_additionalPurpose"]) == ("archive", ["container"])
    assert _named(after, "aegis/fraud-detector")["software_packageUrl"] == (
        f"pkg:oci/fraud-detector@sha256:{'a1' * 32}?arch=amd64&tag=1.0.0")
    without_artifact = json.loads(build_spdx3(from_dict(testutil.inventory()), Deployables(
        DEPLOYABLES.image, DEPLOYABLES.app)))
    alone = {e.get("spdxId", e.get("@id")): e for e in without_artifact["@graph"]}
    assert _relations(alone, _named(alone, "fraud-detector")["spdxId"], "hasDistributionArtifact") == []


def test_bytes_are_canonical_and_independent_of_input_order(data: bytes) -> None:
    assert data.endswith(b"}\n") and b"urn:aegis" not in data
    assert build_spdx3(testutil.shuffled(testutil.inventory(), 3)) == data
    other = testutil.inventory()
    other["image"]["version"] = "1.0.1"
    assert build_spdx3(other) != data


def test_image_concludes_its_parts_licenses_and_a_distribution_without_notices_says_none() -> None:
    data = testutil.inventory()
    next(p for p in data["debian"] if p["name"] == "media-types")["licenses"] = ["public-domain"]
    next(d for d in data["python"] if d["name"] == "huggingface-hub").update(license="Apache-2.0", copyright=[])
    graph = {e.get("spdxId", e.get("@id")): e for e in json.loads(build_spdx3(data))["@graph"]}
    image = _named(graph, "aegis/fraud-detector")
    (concluded,) = _relations(graph, image["spdxId"], "hasConcludedLicense")
    assert "Apache-2.0" in graph[concluded]["simplelicensing_licenseExpression"].split(" AND ")
    assert _relations(graph, image["spdxId"], "hasDeclaredLicense") == []
    assert _named(graph, "huggingface-hub")["software_copyrightText"] == "NONE"
