"""The CycloneDX 1.7 ML-BOM of an image (``sbom.cdx.json``), built with cyclonedx-python-lib.

Components (every ``bom-ref`` derives from the inventory, never from a counter or a random number):

- ``metadata.component``: the image, type ``container`` (``image:<name>@<version>``, see ``common.image_purl``),
  with its concluded license (every part's ANDed, as in the SPDX documents) and the card's ``copyright``
- each Debian package: ``library``, purl ``pkg:deb/debian/…``, SHA-256 of the .deb, declared licenses, the
  Maintainer as ``supplier``, the copyright file's notices, the source package as properties, its files as
  ``evidence.occurrences``; bom-ref = purl
- each Python distribution: ``library``, purl ``pkg:pypi/…``, the lock's SHA-256 of the wheel, declared
  license, its first maintainer (else author) as ``supplier``, its authors, its license files' copyright
  notices, the wheel's name as a property, its files as occurrences; bom-ref = purl
- the model: ``machine-learning-model`` (``model:<id>@<version>``) with a ``modelCard`` from model_card.md,
  and its files (weights, tokenizer, card) as nested ``file`` components with SHA-256 and SHA-1
- the application code: ``application`` (``app:<image>@<version>``) with its files nested likewise
- lineage, when the model_package names it: each dataset file as a ``data`` component
  (``data:<role>:<path or URL>``, its sha256, the card's section as its description) that the model card's
  ``modelParameters.datasets`` references; the base model as the model's ``pedigree.ancestors``; the training
  run (script, datasets and base model in, model out; or the MLflow run) as a ``formulation`` workflow

The model card's owner supplies the model and the app (with the card's license and ``copyright``); the
configured organisation (else the owner) supplies the image and is the BOM's ``manufacturer``, ``supplier``
and author beside the tool. The same facts as the SPDX document, from the same records (``parties.py``).

Dependencies: image -> every Debian package, Python distribution, the model and the app; app -> the Python
distributions and its files; model -> its files; every other component -> nothing (listed, so the graph is
complete).

cyclonedx-python-lib (11.x) does not model ``modelCard`` yet (CycloneDX/cyclonedx-python-lib#912), so the
card is added to the serialised model component and the result is checked against the 1.7 JSON schema.
The output is re-serialised canonically (``common.canonical_json``); ``serialNumber`` is a uuid5 of that
content and ``metadata.timestamp`` the image's ``created`` time, so the same inventory gives the same bytes.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

# jsonschema checks the "iri"/"iri-reference" formats with rfc3987-syntax, which compiles 38 grammars when it
# is imported: 1.5 s of every SBOM step, so of every code edit. Without it, those two formats are checked
# below with the RFC 3986 URI validator (the IRIs we write are ASCII URIs, so this is the stricter check).
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

from cyclonedx import __version__ as cyclonedx_lib_version
from cyclonedx.model import (
    AttachedText,
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType, Pedigree
from cyclonedx.model.component_evidence import ComponentEvidence, Occurrence
from cyclonedx.model.contact import OrganizationalContact, OrganizationalEntity
from cyclonedx.model.license import DisjunctiveLicense, LicenseAcknowledgement, LicenseExpression
from cyclonedx.model.lifecycle import LifecyclePhase, PredefinedLifecycle
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot7
from cyclonedx.schema import SchemaVersion
from cyclonedx.spdx import is_supported_id
from cyclonedx.validation.json import JsonStrictValidator
from jsonschema import Draft7Validator
from packageurl import PackageURL
from rfc3986_validator import validate_rfc3986

from aegis_plugin.core.sbom import card as card_facts
from aegis_plugin.core.sbom import common, licenses, parties
from aegis_plugin.core.sbom.inventory import (
    AppFile,
    Dataset,
    DebianPackage,
    Inventory,
    ModelFile,
    PythonDist,
    Registry,
    from_dict,
)

SPEC_VERSION = "1.7"
_SCHEMA = SchemaVersion.V1_7
_P = common.PROPERTY_PREFIX

License = Union[DisjunctiveLicense, LicenseExpression]


def _prop(name: str, value: str) -> Property:
    return Property(name=f"{_P}:{name}", value=value)


def _sha256(hexdigest: str) -> HashType:
    return HashType(alg=HashAlgorithm.SHA_256, content=hexdigest)


_ALGORITHMS = {"sha256": HashAlgorithm.SHA_256, "sha512": HashAlgorithm.SHA_512}


def _hashes(file_hashes: Iterable[Tuple[str, str]]) -> List[HashType]:
    return [HashType(alg=_ALGORITHMS[alg], content=value) for alg, value in file_hashes]


def _license(expression: str) -> License:
    """An SPDX expression as CycloneDX wants it: a plain id as ``license.id``, anything else as expression."""
    if licenses.is_single_id(expression) and is_supported_id(expression):
        return DisjunctiveLicense(id=expression, acknowledgement=LicenseAcknowledgement.DECLARED)
    return LicenseExpression(expression, acknowledgement=LicenseAcknowledgement.DECLARED)


def _named_license(name: str) -> DisjunctiveLicense:
    short = name.strip().splitlines()[0].strip()
    if short == name.strip() and len(short) <= 200:
        return DisjunctiveLicense(name=short, acknowledgement=LicenseAcknowledgement.DECLARED)
    return DisjunctiveLicense(
        name=short[:77] + "..." if len(short) > 80 else short,
        text=AttachedText(content=name.strip()),
        acknowledgement=LicenseAcknowledgement.DECLARED,
    )


def declared_licenses(text: Optional[str]) -> List[License]:
    """A Python distribution's or a model's declared license: SPDX id, SPDX expression, or a name."""
    if not text or not text.strip():
        return []
    expression = licenses.spdx_expression(text)
    return [_license(expression)] if expression else [_named_license(text)]


def debian_licenses(names: Iterable[str], copyright_file: str = "") -> List[License]:
    """DEP-5 licenses: a list of ids (names where there is no SPDX id), or one expression when every entry
    maps to SPDX and one of them is compound (``GPL-2+ or Artistic-2.0``); the terms its copyright file states
    when that file names no license (see ``licenses.debian_expression``)."""
    entries = sorted(set(names))
    if not entries and copyright_file:
        return [DisjunctiveLicense(name=f"the terms stated in {copyright_file}",
                                   acknowledgement=LicenseAcknowledgement.DECLARED)]
    mapped = [licenses.dep5_entry(entry) for entry in entries]
    if entries and all(mapped) and any(not licenses.is_single_id(m) for m in mapped):  # type: ignore[arg-type]
        parts = [f"({m})" if " OR " in m and len(mapped) > 1 else m for m in mapped]  # type: ignore[operator]
        return [LicenseExpression(" AND ".join(sorted(set(parts))), acknowledgement=LicenseAcknowledgement.DECLARED)]
    out: List[License] = []
    for entry, spdx in zip(entries, mapped):
        if spdx is not None and licenses.is_single_id(spdx) and is_supported_id(spdx):
            out.append(DisjunctiveLicense(id=spdx, acknowledgement=LicenseAcknowledgement.DECLARED))
        else:
            out.append(DisjunctiveLicense(name=entry, acknowledgement=LicenseAcknowledgement.DECLARED))
    return out


def _entity(party: Optional[parties.Party]) -> Optional[OrganizationalEntity]:
    """A supplier or manufacturer: CycloneDX's organisational entity, the person or team as its contact."""
    if party is None:
        return None
    return OrganizationalEntity(
        name=party.name,
        urls=[XsUri(party.url)] if party.url else None,
        contacts=[OrganizationalContact(name=party.name, email=party.email)] if party.email else None,
    )


