"""The model's lineage for its ML-BOM: the datasets it was trained and evaluated on, the model it was fine-tuned
from and the script that trained it, from the `model_package` fields that name them.

No dataset is read by a process or downloaded: a repository file's sha256 and size are the ones Pants took when
it snapshotted the file, and an `http_source` carries its pins in the BUILD file. The result is the inventory's
``model.lineage`` object (see ``aegis_plugin/core/sbom/inventory.py``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pants.core.target_types import FileSourceField, http_source
from pants.engine.addresses import Address, Addresses, UnparsedAddressInputs
from pants.engine.fs import Digest, DigestEntries, FileEntry, PathGlobs, Snapshot
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import HydratedSources, HydrateSourcesRequest, Targets
from pants.util.frozendict import FrozenDict

from aegis_plugin.core.download import redact_url
from aegis_plugin.target_types import EvaluationDataField, TrainingDataField, TrainingScriptField
from aegis_plugin.util_rules.core_process import AegisBuildError, freeze


@dataclass(frozen=True)
class LineageRequest:
    context: str  # the model_package's address, which errors start with
    address: Address  # relative addresses and paths are resolved against its directory
    training_data: tuple[str, ...]
    evaluation_data: tuple[str, ...]
    base_model: str | None
    training_script: str | None


@dataclass(frozen=True)
class Lineage:
    inventory: FrozenDict[str, Any] | None  # the inventory's model.lineage; None when no field is set
    paths: tuple[str, ...]  # repository files it describes: inputs of the package (its revision counts them)


@rule(desc="Resolving the lineage of a model package")
async def resolve_lineage(request: LineageRequest) -> Lineage:
    if not (request.training_data or request.evaluation_data or request.base_model or request.training_script):
        return Lineage(None, ())
    fields = (
        (TrainingDataField.alias, "training", request.training_data),
        (EvaluationDataField.alias, "evaluation", request.evaluation_data),
    )
    address_sets = await MultiGet(
        Get(Addresses, UnparsedAddressInputs(values, owning_address=request.address,
                                             description_of_origin=f"the `{alias}` field of {request.context}"))
        for alias, _, values in fields
    )
    target_sets = await MultiGet(Get(Targets, Addresses, addresses) for addresses in address_sets)
    datasets: list[dict[str, Any]] = []
    paths: list[str] = []  # the datasets and script in the repository
    for (alias, role, _), targets in zip(fields, target_sets):
        where = f"{request.context}: field `{alias}`"
        for tgt in targets:
            if not tgt.has_field(FileSourceField):
                raise AegisBuildError(f"{where}: {tgt.address} is not a `file` or `files` target")
            source = tgt[FileSourceField].value
            if isinstance(source, http_source):
                datasets.append({"role": role, "name": source.filename, "location": redact_url(source.url),
                                 "sha256": source.sha256, "size": source.len})
                continue
            try:
                hydrated = await Get(HydratedSources, HydrateSourcesRequest(tgt[FileSourceField]))
            except Exception as e:  # e.g. the file is missing
                raise AegisBuildError(f"{where} ({tgt.address}): {str(e).strip().splitlines()[-1]}") from None
            for entry in await Get(DigestEntries, Digest, hydrated.snapshot.digest):
                if isinstance(entry, FileEntry):
                    digest = entry.file_digest
                    datasets.append({"role": role, "name": os.path.basename(entry.path), "location": entry.path,
                                     "sha256": digest.fingerprint, "size": digest.serialized_bytes_length})
                    paths.append(entry.path)
    seen = set()
    for d in datasets:
        if (d["role"], d["location"]) in seen:
            raise AegisBuildError(f"{request.context}: field `{d['role']}_data`: {d['location']} is named twice")
        seen.add((d["role"], d["location"]))

    training_run = None
    if request.training_script:
        path = os.path.join(request.address.spec_path, request.training_script)
        snapshot = await Get(Snapshot, PathGlobs([path]))
        if snapshot.files != (path,):
            raise AegisBuildError(
                f"{request.context}: field `{TrainingScriptField.alias}`: {path} is not a file of the repository"
            )
        (entry,) = [e for e in await Get(DigestEntries, Digest, snapshot.digest) if isinstance(e, FileEntry)]
        training_run = {"script": path, "sha256": entry.file_digest.fingerprint}
        paths.append(path)
    inventory = {"datasets": datasets, "base_model": request.base_model, "training": training_run}
    return Lineage(freeze(inventory), tuple(sorted(set(paths))))


def rules():
    return collect_rules()
