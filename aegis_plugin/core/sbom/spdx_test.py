from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Any, Dict, Set, Tuple

import pytest

from aegis_plugin.core.sbom import common, testutil
from aegis_plugin.core.sbom.cyclonedx import build_cyclonedx
from aegis_plugin.core.sbom.inventory import InventoryError, from_dict
from aegis_plugin.core.sbom.spdx import build_spdx, spdx_id, validate_spdx


@pytest.fixture(scope="module")
def data() -> bytes:
    return build_spdx(from_dict(testutil.inventory()))


@pytest.fixture(scope="module")
def doc(data: bytes) -> Dict[str, Any]:
    return json.loads(data)


def _write(tmp_path: Path, content: bytes) -> str:
    path = tmp_path / "sbom.spdx.json"
    path.write_bytes(content)
    return str(path)


def _package(doc: Dict[str, Any], name: str) -> Dict[str, Any]:
    return next(p for p in doc["packages"] if p["name"] == name)


def test_valid_for_spdx_tools(tmp_path: Path, data: bytes, doc: Dict[str, Any]) -> None:
    assert validate_spdx(_write(tmp_path, data)) == []
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["dataLicense"] == "CC0-1.0"


def test_validator_reports_problems(tmp_path: Path, doc: Dict[str, Any]) -> None:
    broken = json.loads(json.dumps(doc))
    broken["files"][0]["checksums"] = [c for c in broken["files"][0]["checksums"] if c["algorithm"] != "SHA1"]
    del broken["hasExtractedLicensingInfos"]
    messages = validate_spdx(_write(tmp_path, common.canonical_json(broken)))
    assert any("SHA1" in m for m in messages), messages
    assert any("LicenseRef-debian-public-domain" in m for m in messages), messages
    assert validate_spdx(_write(tmp_path, b'{"spdxVersion": "SPDX-2.3"}'))[0].startswith("cannot parse")


def test_bytes_are_canonical(data: bytes, doc: Dict[str, Any]) -> None:
    assert data.endswith(b"}\n") and data == common.canonical_json(doc)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_shuffled_input_gives_identical_bytes(data: bytes, seed: int) -> None:
    assert build_spdx(testutil.shuffled(testutil.inventory(), seed)) == data


def test_creation_info_and_namespace(doc: Dict[str, Any]) -> None:
    assert doc["creationInfo"]["created"] == "2025-11-24T16:00:00Z"
    assert doc["creationInfo"]["creators"] == [
        "Tool: aegis", "Organization: Example ML Platform Team (ml-platform@example.invalid)"
    ]
    prefix = "https://aegis.invalid/spdx/aegis/fraud-detector/1.0.0/"
    assert doc["documentNamespace"].startswith(prefix)
    derived = uuid.UUID(doc["documentNamespace"][len(prefix):])
    assert derived.version == 5
    assert derived == common.content_uuid("spdx", {k: v for k, v in doc.items() if k != "documentNamespace"})
    changed = testutil.inventory()
    changed["app"]["files"][0]["sha256"] = "0" * 64
    assert json.loads(build_spdx(changed))["documentNamespace"] != doc["documentNamespace"]


def test_debian_and_python_packages(doc: Dict[str, Any]) -> None:
    inv = from_dict(testutil.inventory())
    for pkg in inv.debian:
        package = _package(doc, pkg.name)
        assert package["versionInfo"] == pkg.version
        # The .deb's own digests: the lock's sha256 and the sha512 the layer step took in the same read.
        assert package["checksums"] == [{"algorithm": "SHA256", "checksumValue": pkg.sha256},
                                        {"algorithm": "SHA512", "checksumValue": pkg.sha512}]
        assert package["externalRefs"] == [
            {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
             "referenceLocator": common.debian_purl(pkg)}
        ]
        assert package["packageFileName"] == pkg.deb_filename and package["filesAnalyzed"] is False
    for dist in inv.python:
        package = _package(doc, dist.name)
        # The installed wheel's digests (packageFileName), not every file the lock pins for the release.
        assert package["checksums"] == [{"algorithm": "SHA256", "checksumValue": dist.wheel_sha256},
                                        {"algorithm": "SHA512", "checksumValue": dist.wheel_sha512}]
        assert package["externalRefs"][0]["referenceLocator"] == f"pkg:pypi/{dist.name}@{dist.version}"
        assert package["packageFileName"] == dist.wheel
    assert _package(doc, "libc6")["licenseDeclared"] == (
        "GPL-2.0-or-later AND LGPL-2.1-or-later AND LicenseRef-debian-public-domain"
    )
    assert _package(doc, "libgcc-s1")["licenseDeclared"] == "GPL-3.0-or-later WITH GCC-exception-3.1"
    assert _package(doc, "libexpat1")["licenseDeclared"] == "MIT"
    assert _package(doc, "media-types")["licenseDeclared"] == "NOASSERTION"
    assert _package(doc, "numpy")["licenseDeclared"] == "BSD-3-Clause AND 0BSD AND MIT AND Zlib AND CC0-1.0"
    assert _package(doc, "huggingface-hub")["licenseDeclared"] == "NOASSERTION"
    assert _package(doc, "filelock")["licenseDeclared"] == "LicenseRef-pypi-The-Unlicense-Unlicense"
    extracted = {e["licenseId"]: e for e in doc["hasExtractedLicensingInfos"]}
    assert set(extracted) == {
        "LicenseRef-debian-BSD-variant", "LicenseRef-debian-public-domain", "LicenseRef-pypi-The-Unlicense-Unlicense"
    }
    assert extracted["LicenseRef-pypi-The-Unlicense-Unlicense"]["extractedText"] == "The Unlicense (Unlicense)"