def _contacts(entries: Iterable[str]) -> List[OrganizationalContact]:
    return [OrganizationalContact(name=p.name, email=p.email) for p in map(parties.parse, entries)]


def _occurrences(files: Iterable[str]) -> Optional[ComponentEvidence]:
    found = [Occurrence(location=path) for path in files]
    return ComponentEvidence(occurrences=found) if found else None


def _debian_component(pkg: DebianPackage) -> Component:
    purl = common.debian_purl(pkg)
    return Component(
        type=ComponentType.LIBRARY,
        name=pkg.name,
        version=pkg.version,
        bom_ref=purl,
        purl=PackageURL.from_string(purl),
        hashes=_hashes(pkg.file_hashes),
        licenses=debian_licenses(pkg.licenses, pkg.copyright_file),
        supplier=_entity(parties.parse(pkg.maintainer)),
        copyright="\n".join(pkg.copyright) or None,
        properties=[
            _prop("debian:source", pkg.source),
            _prop("debian:source_version", pkg.source_version),
            _prop("debian:package_file", pkg.deb_filename),
        ],
        evidence=_occurrences(pkg.files),
    )


def _python_component(dist: PythonDist) -> Component:
    purl = common.python_purl(dist)
    return Component(
        type=ComponentType.LIBRARY,
        name=dist.name,
        version=dist.version,
        bom_ref=purl,
        purl=PackageURL.from_string(purl),
        hashes=_hashes(dist.file_hashes),
        licenses=declared_licenses(dist.license),
        supplier=_entity(parties.first(dist.maintainers, dist.authors)),
        authors=_contacts(dist.authors),
        copyright="\n".join(dist.copyright) or None,
        properties=[_prop("python:wheel", dist.wheel)],
        evidence=_occurrences(dist.files),
    )


