"""The CycloneDX 1.7 ML-BOM of an image (``sbom.cdx.json``).

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

The document is built as plain JSON objects, like the SPDX one: cyclonedx-python-lib's model took 0.16 s of
every handler edit to build and serialise the demo's BOM, and its import 0.04 s more. Each list the library kept
as a set is sorted and free of duplicates here too, so the same inventory in any order gives the same bytes
(paths and names sort by code point). The library still supplies the
1.7 JSON schema, which checks every document written. The output is serialised canonically
(``common.canonical_json``); ``serialNumber`` is a uuid5 of that content and ``metadata.timestamp`` the
image's ``created`` time, so the same inventory gives the same bytes.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

# jsonschema checks the "iri"/"iri-reference" formats with rfc3987-syntax, which compiles 38 grammars when it
# is imported: 1.5 s of every SBOM step, so of every code edit. Without it, those two formats are checked
# below with the RFC 3986 URI validator (the IRIs we write are ASCII URIs, so this is the stricter check).
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

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

Json = Dict[str, Any]


def _key(*values: Optional[str]) -> Tuple[Tuple[bool, str], ...]:
    """A sort key in which a missing value comes after every present one."""
    return tuple((value is None, value or "") for value in values)


def _listed(items: Iterable[Json], key: Callable[[Json], Any]) -> List[Json]:
    """``items`` sorted by ``key``, each distinct object once."""
    unique = {json.dumps(item, sort_keys=True): item for item in items}
    return sorted(unique.values(), key=key)


def _set(entry: Json, name: str, value: Any) -> Json:
    """``entry`` with ``name`` set, unless the value is None, an empty list or an empty string."""
    if value is not None and value != [] and value != "":
        entry[name] = value
    return entry


# Characters a URI may not hold, escaped as cyclonedx-python-lib's XsUri does (the JSON schema checks the rest).
_URI_ESCAPES = {" ": "%20", '"': "%22", "'": "%27", "[": "%5B", "]": "%5D", "<": "%3C", ">": "%3E", "{": "%7B",
                "}": "%7D"}


def _uri(value: str) -> str:
    return "".join(_URI_ESCAPES.get(c, c) for c in value)


def _properties(pairs: Iterable[Tuple[str, str]]) -> List[Json]:
    return _listed(({"name": f"{_P}:{name}", "value": value} for name, value in pairs),
                   key=lambda p: (p["name"], p["value"]))


_ALGORITHMS = {"sha1": "SHA-1", "sha256": "SHA-256", "sha512": "SHA-512"}


def _hashes(file_hashes: Iterable[Tuple[str, str]]) -> List[Json]:
    return _listed(({"alg": _ALGORITHMS[alg], "content": value} for alg, value in file_hashes),
                   key=lambda h: (h["alg"], h["content"]))


def _references(references: Iterable[Json]) -> List[Json]:
    return _listed(references, key=lambda r: _key(r["type"], r["url"], r.get("comment")))


def _licenses(entries: Iterable[Json]) -> List[Json]:
    """A component's ``licenses``: one ``expression`` entry alone, or ``license`` entries, ids before names."""
    entries = list(entries)
    if any("expression" in e for e in entries):
        assert len(entries) == 1, f"an SPDX expression goes alone in CycloneDX's licenses: {entries}"
        return entries
    return _listed(entries, key=lambda e: _key(e["license"]["acknowledgement"], e["license"].get("id"),
                                               e["license"].get("name"), json.dumps(e["license"].get("text"))))


def _declared_id(spdx_id: str) -> Json:
    return {"license": {"id": spdx_id, "acknowledgement": "declared"}}


def _declared_name(name: str) -> Json:
    return {"license": {"name": name, "acknowledgement": "declared"}}


def _declared_expression(expression: str) -> Json:
    return {"expression": expression, "acknowledgement": "declared"}


def _license(expression: str) -> Json:
    """An SPDX expression as CycloneDX wants it: a plain id as ``license.id``, anything else as expression."""
    if licenses.is_single_id(expression) and is_supported_id(expression):
        return _declared_id(expression)
    return _declared_expression(expression)


