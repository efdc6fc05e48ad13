"""The SBOMs of the demo image, checked from outside the build: valid, complete, and true to the image."""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

from aegis_plugin.core.sbom.cyclonedx import validate_cyclonedx
from aegis_plugin.core.sbom.spdx import validate_spdx
from tests.e2e.clones import make_clone

OUT = "models/fraud/fraud"
# The SPDX project's conformance checker (tests/e2e:sbomcheck), put beside the test by Pants.
SBOMCHECK = Path("tests.e2e/sbomcheck.pex")


def _layer_files(blob: bytes) -> dict:
    """Path in the image -> content, for the regular files of one layer (gzip-compressed or plain)."""
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        return {f"/{m.name}": tar.extractfile(m).read() for m in tar if m.isfile()}


def _walk(components: list):
    for component in components:
        yield component
        yield from _walk(component.get("components", []))


def test_sboms_are_valid_complete_and_describe_the_image(tmp_path) -> None:
    clone = make_clone(tmp_path, "sbom")
    # Lineage: a dataset in the repository, one pinned by URL (never downloaded), a base model.
    (clone.root / "models/fraud/data").mkdir()
    (clone.root / "models/fraud/data/holdout.csv").write_text("amount,hour\n12.5,3\n")
    (clone.root / "models/fraud/data/BUILD").write_text(
        'file(name="holdout", source="holdout.csv")\n'
        f'file(name="archive", source=http_source(url="https://data.example.com/fraud/train.parquet", '
        f'sha256="{"a" * 64}", len=123456, filename="train.parquet"))\n'
    )
    build = clone.root / "models/fraud/BUILD"
    build.write_text(build.read_text().replace(
        '    training_script="train.py",',
        '    training_script="train.py",\n    training_data=["./data:archive"],\n'
        '    evaluation_data=["./data:holdout"],\n    base_model="pkg:generic/fraud-base@0.9.0",',
    ))
    clone.git("add", "-A")
    clone.git("commit", "-qm", "lineage")
    result = clone.pants("package", "models/fraud::")
    out = clone.root / "dist" / OUT
    cdx_bytes = (out / "sbom.cdx.json").read_bytes()
    assert validate_cyclonedx(cdx_bytes) == []
    assert validate_spdx(str(out / "sbom.spdx.json")) == []

    image = json.loads((out / "image.json").read_text())
    blobs = [(out / "oci/blobs/sha256" / layer["digest"].split(":")[1]).read_bytes() for layer in image["layers"]]
    # base, deps, weights, the tokenizer (the model's other small files), the model card, app, SBOM
    model_files = {**_layer_files(blobs[2]), **_layer_files(blobs[3]), **_layer_files(blobs[4])}
    app_files, sbom_files = _layer_files(blobs[5]), _layer_files(blobs[6])

    # Components: every locked Debian package, every installed distribution with its lock hashes, the model.
    bom = json.loads(cdx_bytes)
    assert bom["specVersion"] == "1.7"
    components = list(_walk(bom["components"]))
    types = Counter(c["type"] for c in components)
    lock = (clone.root / "3rdparty/debian/python3.11-bookworm.lock").read_text()
    debian = sorted(set(re.findall(r"^Package: (\S+)$", lock, re.M)))  # one paragraph per architecture
    python_lock = _pins(app_files["/app/requirements.lock"].decode())
    assert sorted(c["name"] for c in components if c.get("purl", "").startswith("pkg:deb/debian/")) == debian
    pypi = {c["name"]: c for c in components if c.get("purl", "").startswith("pkg:pypi/")}
    assert sorted(pypi) == sorted(python_lock)
    for name, component in pypi.items():
        assert component["version"] == python_lock[name][0]
        # The installed wheel's own digests: its sha256 is one the lock pins, and its sha512 beside it.
        hashes = {h["alg"]: h["content"] for h in component["hashes"]}
        assert sorted(hashes) == ["SHA-256", "SHA-512"] and hashes["SHA-256"] in python_lock[name][1], hashes
    assert types["machine-learning-model"] == 1 and types["application"] == 1
    (model,) = [c for c in components if c["type"] == "machine-learning-model"]
    card = model["modelCard"]
    assert card["considerations"]["useCases"] and card["quantitativeAnalysis"]["performanceMetrics"]

    # Lineage: the datasets as data components with their pins, the base model, the training run.
    holdout = next(c for c in components if c["bom-ref"] == "data:evaluation:models/fraud/data/holdout.csv")
    assert holdout["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(b"amount,hour\n12.5,3\n").hexdigest()}]
    archive = next(c for c in components if c["bom-ref"].startswith("data:training:"))
    assert archive["hashes"] == [{"alg": "SHA-256", "content": "a" * 64}] and archive["type"] == "data"
    assert {"ref": holdout["bom-ref"]} in card["modelParameters"]["datasets"]
    assert model["pedigree"]["ancestors"][0]["purl"] == "pkg:generic/fraud-base@0.9.0"
    (workflow,) = bom["formulation"][0]["workflows"]
    script = (clone.root / "models/fraud/train.py").read_bytes()
    assert bom["formulation"][0]["components"][0]["hashes"][0]["content"] == hashlib.sha256(script).hexdigest()
    head = clone.git("rev-parse", "HEAD").strip()
    assert {"name": "aegis:training:revision", "value": head} in workflow["properties"]

    # Every model and app file is listed with the sha256 of the bytes in the image.
    listed = {c["name"]: c for c in components if c["type"] == "file"}
    assert set(listed) == set(model_files) | set(app_files)
    for path, content in {**model_files, **app_files}.items():
        assert {"alg": "SHA-256", "content": hashlib.sha256(content).hexdigest()} in listed[path]["hashes"]

    # Compliance, judged by the SPDX project's own checker: both SPDX documents meet the NTIA minimum elements
    # (a supplier on every package) and every component element of CISA's 2024 minimum (a concluded license and
    # a copyright text on every package); the SPDX 3 one meets that minimum whole (SPDX 2.3 has no SBOM type).
    for spec, path in (("spdx2", "sbom.spdx.json"), ("spdx3", "sbom.spdx3.json")):
        assert _sbomcheck(spec, "ntia", out / path)["isConformant"], path
        fsct = _sbomcheck(spec, "fsct3-min", out / path)
        assert fsct["validationMessages"] == [] and fsct["parsingError"] == [], path
        assert all(fsct[key]["allProvided"] for key in (
            "componentNames", "componentVersions", "componentIdentifiers", "componentSuppliers",
            "componentConcludedLicenses", "componentCopyrightTexts")), (path, fsct)
        assert fsct["isConformant"] == (spec == "spdx3"), (path, fsct)
    spdx2_packages = json.loads((out / "sbom.spdx.json").read_text())["packages"]
    assert {p["name"]: p["copyrightText"] for p in spdx2_packages}["tokenizers"] == "NONE"  # no notice in any file
    assert "LicenseRef-debian-libcrypt1-copyright" in {p["name"]: p for p in spdx2_packages}["libcrypt1"][
        "licenseConcluded"]
    # BSI TR-03183-2: the SBOM's creator (with its URL), every component's creator (with an e-mail or URL), the
    # completeness of every dependency list, and each component's deployable file by name with its SHA-512
    # (a "structured" distribution file): each .deb and wheel, the image's manifest, the app's layer and the
    # model's ModelPack artifact. The checker finds the SPDX 3 document conformant.
    bsi = _sbomcheck("spdx3", "bsi", out / "sbom.spdx3.json")
    assert bsi["isConformant"] and bsi["parsingError"] == [], bsi
    graph = {e.get("spdxId"): e for e in json.loads((out / "sbom.spdx3.json").read_text())["@graph"]}
    shipped = {graph[r["from"]]["name"]: [graph[t] for t in r["to"]] for r in graph.values()
               if r.get("relationshipType") == "hasDistributionArtifact"}
    index = json.loads((out / "oci/index.json").read_text())
    artifact = next(m["digest"] for m in index["manifests"] if m.get("artifactType"))
    deployed = {"aegis/fraud-detector": image["manifest_digest"], "fraud-detector": artifact,
                "fraud-detector-server": image["layers"][5]["digest"]}
    for name, digest in deployed.items():
        blob = (out / "oci/blobs/sha256" / digest.split(":")[1]).read_bytes()
        (element,) = shipped[name]
        assert element["name"] == f"blobs/sha256/{digest.split(':')[1]}"
        assert {h["algorithm"]: h["hashValue"] for h in element["verifiedUsing"]} == {
            "sha256": hashlib.sha256(blob).hexdigest(), "sha512": hashlib.sha512(blob).hexdigest()}
    image_package = next(e for e in graph.values() if e.get("name") == "aegis/fraud-detector")
    assert image_package["software_packageUrl"].startswith(f"pkg:oci/fraud-detector@{image['manifest_digest']}?")

    # Suppliers come from the image's own records: each Debian package's Maintainer (its dpkg status in the
    # base layer), each distribution's METADATA (in the deps layer).
    spdx = {p["name"]: p for p in json.loads((out / "sbom.spdx.json").read_text())["packages"]}
    base_files, deps_files = _layer_files(blobs[0]), _layer_files(blobs[1])
    for name in debian:
        status = base_files[f"/var/lib/dpkg/status.d/{name}"].decode()
        who, address = re.search(r"^Maintainer: (.*?) <(.*)>$", status, re.M).groups()
        supplier = rf"(Person|Organization): {re.escape(who)} \({re.escape(address)}\)"
        assert re.fullmatch(supplier, spdx[name]["supplier"]), (name, spdx[name]["supplier"])
    for name in pypi:
        (metadata,) = [content.decode() for path, content in deps_files.items() if path.endswith(".dist-info/METADATA")
                       and path.split("/")[-2].lower().startswith(name.replace("-", "_") + "-")]
        who, address = re.fullmatch(r"(?:Person|Organization): (.*?)(?: \((.*)\))?", spdx[name]["supplier"]).groups()
        assert who in metadata and (address or "") in metadata, (name, spdx[name]["supplier"])
        assert spdx[name]["licenseConcluded"] == spdx[name]["licenseDeclared"]
    assert spdx["fraud-detector"]["supplier"] == "Organization: Aegis maintainers"
    assert bom["metadata"]["manufacturer"]["name"] == "Aegis maintainers"

    # The image carries the SPDX document, and only it, in its top layer.
    assert sbom_files == {"/app/sbom.spdx.json": (out / "sbom.spdx.json").read_bytes()}

    # Completeness: every file attributed or knowingly allowed, and the console says so.
    report = json.loads((out / "sbom-completeness.json").read_text())
    assert report["unattributed"] == [] and report["overlaps"] == [] and report["unrecorded"] == []
    assert report["by_type"]["deb"] > 2000 and report["by_type"]["pypi"] > 1000
    assert report["by_type"]["model"] == 3 and report["by_type"]["app"] == len(app_files)
    assert report["by_type"]["allowed"] == 4 and report["attributed"] == report["total"] - 4
    assert f"{report['attributed']} of {report['total']} image files attributed" in result.stderr

    # Without the allow-list the base's generated files are unattributed: package fails and writes nothing.
    shutil.rmtree(clone.root / "dist")
    failed = clone.pants("--aegis-sbom-allow=[]", "package", "models/fraud::", check=False)
    assert failed.returncode != 0
    assert (
        f"models/fraud:fraud: SBOM does not account for 4 of {report['total']} files in the image: /etc/group, "
        "/etc/nsswitch.conf, /etc/passwd, /etc/ssl/certs/ca-certificates.crt: give them to a component"
    ) in failed.stderr
    assert not (clone.root / "dist").exists()


def _sbomcheck(spec: str, standard: str, path) -> dict:
    """The checker's JSON verdict (`sbomcheck -r json`); it exits 1 when the document is not conformant."""
    checked = subprocess.run([str(SBOMCHECK.resolve()), "-s", spec, "-c", standard, "-r", "json", str(path)],
                             capture_output=True, text=True)
    assert checked.returncode in (0, 1) and checked.stdout, checked.stderr
    return json.loads(checked.stdout)


def _pins(requirements_lock: str) -> dict:
    """name -> (version, {sha256 hex}) of a hash-pinned requirements lock."""
    pins = {}
    for block in re.split(r"\n(?=[a-z0-9])", requirements_lock):
        match = re.match(r"([a-z0-9-]+)==(\S+)", block)
        if match:
            pins[match.group(1)] = (match.group(2), set(re.findall(r"sha256:([0-9a-f]{64})", block)))
    return pins