def _file_component(f: Union[ModelFile, AppFile], properties: Iterable[Property] = ()) -> Component:
    return Component(
        type=ComponentType.FILE,
        name=f.path,
        bom_ref=common.file_ref(f.path),
        hashes=[_sha256(f.sha256), HashType(alg=HashAlgorithm.SHA_1, content=f.sha1)],
        properties=list(properties),
    )


def _model_component(inv: Inventory, files: List[Component]) -> Component:
    model = inv.model
    facts = card_facts.facts(model.card)
    return Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=model.model_id,
        version=model.version,
        bom_ref=common.model_ref(inv),
        description=f"Machine-learning model {model.model_id} {model.version} "
        f"({model.framework} {model.framework_version}, accelerator {model.accelerator})",
        supplier=_entity(parties.owner(inv)),
        licenses=declared_licenses(facts.license),
        copyright=facts.copyright,
        properties=[
            _prop("model:framework", model.framework),
            _prop("model:framework_version", model.framework_version),
            _prop("model:accelerator", model.accelerator),
            *_registry_properties(model.registry),
        ],
        external_references=_registry_references(model.registry),
        components=files,
        pedigree=_pedigree(model.lineage.base_model) if model.lineage and model.lineage.base_model else None,
    )


def _pedigree(base_model: str) -> Pedigree:
    """The model this one was fine-tuned from, named by its pinned package URL."""
    purl = PackageURL.from_string(base_model)
    name = f"{purl.namespace}/{purl.name}" if purl.namespace else purl.name
    return Pedigree(ancestors=[Component(
        type=ComponentType.MACHINE_LEARNING_MODEL, name=name, version=purl.version, purl=purl,
        bom_ref=f"base-model:{base_model}",
    )])


def _data_ref(dataset: Dataset) -> str:
    return f"data:{dataset.role}:{dataset.location}"


def _data_component(dataset: Dataset) -> Component:
    """A dataset the model was trained or evaluated on: its file's sha256, and where it lives."""
    is_url = "://" in dataset.location
    return Component(
        type=ComponentType.DATA,
        name=dataset.name,
        bom_ref=_data_ref(dataset),
        hashes=[_sha256(dataset.sha256)],
        external_references=(
            [ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(dataset.location))] if is_url else []
        ),
        properties=[
            _prop("dataset:role", dataset.role),
            _prop("file:size", str(dataset.size)),
            *([] if is_url else [_prop("dataset:path", dataset.location)]),
        ],
    )


def _registry_properties(registry: Optional[Registry]) -> List[Property]:
    """The registry's record of the training run: which run, experiment, registered version and commit, and
    its parameters (its metrics are the card's quantitative analysis)."""
    if registry is None:
        return []
    facts = [("source", registry.source), ("run_id", registry.run_id), ("experiment", registry.experiment),
             ("registered_model", registry.registered_model), ("model_version", registry.model_version),
             ("training_git_commit", registry.git_commit), ("tracking_uri", registry.tracking_uri)]
    properties = [_prop(f"mlflow:{name}", value) for name, value in facts if value]
    return properties + [_prop(f"mlflow:param:{name}", value) for name, value in registry.params]


