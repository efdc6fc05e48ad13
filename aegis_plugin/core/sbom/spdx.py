"""The SPDX 2.3 JSON document of an image (``sbom.spdx.json``), written directly and canonically.

It says what the CycloneDX document says, in SPDX's terms:

- one package per component: the image (CONTAINER), each Debian package and Python distribution (purl
  external refs, SHA256 checksums, ``packageFileName``, ``licenseDeclared``), the model and the app;
- the model's and the app's files as File elements with SHA1 (required by SPDX 2.3) and SHA256 checksums,
  so those two packages are ``filesAnalyzed`` with a package verification code;
- relationships mirroring the CycloneDX graph: DOCUMENT DESCRIBES image; image CONTAINS every Debian
  package, Python distribution, the model and the app; model CONTAINS its files; app CONTAINS its files and
  DEPENDS_ON every Python distribution;
- declared licenses as SPDX expressions, names without an SPDX id as ``LicenseRef-…`` defined in
  ``hasExtractedLicensingInfos`` (``licenses.py``); the concluded license is the declared one (Aegis scans
  no source, so it concludes what the component declares) and NOASSERTION where nothing is declared; the
  image's is every part's ANDed (NOASSERTION if any part's is);
- who: each package's ``supplier`` (a Debian package's Maintainer; a Python distribution's first maintainer,
  else its first author; the model card's owner for the model and the app; the configured organisation, else
  the owner, for the image), ``originator`` (a distribution's first author) and ``copyrightText`` (the
  notices of its copyright or license files, else of a distribution's text files, NONE when none of them
  holds one; the card's ``copyright`` field for the model, the app and the image), NOASSERTION where a
  record is silent; the document's creators are the tool and the configured organisation (``parties.py``);
- the model card's content (SPDX 2.3 has no model fields) as the model package's description and one
  annotation per fact, each comment naming the CycloneDX ``modelCard`` field it mirrors.

Determinism: SPDX ids are derived from names and references, every list is sorted, ``created`` is the
image's time, and ``documentNamespace`` is ``https://aegis.invalid/spdx/<name>/<version>/<uuid5>``, the
uuid5 taken over the rest of the document's canonical bytes.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from aegis_plugin.core.sbom import card as card_facts
from aegis_plugin.core.sbom import common, licenses, parties
from aegis_plugin.core.sbom.inventory import AppFile, Inventory, ModelFile, from_dict

SPDX_VERSION = "SPDX-2.3"
NAMESPACE_BASE = "https://aegis.invalid/spdx"
DOCUMENT_ID = "SPDXRef-DOCUMENT"
NOASSERTION = "NOASSERTION"

_FILE_TYPES = {
    ".py": "SOURCE",
    ".md": "DOCUMENTATION",
    ".json": "TEXT",
    ".yaml": "TEXT",
    ".yml": "TEXT",
    ".lock": "TEXT",
    ".txt": "TEXT",
    ".safetensors": "BINARY",
}


def spdx_id(kind: str, name: str, ref: str) -> str:
    """``SPDXRef-<kind>-<name>-<8 hex of the reference>``: readable and unique (ids allow only [A-Za-z0-9.-])."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-.")[:60] or "x"
    return f"SPDXRef-{kind}-{slug}-{hashlib.sha256(ref.encode()).hexdigest()[:8]}"


def _purl_ref(purl: str) -> Dict[str, str]:
    return {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl}


def _package(
    spdxid: str, name: str, version: str, license: Optional[str] = None, copyright: Sequence[str] = (),
    supplier: Optional[parties.Party] = None, concluded: Optional[str] = None, **fields: Any,
) -> Dict[str, Any]:
    """An SPDX package; ``license`` (an SPDX expression) is declared, and concluded unless ``concluded`` is."""
    package: Dict[str, Any] = {
        "SPDXID": spdxid,
        "name": name,
        "versionInfo": version,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": concluded or license or NOASSERTION,
        "licenseDeclared": license or NOASSERTION,
        "copyrightText": "\n".join(copyright) or NOASSERTION,
    }
    if supplier is not None:
        package["supplier"] = supplier.spdx_actor()
    package.update({k: v for k, v in fields.items() if v is not None})
    return package