def _named_license(name: str) -> Json:
    short = name.strip().splitlines()[0].strip()
    if short == name.strip() and len(short) <= 200:
        return _declared_name(short)
    entry = _declared_name(short[:77] + "..." if len(short) > 80 else short)
    entry["license"]["text"] = {"content": name.strip(), "contentType": "text/plain"}
    return entry


def declared_licenses(text: Optional[str]) -> List[Json]:
    """A Python distribution's or a model's declared license: SPDX id, SPDX expression, or a name."""
    if not text or not text.strip():
        return []
    expression = licenses.spdx_expression(text)
    return [_license(expression)] if expression else [_named_license(text)]


def debian_licenses(names: Iterable[str], copyright_file: str = "") -> List[Json]:
    """DEP-5 licenses: a list of ids (names where there is no SPDX id), or one expression when every entry
    maps to SPDX and one of them is compound (``GPL-2+ or Artistic-2.0``); the terms its copyright file states
    when that file names no license (see ``licenses.debian_expression``)."""
    entries = sorted(set(names))
    if not entries and copyright_file:
        return [_declared_name(f"the terms stated in {copyright_file}")]
    mapped = [licenses.dep5_entry(entry) for entry in entries]
    if entries and all(mapped) and any(not licenses.is_single_id(m) for m in mapped):  # type: ignore[arg-type]
        parts = [f"({m})" if " OR " in m and len(mapped) > 1 else m for m in mapped]  # type: ignore[operator]
        return [_declared_expression(" AND ".join(sorted(set(parts))))]
    out: List[Json] = []
    for entry, spdx in zip(entries, mapped):
        if spdx is not None and licenses.is_single_id(spdx) and is_supported_id(spdx):
            out.append(_declared_id(spdx))
        else:
            out.append(_declared_name(entry))
    return out


def _contact(party: parties.Party) -> Json:
    return _set({"name": party.name}, "email", party.email)


def _contacts(people: Iterable[parties.Party]) -> List[Json]:
    return _listed(map(_contact, people), key=lambda c: _key(c["name"], c.get("email")))


def _entity(party: Optional[parties.Party]) -> Optional[Json]:
    """A supplier or manufacturer: CycloneDX's organisational entity, the person or team as its contact."""
    if party is None:
        return None
    entity = _set({"name": party.name}, "url", [_uri(party.url)] if party.url else None)
    return _set(entity, "contact", [_contact(party)] if party.email else None)


def _component(kind: str, name: str, bom_ref: str, **fields: Any) -> Json:
    """A component with the fields that have a value (snake_case names become CycloneDX's camelCase)."""
    component: Json = {"type": kind, "name": name, "bom-ref": bom_ref}
    for field_name, value in fields.items():
        head, *rest = field_name.split("_")
        _set(component, head + "".join(part.title() for part in rest), value)
    return component


def _components(components: Iterable[Json]) -> List[Json]:
    return _listed(components, key=lambda c: _key(c["type"], c.get("group"), c["name"], c.get("version"),
                                                  c["bom-ref"]))


def _occurrences(files: Iterable[str]) -> Optional[Json]:
    found = sorted(set(files))
    return {"occurrences": [{"location": path} for path in found]} if found else None


def _debian_component(pkg: DebianPackage) -> Json:
    purl = common.debian_purl(pkg)
    return _component(
        "library", pkg.name, purl,
        version=pkg.version,
        purl=purl,
        hashes=_hashes(pkg.file_hashes),
        licenses=_licenses(debian_licenses(pkg.licenses, pkg.copyright_file)),
        supplier=_entity(parties.parse(pkg.maintainer)),
        copyright="\n".join(pkg.copyright) or None,
        properties=_properties([("debian:source", pkg.source), ("debian:source_version", pkg.source_version),
                                ("debian:package_file", pkg.deb_filename)]),
        evidence=_occurrences(pkg.files),
    )