def _registry_references(registry: Optional[Registry]) -> List[ExternalReference]:
    if registry is None:
        return []
    run = f"runs:/{registry.run_id}"
    references = [ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(registry.source),
                                    comment="the MLflow model URI the files were pinned from")]
    if registry.source != run and not registry.source.startswith(run + "/"):
        references.append(ExternalReference(type=ExternalReferenceType.BUILD_META, url=XsUri(run),
                                            comment="the MLflow run that trained the model"))
    return references


def model_card(inv: Inventory) -> Dict[str, Any]:
    """The ``modelCard`` object (CycloneDX 1.7 JSON) of the model component, from the card's content."""
    facts = card_facts.facts(inv.model.card)
    card: Dict[str, Any] = {"bom-ref": common.model_card_ref(inv)}

    parameters: Dict[str, Any] = {}
    if facts.approach:
        parameters["approach"] = {"type": facts.approach}
    if facts.task:
        parameters["task"] = facts.task
    if facts.architecture_family:
        parameters["architectureFamily"] = facts.architecture_family
    if facts.model_architecture:
        parameters["modelArchitecture"] = facts.model_architecture
    declared = inv.model.lineage.datasets if inv.model.lineage else ()
    datasets: List[Dict[str, Any]] = []
    for role, name, text in (("training", "Training data", facts.training_data),
                             ("evaluation", "Evaluation data", facts.evaluation_data)):
        files = [{"ref": _data_ref(d)} for d in declared if d.role == role]
        datasets += files or ([{"type": "dataset", "name": name, "description": text}] if text else [])
    if datasets:
        parameters["datasets"] = datasets
    if parameters:
        card["modelParameters"] = parameters

    metrics = [{"type": m.name, "value": m.value, **({"slice": m.slice} if m.slice else {})} for m in facts.metrics]
    registry = inv.model.registry
    if registry is not None:  # what the training run measured, as the registry recorded it
        metrics += [{"type": name, "value": repr(value), "slice": f"MLflow run {registry.run_id}"}
                    for name, value in registry.metrics]
    if metrics:
        card["quantitativeAnalysis"] = {"performanceMetrics": metrics}

    considerations: Dict[str, Any] = {}
    for key, values in (
        ("users", facts.users),
        ("useCases", facts.use_cases),
        ("technicalLimitations", facts.limitations),
        ("performanceTradeoffs", facts.tradeoffs),
    ):
        if values:
            considerations[key] = list(values)
    if facts.ethical_considerations:
        considerations["ethicalConsiderations"] = [{"name": text} for text in facts.ethical_considerations]
    if considerations:
        card["considerations"] = considerations

    properties = [{"name": f"{_P}:modelcard:outOfScopeUse", "value": text} for text in facts.out_of_scope_uses]
    properties += [
        {"name": f"{_P}:modelcard:file", "value": f.path} for f in inv.model.files if f.role == "model_card"
    ]
    if properties:
        card["properties"] = properties
    return card


def _tools() -> ToolRepository:
    return ToolRepository(
        components=[
            Component(type=ComponentType.APPLICATION, name=common.TOOL_NAME, bom_ref=f"tool:{common.TOOL_NAME}"),
            Component(
                type=ComponentType.LIBRARY,
                group="CycloneDX",
                name="cyclonedx-python-lib",
                version=cyclonedx_lib_version,
                bom_ref=f"tool:cyclonedx-python-lib@{cyclonedx_lib_version}",
            ),
        ]
    )