def _file_type(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    suffix = name[name.rfind("."):].lower() if "." in name else ""
    return _FILE_TYPES.get(suffix, "OTHER")


def _file(f: Union[ModelFile, AppFile], comment: Optional[str] = None) -> Dict[str, Any]:
    element: Dict[str, Any] = {
        "SPDXID": spdx_id("File", f.path.rsplit("/", 1)[-1], common.file_ref(f.path)),
        "fileName": "." + f.path,
        "checksums": [
            {"algorithm": "SHA1", "checksumValue": f.sha1},
            {"algorithm": "SHA256", "checksumValue": f.sha256},
        ],
        "fileTypes": [_file_type(f.path)],
        "licenseConcluded": NOASSERTION,
        "copyrightText": NOASSERTION,
    }
    if comment:
        element["comment"] = comment
    return element


def _verification_code(files: Sequence[Union[ModelFile, AppFile]]) -> Dict[str, str]:
    """SPDX 2.3 clause 7.9: SHA1 of the files' sorted, concatenated lowercase SHA1s."""
    joined = "".join(sorted(f.sha1 for f in files))
    return {"packageVerificationCodeValue": hashlib.sha1(joined.encode("ascii")).hexdigest()}


def _model_card_annotations(inv: Inventory, created: str) -> List[Dict[str, str]]:
    """One annotation per model card fact, its comment naming the CycloneDX modelCard field it mirrors."""
    facts = card_facts.facts(inv.model.card)
    notes: List[Tuple[str, str]] = []
    for field, value in (
        ("modelParameters.approach.type", facts.approach),
        ("modelParameters.task", facts.task),
        ("modelParameters.architectureFamily", facts.architecture_family),
        ("modelParameters.modelArchitecture", facts.model_architecture),
        ("modelParameters.datasets[Training data]", facts.training_data),
        ("modelParameters.datasets[Evaluation data]", facts.evaluation_data),
    ):
        if value:
            notes.append((field, value))
    for m in facts.metrics:
        notes.append(("quantitativeAnalysis.performanceMetrics", f"{m.name} = {m.value}"
                      + (f" (slice: {m.slice})" if m.slice else "")))
    for field, values in (
        ("considerations.users", facts.users),
        ("considerations.useCases", facts.use_cases),
        ("considerations.technicalLimitations", facts.limitations),
        ("considerations.performanceTradeoffs", facts.tradeoffs),
        ("considerations.ethicalConsiderations", facts.ethical_considerations),
        (f"properties[{common.PROPERTY_PREFIX}:modelcard:outOfScopeUse]", facts.out_of_scope_uses),
    ):
        notes.extend((field, value) for value in values)
    return [
        {
            "annotationDate": created,
            "annotationType": "OTHER",
            "annotator": f"Tool: {common.TOOL_NAME}",
            "comment": f"modelCard.{field}: {value}",
        }
        for field, value in notes
    ]


def _document(inv: Inventory) -> Dict[str, Any]:
    image, model = inv.image, inv.model
    created = common.created_iso(inv)
    refs = licenses.LicenseRefs()
    packages: List[Dict[str, Any]] = []
    files: List[Dict[str, Any]] = []
    relationships: List[Tuple[str, str, str]] = []

    image_id = spdx_id("Image", image.name, common.image_ref(inv))
    facts = card_facts.facts(model.card)
    owner = parties.owner(inv)
    card_copyright = [facts.copyright] if facts.copyright else []
    card_license = licenses.declared_expression(facts.license, "model", refs)
    relationships.append((DOCUMENT_ID, "DESCRIBES", image_id))

    dist_ids = []
    for pkg in inv.debian:
        purl = common.debian_purl(pkg)
        package_id = spdx_id("Deb", f"{pkg.name}-{pkg.architecture}", purl)
        packages.append(_package(
            package_id, pkg.name, pkg.version,
            primaryPackagePurpose="LIBRARY",
            packageFileName=pkg.deb_filename,
            checksums=[{"algorithm": alg.upper(), "checksumValue": value} for alg, value in pkg.file_hashes],
            externalRefs=[_purl_ref(purl)],
            license=licenses.debian_expression(pkg.licenses, refs, pkg.name, pkg.copyright_file),
            copyright=pkg.copyright,
            supplier=parties.parse(pkg.maintainer),
            sourceInfo=f"built from the Debian source package {pkg.source} {pkg.source_version}",
        ))
        relationships.append((image_id, "CONTAINS", package_id))
    for dist in inv.python:
        author = parties.first(dist.authors)
        purl = common.python_purl(dist)
        package_id = spdx_id("PyPI", dist.name, purl)
        packages.append(_package(
            package_id, dist.name, dist.version,
            primaryPackagePurpose="LIBRARY",
            packageFileName=dist.wheel,
            checksums=[{"algorithm": alg.upper(), "checksumValue": value} for alg, value in dist.file_hashes],
            externalRefs=[_purl_ref(purl)],
            license=licenses.declared_expression(dist.license, "pypi", refs),
            copyright=dist.copyright or [common.NO_NOTICE],
            supplier=parties.first(dist.maintainers, dist.authors),
            originator=author.spdx_actor() if author else None,
        ))
        relationships.append((image_id, "CONTAINS", package_id))
        dist_ids.append(package_id)

    model_id = spdx_id("Model", model.model_id, common.model_ref(inv))
    packages.append(_package(
        model_id, model.model_id, model.version,
        license=card_license,
        copyright=card_copyright,
        supplier=owner,
        primaryPackagePurpose="OTHER",
        filesAnalyzed=True,
        packageVerificationCode=_verification_code(model.files),
        summary=f"Machine-learning model {model.model_id} {model.version} ({model.framework} "
        f"{model.framework_version}, accelerator {model.accelerator})",
        description="\n\n".join(facts.use_cases) or None,
        comment="A machine-learning model (CycloneDX component type machine-learning-model); the "
        "annotations carry its model card.",
        annotations=_model_card_annotations(inv, created),
    ))
    relationships.append((image_id, "CONTAINS", model_id))
    for f in model.files:
        element = _file(f, comment=f"model {f.role}, {f.size} bytes")
        files.append(element)
        relationships.append((model_id, "CONTAINS", element["SPDXID"]))

    app_id = spdx_id("App", common.app_name(inv), common.app_ref(inv))
    packages.append(_package(
        app_id, common.app_name(inv), image.version,
        license=card_license,
        copyright=card_copyright,
        supplier=owner,
        primaryPackagePurpose="APPLICATION",
        filesAnalyzed=True,
        packageVerificationCode=_verification_code(inv.app.files),
        summary=f"The application layer of {image.name}:{image.version}: the handler and the Aegis "
        f"inference server that serve {model.model_id}",
    ))
    relationships.append((image_id, "CONTAINS", app_id))
    for f in inv.app.files:
        element = _file(f)
        files.append(element)
        relationships.append((app_id, "CONTAINS", element["SPDXID"]))
    for dist_id in dist_ids:
        relationships.append((app_id, "DEPENDS_ON", dist_id))

    # The image: what its parts' licenses conclude together, and the card's notice (its owner assembles it).
    creator = parties.creator(inv)
    packages.insert(0, _package(
        image_id, image.name, image.version,
        concluded=licenses.image_concluded(inv, refs),
        copyright=card_copyright,
        supplier=creator or owner,
        primaryPackagePurpose="CONTAINER",
        externalRefs=[_purl_ref(common.image_purl(image))],
        builtDate=created,
        sourceInfo=f"built from {image.source_url} at commit {image.git_sha}" if image.source_url else (
            f"built at commit {image.git_sha}"),
        comment=f"OCI image for {image.os}/{image.architecture}. Its manifest digest is not part of this "
        f"document: the image is identified by name and tag.",
    ))

    document: Dict[str, Any] = {
        "spdxVersion": SPDX_VERSION,
        "dataLicense": "CC0-1.0",
        "SPDXID": DOCUMENT_ID,
        "name": f"{image.name}-{image.version}",
        "creationInfo": {
            "created": created,
            "creators": [f"Tool: {common.TOOL_NAME}"] + ([creator.spdx_actor()] if creator else []),
            "comment": f"Source revision {image.git_sha}; the creation time is that revision's time.",
        },
        "packages": sorted(packages, key=lambda p: p["SPDXID"]),
        "files": sorted(files, key=lambda f: f["SPDXID"]),
        "relationships": [
            {"spdxElementId": a, "relationshipType": t, "relatedSpdxElement": b}
            for a, t, b in sorted(set(relationships))
        ],
    }
    extracted = refs.extracted()
    if extracted:
        document["hasExtractedLicensingInfos"] = [
            {"licenseId": e.license_id, "name": e.name, "extractedText": e.text} for e in extracted
        ]
    return document


def document_namespace(inv: Inventory, content_uuid: str) -> str:
    quote = lambda s: urllib.parse.quote(s, safe="/")  # noqa: E731
    return f"{NAMESPACE_BASE}/{quote(inv.image.name)}/{quote(inv.image.version)}/{content_uuid}"


def build_spdx(inv: Union[Inventory, Mapping[str, Any]]) -> bytes:
    """The SPDX 2.3 JSON document for ``inv``: canonical UTF-8 bytes ending in a newline."""
    if not isinstance(inv, Inventory):
        inv = from_dict(inv)
    document = _document(inv)
    document["documentNamespace"] = document_namespace(inv, str(common.content_uuid("spdx", document)))
    return common.canonical_json(document)


def validate_spdx(path: str) -> List[str]:
    """spdx-tools' verdict on the SPDX JSON file at ``path``: parse errors or validation messages (empty if
    valid). Its JSON parser is imported alone: ``parse_anything`` brings every format's parser (rdflib's
    included), 0.1 s more of every SBOM step."""
    from spdx_tools.spdx.parser.error import SPDXParsingError
    from spdx_tools.spdx.parser.json.json_parser import parse_from_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    try:
        document = parse_from_file(path)
    except SPDXParsingError as e:
        return [f"cannot parse: {message}" for message in e.get_messages()]
    messages = []
    for message in validate_full_spdx_document(document, SPDX_VERSION):
        where = message.context.spdx_id or message.context.parent_id or ""
        messages.append(f"{where}: {message.validation_message}" if where else message.validation_message)
    return messages