def test_model_package_files_and_card(doc: Dict[str, Any]) -> None:
    inv = from_dict(testutil.inventory())
    model = _package(doc, "fraud-detector")
    assert model["licenseDeclared"] == "Apache-2.0" and model["supplier"] == "Organization: Aegis maintainers"
    assert model["filesAnalyzed"] is True
    expected_code = hashlib.sha1("".join(sorted(f.sha1 for f in inv.model.files)).encode()).hexdigest()
    assert model["packageVerificationCode"] == {"packageVerificationCodeValue": expected_code}
    assert model["description"].startswith("Demonstrating and testing Aegis end to end")
    comments = [a["comment"] for a in model["annotations"]]
    assert "modelCard.quantitativeAnalysis.performanceMetrics: ROC AUC = 0.862" in comments
    assert "modelCard.modelParameters.task: binary classification" in comments
    assert any(c.startswith("modelCard.considerations.technicalLimitations: Synthetic, stationary") for c in comments)
    assert all(a["annotationDate"] == "2025-11-24T16:00:00Z" for a in model["annotations"])
    files = {f["fileName"]: f for f in doc["files"]}
    for f in inv.model.files + inv.app.files:  # type: ignore[operator]
        assert {c["algorithm"]: c["checksumValue"] for c in files["." + f.path]["checksums"]} == {
            "SHA1": f.sha1, "SHA256": f.sha256
        }
    assert files["./app/model/weights.safetensors"]["fileTypes"] == ["BINARY"]
    assert files["./app/server/handler.py"]["fileTypes"] == ["SOURCE"]


def _cyclonedx_edges() -> Set[Tuple[str, str]]:
    bom = json.loads(build_cyclonedx(testutil.inventory()))
    return {(d["ref"], target) for d in bom["dependencies"] for target in d.get("dependsOn", [])}