def _bom(inv: Inventory) -> Bom:
    image = inv.image
    image_component = Component(
        type=ComponentType.CONTAINER,
        name=image.name,
        version=image.version,
        bom_ref=common.image_ref(inv),
        purl=PackageURL.from_string(common.image_purl(image)),
        supplier=_entity(parties.creator(inv) or parties.owner(inv)),
        licenses=[LicenseExpression(concluded, acknowledgement=LicenseAcknowledgement.CONCLUDED)
                  for concluded in [licenses.image_concluded(inv, licenses.LicenseRefs())] if concluded],
        copyright=card_facts.facts(inv.model.card).copyright,
        properties=[_prop("image:os", image.os), _prop("image:architecture", image.architecture)],
        external_references=(
            [ExternalReference(type=ExternalReferenceType.VCS, url=XsUri(image.source_url))]
            if image.source_url
            else []
        ),
    )
    metadata_properties = [_prop("git_sha", image.git_sha), _prop("source_revision_time", str(image.created))]
    if image.source_url:
        metadata_properties.append(_prop("source_url", image.source_url))
    metadata = BomMetaData(
        timestamp=common.created_datetime(inv),
        tools=_tools(),
        component=image_component,
        lifecycles=[PredefinedLifecycle(LifecyclePhase.BUILD)],
        properties=metadata_properties,
        manufacturer=_entity(parties.creator(inv)),
        supplier=_entity(parties.creator(inv)),
        authors=[OrganizationalContact(name=c.name, email=c.email) for c in [parties.creator(inv)] if c],
    )

    debian = [_debian_component(pkg) for pkg in inv.debian]
    python = [_python_component(dist) for dist in inv.python]
    model_files = [
        _file_component(f, [_prop("model:role", f.role), _prop("file:size", str(f.size))]) for f in inv.model.files
    ]
    model = _model_component(inv, model_files)
    app_files = [_file_component(f) for f in inv.app.files]
    app = Component(
        type=ComponentType.APPLICATION,
        name=common.app_name(inv),
        version=image.version,
        bom_ref=common.app_ref(inv),
        description=f"The application layer of {image.name}:{image.version}: the handler and the Aegis "
        f"inference server that serve {inv.model.model_id}",
        supplier=_entity(parties.owner(inv)),
        licenses=declared_licenses(card_facts.facts(inv.model.card).license),
        copyright=card_facts.facts(inv.model.card).copyright,
        components=app_files,
    )

    # Lineage, outside the image: the datasets (the training run in `formulation` names them as its inputs).
    data = [_data_component(d) for d in inv.model.lineage.datasets] if inv.model.lineage else []

    # The placeholder serial number is replaced by one derived from the content (see build_cyclonedx).
    bom = Bom(serial_number=uuid.UUID(int=0), metadata=metadata, components=debian + python + [model, app] + data)
    bom.register_dependency(image_component, debian + python + [model, app])
    bom.register_dependency(app, python + app_files)
    bom.register_dependency(model, model_files)
    for leaf in debian + python + model_files + app_files + data:
        bom.register_dependency(leaf, [])
    return bom


def _all_components(document: Mapping[str, Any]) -> Iterable[Dict[str, Any]]:
    stack = list(document.get("components", []))
    while stack:
        component = stack.pop()
        yield component
        stack.extend(component.get("components", []))


def _find_component(document: Mapping[str, Any], ref: str) -> Dict[str, Any]:
    for component in _all_components(document):
        if component.get("bom-ref") == ref:
            return component
    raise AssertionError(f"no component {ref} in the serialised BOM")


def _canonicalise(document: Dict[str, Any]) -> None:
    """Orders the library leaves to chance: occurrences without a bom-ref compare as neither equal nor
    less (cyclonedx.model.bom_ref.BomRef), so their order follows insertion; sort them by location."""
    for component in _all_components(document):
        occurrences = component.get("evidence", {}).get("occurrences")
        if occurrences:
            occurrences.sort(key=lambda o: json.dumps(o, sort_keys=True))


def build_cyclonedx(inv: Union[Inventory, Mapping[str, Any]]) -> bytes:
    """The CycloneDX 1.7 JSON document for ``inv``: canonical UTF-8 bytes ending in a newline."""
    if not isinstance(inv, Inventory):
        inv = from_dict(inv)
    document = json.loads(JsonV1Dot7(_bom(inv)).output_as_string())
    _canonicalise(document)
    document["metadata"]["timestamp"] = common.created_iso(inv)  # the same spelling as SPDX's `created`
    _find_component(document, common.model_ref(inv))["modelCard"] = model_card(inv)
    if inv.model.lineage:
        for dataset in inv.model.lineage.datasets:
            _find_component(document, _data_ref(dataset))["data"] = [_component_data(inv, dataset)]
    formula = _formulation(inv)
    if formula:
        document["formulation"] = [formula]
    document.pop("serialNumber", None)
    document["serialNumber"] = common.content_uuid("cyclonedx", document).urn
    return common.canonical_json(document)