def _python_component(dist: PythonDist) -> Json:
    purl = common.python_purl(dist)
    return _component(
        "library", dist.name, purl,
        version=dist.version,
        purl=purl,
        hashes=_hashes(dist.file_hashes),
        licenses=_licenses(declared_licenses(dist.license)),
        supplier=_entity(parties.first(dist.maintainers, dist.authors)),
        authors=_contacts(map(parties.parse, dist.authors)),
        copyright="\n".join(dist.copyright) or None,
        properties=_properties([("python:wheel", dist.wheel)]),
        evidence=_occurrences(dist.files),
    )


def _file_component(f: Union[ModelFile, AppFile], properties: Iterable[Tuple[str, str]] = ()) -> Json:
    return _component("file", f.path, common.file_ref(f.path),
                      hashes=_hashes([("sha256", f.sha256), ("sha1", f.sha1)]), properties=_properties(properties))


def _model_component(inv: Inventory, files: List[Json]) -> Json:
    model = inv.model
    facts = card_facts.facts(model.card)
    base_model = model.lineage.base_model if model.lineage else None
    return _component(
        "machine-learning-model", model.model_id, common.model_ref(inv),
        version=model.version,
        description=f"Machine-learning model {model.model_id} {model.version} "
        f"({model.framework} {model.framework_version}, accelerator {model.accelerator})",
        supplier=_entity(parties.owner(inv)),
        licenses=_licenses(declared_licenses(facts.license)),
        copyright=facts.copyright,
        properties=_properties([
            ("model:framework", model.framework),
            ("model:framework_version", model.framework_version),
            ("model:accelerator", model.accelerator),
            *_registry_properties(model.registry),
        ]),
        external_references=_references(_registry_references(model.registry)),
        components=_components(files),
        pedigree=_pedigree(base_model) if base_model else None,
        model_card=model_card(inv),
    )


def _pedigree(base_model: str) -> Json:
    """The model this one was fine-tuned from, named by its pinned package URL."""
    purl = PackageURL.from_string(base_model)
    name = f"{purl.namespace}/{purl.name}" if purl.namespace else purl.name
    ancestor = _component("machine-learning-model", name, f"base-model:{base_model}", version=purl.version,
                          purl=purl.to_string())
    return {"ancestors": [ancestor]}


def _data_ref(dataset: Dataset) -> str:
    return f"data:{dataset.role}:{dataset.location}"


def _data_component(inv: Inventory, dataset: Dataset) -> Json:
    """A dataset the model was trained or evaluated on: its file's sha256, where it lives, what the card says."""
    is_url = "://" in dataset.location
    return _component(
        "data", dataset.name, _data_ref(dataset),
        hashes=_hashes([("sha256", dataset.sha256)]),
        data=[_component_data(inv, dataset)],
        external_references=[{"type": "distribution", "url": _uri(dataset.location)}] if is_url else [],
        properties=_properties([
            ("dataset:role", dataset.role),
            ("file:size", str(dataset.size)),
            *([] if is_url else [("dataset:path", dataset.location)]),
        ]),
    )


def _registry_properties(registry: Optional[Registry]) -> List[Tuple[str, str]]:
    """The registry's record of the training run: which run, experiment, registered version and commit, and
    its parameters (its metrics are the card's quantitative analysis)."""
    if registry is None:
        return []
    facts = [("source", registry.source), ("run_id", registry.run_id), ("experiment", registry.experiment),
             ("registered_model", registry.registered_model), ("model_version", registry.model_version),
             ("training_git_commit", registry.git_commit), ("tracking_uri", registry.tracking_uri)]
    properties = [(f"mlflow:{name}", value) for name, value in facts if value]
    return properties + [(f"mlflow:param:{name}", value) for name, value in registry.params]


