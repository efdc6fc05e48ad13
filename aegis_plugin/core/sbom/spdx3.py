"""The SPDX 3.0.1 JSON-LD document of an image (``sbom.spdx3.json``), written directly and canonically.

Why a second SPDX document: the compliance profiles that name an SBOM's type (CISA's 2024 "Framing Software
Component Transparency", a build SBOM here) or its creator's contact and its relationships' completeness (BSI
TR-03183-2) exist only in SPDX 3. ``sbom.spdx.json`` stays SPDX 2.3, which today's scanners read; both say
the same, from the same inventory:

- an ``SpdxDocument`` whose root is a ``software_Sbom`` (type ``build``) whose root is the image;
- one ``software_Package`` per component (the image as a ``container``, each Debian package and Python
  distribution as a ``library`` with its purl and sha256, the model as a ``model``, the app as an
  ``application``), with ``suppliedBy`` (as in the SPDX 2.3 document), ``originatedBy`` (BSI's "creator": who
  made and maintains it: a Debian package's Maintainer, a distribution's authors and maintainers, the card's
  owner, the configured organisation), each a Person or Organization element carrying its e-mail or
  URL as an external identifier, and ``software_copyrightText``, from ``parties.py``'s records;
- the model's and the app's files as ``software_File`` elements with their sha256;
- each component's deployable file as a ``software_File`` (name, sha256 and sha512, purpose ``archive``,
  additional purpose ``container``) linked by ``hasDistributionArtifact``, for BSI: a Debian package's .deb,
  a distribution's wheel; and, known only once the image exists (``Deployables``), the image's manifest, the
  app's layer and the model's ModelPack artifact (each named by its OCI layout path, ``blobs/sha256/<hex>``,
  with its media type). So this document is written after the image, outside it (the image carries the SPDX
  2.3 one), and also names the image's purl by its manifest digest;
- declared and concluded licenses as ``simplelicensing_LicenseExpression`` elements, linked by
  ``hasDeclaredLicense``/``hasConcludedLicense`` (concluded = declared; the image's, every part's ANDed, as in
  the SPDX 2.3 document);
- ``contains`` (image -> packages, model and app; model and app -> their files) and ``dependsOn`` (app ->
  distributions) relationships, each ``complete``: the completeness check proved every file accounted for.

A fact no record states is left out (SPDX 3 has no NOASSERTION strings for these properties). Identifiers
are IRIs under the document's namespace, derived from names and references; the namespace's uuid5 is taken
over the rest of the document, and every list is sorted, so the same inventory gives the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from aegis_plugin.core.sbom import card as card_facts
from aegis_plugin.core.sbom import common, licenses, parties
from aegis_plugin.core.sbom.inventory import AppFile, Inventory, ModelFile, from_dict
from aegis_plugin.core.sbom.spdx import document_namespace

CONTEXT = "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"
SPEC_VERSION = "3.0.1"
_CREATION_INFO = "_:creationinfo"
_BASE = "urn:aegis:spdx3:"  # stands for the namespace until the content uuid is known (see build_spdx3)


def _local_id(kind: str, ref: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", ref).strip("-.")[:60] or "x"
    return f"{_BASE}{kind}-{slug}-{hashlib.sha256(ref.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Deployable:
    """A blob of the image's OCI layout that a component is deployed as."""

    digest: str  # "sha256:<hex>"
    sha512: str
    media_type: str

    @property
    def filename(self) -> str:
        return f"blobs/sha256/{self.digest[len('sha256:'):]}"


@dataclass(frozen=True)
class Deployables:
    """What the image's own components are deployed as, known once the image is built."""

    image: Deployable  # its manifest
    app: Deployable  # its layer
    model: Optional[Deployable] = None  # its ModelPack artifact's manifest, when `package` writes one