def _component_data(inv: Inventory, dataset: Dataset) -> Dict[str, Any]:
    """A data component's ``data`` entry (CycloneDX 1.7 componentData): what the card says of its role."""
    facts = card_facts.facts(inv.model.card)
    entry: Dict[str, Any] = {"type": "dataset", "name": dataset.name}
    text = facts.training_data if dataset.role == "training" else facts.evaluation_data
    if text:
        entry["description"] = text
    if "://" in dataset.location:
        entry["contents"] = {"url": dataset.location}
    owner = parties.owner(inv)
    if owner is not None:
        entry["governance"] = {"owners": [{"organization": {"name": owner.name}}]}
    return entry


def _formulation(inv: Inventory) -> Optional[Dict[str, Any]]:
    """How the model was made, as one CycloneDX formula: the training run (its script at the image's source
    revision, or the MLflow run that recorded it) with the datasets and the base model as inputs and the
    model as its output. None when the build knows nothing of the training."""
    lineage, registry, model = inv.model.lineage, inv.model.registry, inv.model
    training = lineage.training if lineage else None
    if training is None and registry is None and not (lineage and lineage.datasets):
        return None
    model_ref = common.model_ref(inv)
    formula: Dict[str, Any] = {"bom-ref": f"formula:{model_ref}"}
    workflow: Dict[str, Any] = {
        "bom-ref": f"training:{model_ref}",
        "uid": f"mlflow-run:{registry.run_id}" if registry else f"training:{model.model_id}@{model.version}",
        "name": "training",
        "taskTypes": ["build"],
        "outputs": [{"resource": {"ref": model_ref}}],
    }
    inputs = [{"resource": {"ref": _data_ref(d)}} for d in (lineage.datasets if lineage else ())]
    if lineage and lineage.base_model:
        inputs.append({"resource": {"ref": f"base-model:{lineage.base_model}"}})
    if inputs:
        workflow["inputs"] = inputs
    properties = []
    if training is not None:
        script_ref = f"file:{training.script}"
        formula["components"] = [{
            "type": "file", "name": training.script, "bom-ref": script_ref,
            "hashes": [{"alg": "SHA-256", "content": training.sha256}],
        }]
        workflow["resourceReferences"] = [{"ref": script_ref}]
        workflow["description"] = f"{training.script} at revision {inv.image.git_sha}"
        properties += [{"name": f"{_P}:training:script", "value": training.script},
                       {"name": f"{_P}:training:revision", "value": inv.image.git_sha}]
    if registry is not None:
        properties += [{"name": f"{_P}:mlflow:run_id", "value": registry.run_id}]
        if registry.experiment:
            properties.append({"name": f"{_P}:mlflow:experiment", "value": registry.experiment})
        if registry.git_commit:
            properties.append({"name": f"{_P}:mlflow:training_git_commit", "value": registry.git_commit})
    if properties:
        workflow["properties"] = properties
    formula["workflows"] = [workflow]
    return formula


for _format, _rule in (("iri", "URI"), ("iri-reference", "URI_reference")):
    Draft7Validator.FORMAT_CHECKER.checks(_format)(
        lambda value, rule=_rule: not isinstance(value, str) or bool(validate_rfc3986(value, rule=rule))
    )


def validate_cyclonedx(data: Union[bytes, str]) -> List[str]:
    """Messages for every way ``data`` breaks the CycloneDX 1.7 JSON schema (empty when valid)."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        document = json.loads(text)
    except ValueError as e:
        return [f"not JSON: {e}"]
    messages: List[str] = []
    if not isinstance(document, dict) or document.get("specVersion") != SPEC_VERSION:
        found = document.get("specVersion") if isinstance(document, dict) else None
        messages.append(f"specVersion must be {SPEC_VERSION!r}, got {found!r}")
    errors = JsonStrictValidator(_SCHEMA).validate_str(text, all_errors=True)
    for error in errors or ():
        detail = error.data
        path = "/".join(str(p) for p in getattr(detail, "absolute_path", ()) or ())
        messages.append(f"{path or '<root>'}: {getattr(detail, 'message', detail)}")
    return messages
