"""The publish rule on a fake BuiltPackage (as Pants' docker backend tests its publish): what it hands the publisher,
in seconds, without building an image."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from pants.backend.python.util_rules.pex import VenvPexProcess
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact
from pants.engine.addresses import Address
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import EMPTY_DIGEST, CreateDigest, Digest, DigestContents, FileContent, MergeDigests, PathGlobs
from pants.engine.process import InteractiveProcess, Process
from pants.testutil.option_util import create_subsystem
from pants.testutil.rule_runner import MockGet, run_rule_with_mocks
from pants.util.frozendict import FrozenDict

from aegis_plugin.goals.publish import PublishModelFieldSet, PublishModelRequest, publish_model
from aegis_plugin.package_types import BuiltModelImage
from aegis_plugin.subsystems.aegis import AegisSubsystem
from aegis_plugin.subsystems.publish import PublishSubsystem, SigningMode
from aegis_plugin.target_types import ModelPackageTarget
from aegis_plugin.util_rules.core_process import AegisBuildError, CoreToolPex, CoreToolPexRequest

ADDRESS = Address("models/fraud", target_name="fraud")
LOCKS = ("3rdparty/python/runtime.lock", "3rdparty/debian/python3.11-bookworm.lock")
IMAGE = BuiltModelImage(
    relpath="models.fraud/fraud/oci", manifest_digest="sha256:" + "1" * 64, repository="aegis/fraud-detector",
    tag="1.0.0", base_layers=(("linux/amd64", "sha256:" + "2" * 64),), git_sha="3" * 40, lockfiles=LOCKS,
    platforms=(("linux/amd64", "sha256:" + "1" * 64),),
    registry=FrozenDict({"files": (FrozenDict({"uri": "runs:/r/model/w.safetensors", "sha256": "4" * 64}),)}),
)
PACKAGE = BuiltPackage(EMPTY_DIGEST, (IMAGE, BuiltPackageArtifact("models.fraud/fraud/sbom.cdx.json")))


def field_set(**fields: str) -> PublishModelFieldSet:
    target = ModelPackageTarget({"model_id": "fraud-detector", "version": "1.0.0", "weights": ":w", "handler": "h.py",
                                 "model_card": "card.md", "framework": "numpy", **fields}, ADDRESS)
    return PublishModelFieldSet.create(target)


def run(fs: PublishModelFieldSet, registry: str | None = "registry.example:5000", package: BuiltPackage = PACKAGE
        ) -> tuple[Process, dict]:
    """The publish process (what the interactive one runs), and the provenance facts the rule wrote for it."""
    written: dict = {}

    def create(request: CreateDigest) -> Digest:
        (file,) = request
        written[file.path] = json.loads(file.content)
        return EMPTY_DIGEST

    result = run_rule_with_mocks(
        publish_model,
        rule_args=[
            PublishModelRequest(fs, (package,)),
            create_subsystem(PublishSubsystem, resolve="publish", registry=registry, signing=SigningMode.key,
                             allow_plain_http=True, sigstore_staging=False),
            create_subsystem(AegisSubsystem, signer_identity="ci@example.com", source_url="https://example/aegis"),
        ],
        mock_gets=[
            MockGet(DigestContents, (PathGlobs,),
                    lambda globs: DigestContents([FileContent(p, f"lock {p}".encode()) for p in globs.globs])),
            MockGet(Digest, (CreateDigest,), create),
            MockGet(CoreToolPex, (CoreToolPexRequest,), lambda request: CoreToolPex(None)),
            MockGet(EnvironmentVars, (EnvironmentVarsRequest,), lambda request: EnvironmentVars({})),
            MockGet(Digest, (MergeDigests,), lambda merge: EMPTY_DIGEST),
            MockGet(Process, (VenvPexProcess,), lambda p: Process(("publish", *p.argv), description=p.description)),
        ],
    )
    (publish,) = result
    assert isinstance(publish.process, InteractiveProcess)
    assert publish.names == (publish.process.process.argv[publish.process.process.argv.index("--target") + 1],)
    return publish.process.process, written["provenance.json"]


def test_the_publisher_gets_the_packaged_layout_and_its_provenance() -> None:
    process, facts = run(field_set())
    argv = list(process.argv)
    assert argv[argv.index("--layout") + 1] == "models.fraud/fraud/oci"
    assert argv[argv.index("--sbom") + 1] == "models.fraud/fraud/sbom.cdx.json"
    assert argv[argv.index("--target") + 1] == "registry.example:5000/aegis/fraud-detector:1.0.0"
    assert argv[argv.index("--signer-identity") + 1] == "ci@example.com"
    assert "--allow-plain-http" in argv and "--sigstore-staging" not in argv
    # Every material comes from the typed artifact: the lockfiles as read, the base layer, the registry files.
    assert facts["git_sha"] == "3" * 40 and facts["target"] == "models/fraud:fraud"
    assert facts["materials"] == [
        *({"uri": p, "sha256": hashlib.sha256(f"lock {p}".encode()).hexdigest()} for p in LOCKS),
        {"uri": "oci-layer:debian-base", "sha256": "2" * 64},
        {"uri": "runs:/r/model/w.safetensors", "sha256": "4" * 64},
    ]
    assert facts["training_run"]["files"][0]["uri"] == "runs:/r/model/w.safetensors"


def test_a_repository_without_registry_needs_the_option() -> None:
    with pytest.raises(AegisBuildError) as failed:
        run(field_set(), registry=None)
    assert "models/fraud:fraud: field `repository`: 'aegis/fraud-detector' names no registry" in str(failed.value)


def test_a_repository_naming_its_registry_keeps_it() -> None:
    process, _ = run(field_set(repository="registry.example:5000/aegis/fraud-detector"), registry="other.example")
    assert "registry.example:5000/aegis/fraud-detector:1.0.0" in process.argv


def test_an_image_index_is_published_with_each_platforms_sbom() -> None:
    index = dataclasses.replace(
        IMAGE,
        platforms=(("linux/amd64", "sha256:" + "5" * 64), ("linux/arm64", "sha256:" + "6" * 64)),
        base_layers=(("linux/amd64", "sha256:" + "2" * 64), ("linux/arm64", "sha256:" + "7" * 64)),
    )
    process, facts = run(field_set(), package=BuiltPackage(EMPTY_DIGEST, (index,)))
    argv = list(process.argv)
    assert argv[argv.index("--layout") + 1] == "models.fraud/fraud/oci"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--sbom"] == [
        "linux/amd64=models.fraud/fraud/linux-amd64/sbom.cdx.json",
        "linux/arm64=models.fraud/fraud/linux-arm64/sbom.cdx.json",
    ]
    assert [m for m in facts["materials"] if m["uri"].startswith("oci-layer:")] == [
        {"uri": "oci-layer:debian-base:linux/amd64", "sha256": "2" * 64},
        {"uri": "oci-layer:debian-base:linux/arm64", "sha256": "7" * 64},
    ]