def test_relationships_mirror_the_cyclonedx_graph(doc: Dict[str, Any]) -> None:
    inv = from_dict(testutil.inventory())
    # bom-ref -> SPDX id, for every element.
    ids = {common.image_ref(inv): spdx_id("Image", inv.image.name, common.image_ref(inv)),
           common.model_ref(inv): spdx_id("Model", inv.model.model_id, common.model_ref(inv)),
           common.app_ref(inv): spdx_id("App", common.app_name(inv), common.app_ref(inv))}
    for pkg in inv.debian:
        ids[common.debian_purl(pkg)] = spdx_id("Deb", f"{pkg.name}-{pkg.architecture}", common.debian_purl(pkg))
    for dist in inv.python:
        ids[common.python_purl(dist)] = spdx_id("PyPI", dist.name, common.python_purl(dist))
    for f in inv.model.files + inv.app.files:  # type: ignore[operator]
        ids[common.file_ref(f.path)] = spdx_id("File", f.path.rsplit("/", 1)[-1], common.file_ref(f.path))
    assert {p["SPDXID"] for p in doc["packages"]} | {f["SPDXID"] for f in doc["files"]} == set(ids.values())

    relationships = {(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"]) for r in doc["relationships"]}
    assert ("SPDXRef-DOCUMENT", "DESCRIBES", ids[common.image_ref(inv)]) in relationships
    mirrored = {(a, b) for a, _, b in relationships if a != "SPDXRef-DOCUMENT"}
    assert mirrored == {(ids[a], ids[b]) for a, b in _cyclonedx_edges()}
    app = ids[common.app_ref(inv)]
    assert {b for a, t, b in relationships if a == app and t == "DEPENDS_ON"} == {
        ids[common.python_purl(d)] for d in inv.python
    }


def test_bad_inventory_is_rejected() -> None:
    data = testutil.inventory()
    del data["app"]["files"][0]["sha1"]
    with pytest.raises(InventoryError, match=r"app\.files\[0\]: missing key\(s\) 'sha1'"):
        build_spdx(data)


def test_license_text_and_empty_package_lists(tmp_path: Path) -> None:
    data = testutil.inventory()
    data["debian"], data["python"] = [], [data["python"][0]]
    text = "Copyright (c) 2005, NumPy Developers.\nAll rights reserved.\n\nRedistribution..."
    data["python"][0]["license"] = text
    output = build_spdx(data)
    assert validate_spdx(_write(tmp_path, output)) == []
    doc = json.loads(output)
    ref = _package(doc, "numpy")["licenseDeclared"]
    assert ref.startswith("LicenseRef-pypi-Copyright-c-2005-NumPy-Developers")
    assert doc["hasExtractedLicensingInfos"] == [
        {"licenseId": ref, "name": "Copyright (c) 2005, NumPy Developers.", "extractedText": text}
    ]


def test_who_supplied_and_wrote_each_package(doc: Dict[str, Any]) -> None:
    """NTIA's supplier on every package, from the records that name one; copyright notices and the
    concluded license (the declared one) where the records state them, NOASSERTION where they do not."""
    assert all(p.get("supplier", "NOASSERTION") != "NOASSERTION" for p in doc["packages"])
    libc = _package(doc, "libc6")
    assert libc["supplier"] == "Organization: glibc Maintainers (glibc@lists.debian.org)"
    assert libc["copyrightText"] == "2001-2024 The glibc authors"
    assert libc["licenseConcluded"] == libc["licenseDeclared"] != "NOASSERTION"
    numpy = _package(doc, "numpy")
    assert numpy["supplier"] == numpy["originator"] == "Person: numpy author (a@numpy.invalid)"
    assert numpy["copyrightText"] == "Copyright (c) 2024 numpy author"
    assert numpy["licenseConcluded"] == numpy["licenseDeclared"] == "BSD-3-Clause AND 0BSD AND MIT AND Zlib AND CC0-1.0"
    hub = _package(doc, "huggingface-hub")  # declares no license: nothing concluded either
    assert hub["licenseDeclared"] == hub["licenseConcluded"] == "NOASSERTION"
    for name in ("fraud-detector", "fraud-detector-server"):
        assert _package(doc, name)["supplier"] == "Organization: Aegis maintainers"
        assert _package(doc, name)["licenseConcluded"] == "Apache-2.0"
    image = _package(doc, "aegis/fraud-detector")
    assert image["supplier"] == "Organization: Example ML Platform Team (ml-platform@example.invalid)"


def test_maintainer_before_author_and_silent_records() -> None:
    data = testutil.inventory()
    dist = next(d for d in data["python"] if d["name"] == "safetensors")
    dist.update(maintainers=["Safetensors Team <team@example.invalid>"], copyright=[])
    del data["image"]["creator"]
    doc = json.loads(build_spdx(data))
    package = _package(doc, "safetensors")
    assert package["supplier"] == "Organization: Safetensors Team (team@example.invalid)"
    assert package["originator"] == "Person: safetensors author (a@safetensors.invalid)"
    assert package["copyrightText"] == "NONE"  # none of its text files holds a notice
    assert doc["creationInfo"]["creators"] == ["Tool: aegis"]
    assert _package(doc, "aegis/fraud-detector")["supplier"] == "Organization: Aegis maintainers"


def test_image_concludes_its_parts_licenses_and_copyright_files_without_names() -> None:
    data = testutil.inventory()
    libc = next(p for p in data["debian"] if p["name"] == "libc6")
    libc.update(licenses=[], copyright_file="/usr/share/doc/libc6/copyright")
    data["model"]["card"]["fields"]["copyright"] = "Copyright 2026 Aegis maintainers"
    doc = json.loads(build_spdx(data))
    image = _package(doc, "aegis/fraud-detector")
    # huggingface-hub and media-types declare no license, so nothing is concluded for the image either.
    assert image["licenseConcluded"] == image["licenseDeclared"] == "NOASSERTION"
    assert image["copyrightText"] == _package(doc, "fraud-detector")["copyrightText"] == "Copyright 2026 Aegis maintainers"
    assert _package(doc, "libc6")["licenseConcluded"] == "LicenseRef-debian-libc6-copyright"
    assert "LicenseRef-debian-libc6-copyright" in {e["licenseId"] for e in doc["hasExtractedLicensingInfos"]}

    next(p for p in data["debian"] if p["name"] == "media-types")["licenses"] = ["public-domain"]
    next(d for d in data["python"] if d["name"] == "huggingface-hub")["license"] = "Apache-2.0"
    image = _package(json.loads(build_spdx(data)), "aegis/fraud-detector")
    concluded = image["licenseConcluded"].split(" AND ")
    assert "LicenseRef-debian-libc6-copyright" in concluded and "Apache-2.0" in concluded
    assert concluded == sorted(set(concluded)) and image["licenseDeclared"] == "NOASSERTION"