def _registry_references(registry: Optional[Registry]) -> List[Json]:
    if registry is None:
        return []
    run = f"runs:/{registry.run_id}"
    references = [{"type": "distribution", "url": _uri(registry.source),
                   "comment": "the MLflow model URI the files were pinned from"}]
    if registry.source != run and not registry.source.startswith(run + "/"):
        references.append({"type": "build-meta", "url": _uri(run), "comment": "the MLflow run that trained the model"})
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


def _dependencies(graph: Mapping[str, Iterable[Json]]) -> List[Json]:
    """Each component's ``dependsOn`` by bom-ref, sorted; a leaf lists none."""
    return [_set({"ref": ref}, "dependsOn", sorted({c["bom-ref"] for c in graph[ref]})) for ref in sorted(graph)]


def _document(inv: Inventory) -> Json:
    image = inv.image
    card = card_facts.facts(inv.model.card)
    creator = parties.creator(inv)
    concluded = licenses.image_concluded(inv, licenses.LicenseRefs())
    image_component = _component(
        "container", image.name, common.image_ref(inv),
        version=image.version,
        purl=common.image_purl(image),
        supplier=_entity(creator or parties.owner(inv)),
        licenses=[{"expression": concluded, "acknowledgement": "concluded"}] if concluded else [],
        copyright=card.copyright,
        properties=_properties([("image:os", image.os), ("image:architecture", image.architecture)]),
        external_references=[{"type": "vcs", "url": _uri(image.source_url)}] if image.source_url else [],
    )
    metadata_properties = [("git_sha", image.git_sha), ("source_revision_time", str(image.created))]
    if image.source_url:
        metadata_properties.append(("source_url", image.source_url))
    metadata: Json = {
        "timestamp": common.created_iso(inv),  # the same spelling as SPDX's `created`
        "tools": {"components": [_component("application", common.TOOL_NAME, f"tool:{common.TOOL_NAME}")]},
        "component": image_component,
        "lifecycles": [{"phase": "build"}],
        "properties": _properties(metadata_properties),
    }
    _set(metadata, "manufacturer", _entity(creator))
    _set(metadata, "supplier", _entity(creator))
    _set(metadata, "authors", [_contact(creator)] if creator else None)

    debian = [_debian_component(pkg) for pkg in inv.debian]
    python = [_python_component(dist) for dist in inv.python]
    model_files = [_file_component(f, [("model:role", f.role), ("file:size", str(f.size))]) for f in inv.model.files]
    model = _model_component(inv, model_files)
    app_files = [_file_component(f) for f in inv.app.files]
    app = _component(
        "application", common.app_name(inv), common.app_ref(inv),
        version=image.version,
        description=f"The application layer of {image.name}:{image.version}: the handler and the Aegis "
        f"inference server that serve {inv.model.model_id}",
        supplier=_entity(parties.owner(inv)),
        licenses=_licenses(declared_licenses(card.license)),
        copyright=card.copyright,
        components=_components(app_files),
    )
    # Lineage, outside the image: the datasets (the training run in `formulation` names them as its inputs).
    data = [_data_component(inv, dataset) for dataset in (inv.model.lineage.datasets if inv.model.lineage else ())]

    graph: Dict[str, List[Json]] = {
        image_component["bom-ref"]: debian + python + [model, app],
        app["bom-ref"]: python + app_files,
        model["bom-ref"]: model_files,
    }
    for leaf in debian + python + model_files + app_files + data:
        graph[leaf["bom-ref"]] = []
    document: Json = {
        "$schema": f"http://cyclonedx.org/schema/bom-{SPEC_VERSION}.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "version": 1,
        "metadata": metadata,
        "components": _components(debian + python + [model, app] + data),
        "dependencies": _dependencies(graph),
    }
    return _set(document, "formulation", [formula for formula in [_formulation(inv)] if formula])


def build_cyclonedx(inv: Union[Inventory, Mapping[str, Any]]) -> bytes:
    """The CycloneDX 1.7 JSON document for ``inv``: canonical UTF-8 bytes ending in a newline."""
    if not isinstance(inv, Inventory):
        inv = from_dict(inv)
    document = _document(inv)
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