class _Graph:
    """The elements of one document, each added once, with the relationships and license elements."""

    def __init__(self) -> None:
        self.elements: Dict[str, Dict[str, Any]] = {}
        self.relationships: Dict[Tuple[str, str, Tuple[str, ...]], None] = {}

    def add(self, element: Dict[str, Any]) -> str:
        element.setdefault("creationInfo", _CREATION_INFO)
        self.elements.setdefault(element["spdxId"], element)
        return element["spdxId"]

    def agent(self, party: parties.Party) -> str:
        element: Dict[str, Any] = {
            "type": "Organization" if party.is_organization else "Person",
            "spdxId": _local_id("Agent", f"{party.name}|{party.email or ''}|{party.url or ''}"),
            "name": party.name,
        }
        identifiers = [("email", party.email), ("urlScheme", party.url)]
        found = [{"type": "ExternalIdentifier", "externalIdentifierType": kind, "identifier": value}
                 for kind, value in identifiers if value]
        if found:
            element["externalIdentifier"] = found
        return self.add(element)

    def license(self, expression: str) -> str:
        return self.add({"type": "simplelicensing_LicenseExpression", "spdxId": _local_id("License", expression),
                         "simplelicensing_licenseExpression": expression})

    def relate(self, source: str, kind: str, targets: Sequence[str]) -> None:
        if targets:
            self.relationships[(source, kind, tuple(sorted(set(targets))))] = None

    def package(
        self, kind: str, ref: str, name: str, version: str, purpose: str, supplier: Optional[parties.Party],
        originators: Sequence[parties.Party] = (), copyright: Sequence[str] = (), license: Optional[str] = None,
        concluded: Optional[str] = None, **fields: Any,
    ) -> str:
        element: Dict[str, Any] = {"type": "software_Package", "spdxId": _local_id(kind, ref), "name": name,
                                   "software_packageVersion": version, "software_primaryPurpose": purpose}
        if supplier is not None:
            element["suppliedBy"] = self.agent(supplier)
        if originators:
            element["originatedBy"] = sorted({self.agent(p) for p in originators})
        if copyright:
            element["software_copyrightText"] = "\n".join(copyright)
        element.update({k: v for k, v in fields.items() if v})
        spdx_id = self.add(element)
        if license:
            self.relate(spdx_id, "hasDeclaredLicense", [self.license(license)])
        if concluded or license:
            self.relate(spdx_id, "hasConcludedLicense", [self.license(concluded or license)])
        return spdx_id

    def distribution(self, package_id: str, filename: str, sha256: str, sha512: str,
                     content_type: Optional[str] = None) -> None:
        """The file the package is deployed as (a .deb, a wheel, an image layer or manifest), linked by
        `hasDistributionArtifact`: its name and SHA-512 are what BSI TR-03183-2 asks of each component; an
        archive of files is "structured", which SPDX 3 says as the additional purpose `container`. Without a
        SHA-512 (an inventory from before they were recorded) it is left out."""
        if not (filename and sha512):
            return
        element = {
            "type": "software_File", "spdxId": _local_id("Distribution", filename), "name": filename,
            "verifiedUsing": _hashes([("sha256", sha256), ("sha512", sha512)]),
            "software_primaryPurpose": "archive", "software_additionalPurpose": ["container"],
        }
        if content_type:
            element["contentType"] = content_type
        self.relate(package_id, "hasDistributionArtifact", [self.add(element)])

    def deployed(self, package_id: str, deployable: Optional[Deployable]) -> None:
        if deployable is not None:
            self.distribution(package_id, deployable.filename, deployable.digest[len("sha256:"):], deployable.sha512,
                              deployable.media_type)

    def file(self, f: Union[ModelFile, AppFile]) -> str:
        return self.add({"type": "software_File", "spdxId": _local_id("File", common.file_ref(f.path)),
                         "name": f.path, "verifiedUsing": [_sha256(f.sha256)]})


def _hashes(file_hashes: Iterable[Tuple[str, str]]) -> List[Dict[str, str]]:
    return [{"type": "Hash", "algorithm": alg, "hashValue": value} for alg, value in file_hashes]


def _sha256(hexdigest: str) -> Dict[str, str]:
    return {"type": "Hash", "algorithm": "sha256", "hashValue": hexdigest}


def _graph(inv: Inventory, deployables: Optional[Deployables]) -> Tuple[_Graph, str, List[str]]:
    """All elements; the image's id; the document's creators (agent ids)."""
    graph, refs = _Graph(), licenses.LicenseRefs()
    image, model = inv.image, inv.model
    facts = card_facts.facts(model.card)
    owner, creator = parties.owner(inv), parties.creator(inv)
    card_license = licenses.declared_expression(facts.license, "model", refs)
    card_copyright = [facts.copyright] if facts.copyright else []

    contained = []
    for pkg in inv.debian:
        purl = common.debian_purl(pkg)
        deb_id = graph.package(
            "Deb", purl, pkg.name, pkg.version, "library", parties.parse(pkg.maintainer),
            originators=[parties.parse(pkg.maintainer)], copyright=pkg.copyright,
            license=licenses.debian_expression(pkg.licenses, refs, pkg.name, pkg.copyright_file),
            software_packageUrl=purl, verifiedUsing=_hashes(pkg.file_hashes),
        )
        graph.distribution(deb_id, pkg.deb_filename, pkg.sha256, pkg.sha512)
        contained.append(deb_id)
    dists = []
    for dist in inv.python:
        purl = common.python_purl(dist)
        dist_id = graph.package(
            "PyPI", purl, dist.name, dist.version, "library", parties.first(dist.maintainers, dist.authors),
            originators=[parties.parse(a) for a in dist.authors + dist.maintainers],
            copyright=dist.copyright or [common.NO_NOTICE],
            license=licenses.declared_expression(dist.license, "pypi", refs),
            software_packageUrl=purl, verifiedUsing=_hashes(dist.file_hashes),
        )
        graph.distribution(dist_id, dist.wheel, dist.wheel_sha256, dist.wheel_sha512)
        dists.append(dist_id)
    contained += dists

    model_id = graph.package(
        "Model", common.model_ref(inv), model.model_id, model.version, "model", owner,
        originators=[owner] if owner else (),
        copyright=card_copyright, license=card_license,
        summary=f"Machine-learning model {model.model_id} {model.version} ({model.framework} "
        f"{model.framework_version}, accelerator {model.accelerator})",
        description="\n\n".join(facts.use_cases),
    )
    graph.relate(model_id, "contains", [graph.file(f) for f in model.files])
    graph.deployed(model_id, deployables.model if deployables else None)
    app_id = graph.package(
        "App", common.app_ref(inv), common.app_name(inv), image.version, "application", owner,
        originators=[owner] if owner else (),
        copyright=card_copyright, license=card_license,
    )
    graph.relate(app_id, "contains", [graph.file(f) for f in inv.app.files])
    graph.relate(app_id, "dependsOn", dists)
    graph.deployed(app_id, deployables.app if deployables else None)
    contained += [model_id, app_id]

    image_id = graph.package(
        "Image", common.image_ref(inv), image.name, image.version, "container", creator or owner,
        originators=[p for p in (creator or owner,) if p],
        copyright=card_copyright, concluded=licenses.image_concluded(inv, refs),
        software_packageUrl=common.image_purl(image, deployables.image.digest if deployables else None),
        software_sourceInfo=f"built from {image.source_url} at commit {image.git_sha}" if image.source_url
        else f"built at commit {image.git_sha}",
    )
    graph.relate(image_id, "contains", contained)
    graph.deployed(image_id, deployables.image if deployables else None)
    creators = [graph.agent(creator)] if creator else []
    for extracted in refs.extracted():  # the license references the expressions use, with their texts
        graph.add({"type": "simplelicensing_SimpleLicensingText", "name": extracted.license_id,
                   "spdxId": _local_id("LicenseText", extracted.license_id),
                   "simplelicensing_licenseText": extracted.text})
    return graph, image_id, creators


def _document(inv: Inventory, deployables: Optional[Deployables]) -> Dict[str, Any]:
    graph, image_id, creators = _graph(inv, deployables)
    tool = graph.add({"type": "Tool", "spdxId": _local_id("Tool", common.TOOL_NAME), "name": common.TOOL_NAME})
    if not creators:  # createdBy needs an agent: the tool's own, when no organisation is configured
        creators = [graph.add({"type": "SoftwareAgent", "spdxId": _local_id("Agent", common.TOOL_NAME),
                               "name": common.TOOL_NAME})]
    data_license = graph.license("CC0-1.0")
    for (source, kind, targets) in graph.relationships:
        relationship: Dict[str, Any] = {
            "type": "Relationship", "spdxId": _local_id("Relationship", f"{source}|{kind}|{'|'.join(targets)}"),
            "from": source, "relationshipType": kind, "to": list(targets),
        }
        if kind in ("contains", "dependsOn"):
            relationship["completeness"] = "complete"
        graph.add(relationship)
    sbom_id = _local_id("Sbom", common.image_ref(inv))
    everything = sorted(graph.elements)
    sbom = {"type": "software_Sbom", "spdxId": sbom_id, "creationInfo": _CREATION_INFO,
            "name": f"SBOM of {inv.image.name}:{inv.image.version}", "software_sbomType": ["build"],
            "rootElement": [image_id], "element": everything}
    document = {"type": "SpdxDocument", "spdxId": f"{_BASE}document", "creationInfo": _CREATION_INFO,
                "name": f"{inv.image.name}-{inv.image.version}", "dataLicense": data_license,
                "profileConformance": ["core", "simpleLicensing", "software"],
                "rootElement": [sbom_id], "element": sorted([*everything, sbom_id])}
    creation_info = {"type": "CreationInfo", "@id": _CREATION_INFO, "specVersion": SPEC_VERSION,
                     "created": common.created_iso(inv), "createdBy": sorted(creators), "createdUsing": [tool],
                     "comment": f"Source revision {inv.image.git_sha}; the creation time is that revision's time."}
    graph_list = [creation_info, document, sbom, *(graph.elements[k] for k in everything)]
    return {"@context": CONTEXT, "@graph": graph_list}


def build_spdx3(inv: Union[Inventory, Mapping[str, Any]], deployables: Optional[Deployables] = None) -> bytes:
    """The SPDX 3.0.1 JSON-LD document for ``inv``, naming what the image's components are deployed as when
    that is known: canonical UTF-8 bytes ending in a newline."""
    if not isinstance(inv, Inventory):
        inv = from_dict(inv)
    document = _document(inv, deployables)
    namespace = document_namespace(inv, str(common.content_uuid("spdx3", document))) + "#"
    return common.canonical_json(document).replace(_BASE.encode(), namespace.encode())
