"""`pants publish` for `model_package`: push the packaged image by digest, sign and attest it, tag its version;
likewise its ModelPack artifact, tagged `<version>_modelpack`. A target of several platforms publishes its image
index, each platform's image signed and attested with its own SBOM.

The work happens in one interactive process (it has side effects, so it is never cached), run from the
`publish` PEX (`aegis_plugin/core/publish/cli.py`) on the outputs of `package`. Secrets (the signing key and
its password, registry credentials) reach only that process's environment, never a cached one.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from pants.backend.python.util_rules.pex import VenvPexProcess
from pants.base.build_environment import get_buildroot
from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import CreateDigest, Digest, DigestContents, FileContent, MergeDigests, PathGlobs
from pants.engine.process import InteractiveProcess, Process
from pants.engine.rules import Get, MultiGet, collect_rules, rule

from aegis_plugin.core.oci.modelpack import REF_NAME_SUFFIX
from aegis_plugin.core.registry.reference import names_registry
from aegis_plugin.package_types import built_model_image
from aegis_plugin.subsystems.aegis import AegisSubsystem
from aegis_plugin.subsystems.publish import PublishSubsystem
from aegis_plugin.target_types import ModelIdField, ModelVersionField, RepositoryField
from aegis_plugin.util_rules.core_process import AegisBuildError, CoreTool, CoreToolPex, CoreToolPexRequest, thaw

# What the publisher may read from the environment `pants publish` runs in (see core/publish/cli.py): the
# signing key, registry credentials, and for keyless signing the CI's identity token (SIGSTORE_ID_TOKEN, or
# what GitHub Actions provides to fetch one) and the proxy settings a CI may need to reach Sigstore.
PASSED_ENV = (
    "AEGIS_SIGNING_KEY", "AEGIS_SIGNING_KEY_FILE", "AEGIS_SIGNING_KEY_PASSWORD",
    "AEGIS_REGISTRY_USERNAME", "AEGIS_REGISTRY_PASSWORD", "AEGIS_REGISTRY_HOST", "AEGIS_REGISTRY_TOKEN_HOSTS",
    "DOCKER_CONFIG", "HOME",
    "SIGSTORE_ID_TOKEN", "GITHUB_ACTIONS", "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
)
BUILDER_ID = "https://github.com/aegis-ml/aegis/pants-publish"


class PublishModelRequest(PublishRequest):
    pass


@dataclass(frozen=True)
class PublishModelFieldSet(PublishFieldSet):
    publish_request_type = PublishModelRequest
    required_fields = (ModelIdField, ModelVersionField)

    model_id: ModelIdField
    version: ModelVersionField
    repository: RepositoryField

    def get_output_data(self) -> PublishOutputData:
        return PublishOutputData({"publisher": "aegis", **super().get_output_data()})


def target_repository(fs: PublishModelFieldSet, registry: str | None) -> str:
    """`repository` with its registry; the default `aegis/<model_id>` and any other registry-less one take
    `[aegis-publish].registry`."""
    repository = fs.repository.image_repository(fs.model_id.value)
    if names_registry(repository.split("/", 1)[0]):
        return repository
    if not registry:
        raise AegisBuildError(
            f"{fs.address}: field `repository`: {repository!r} names no registry: write it as "
            f"`registry.example.com/{repository}`, or set `[aegis-publish].registry`"
        )
    return f"{registry.rstrip('/')}/{repository}"


@rule(desc="Preparing to publish a model image")
async def publish_model(request: PublishModelRequest, publish: PublishSubsystem, aegis: AegisSubsystem) -> PublishProcesses:
    fs = request.field_set
    target = f"{target_repository(fs, publish.registry)}:{fs.version.value}"
    (package,) = request.packages
    image = built_model_image(package)
    output_path = image.output_path
    # The lockfiles as `package` read them: Pants memoises the read within this run.
    locks = {f.path: f.content for f in await Get(DigestContents, PathGlobs(image.lockfiles))}
    materials = [
        *({"uri": path, "sha256": hashlib.sha256(locks[path]).hexdigest()} for path in image.lockfiles),
        *({"uri": f"oci-layer:debian-base{':' + platform if image.is_index else ''}",
           "sha256": digest.split(":", 1)[1]} for platform, digest in image.base_layers),
        *(dict(f) for f in (image.registry["files"] if image.registry else ())),
    ]
    # The facts of the SLSA provenance (core/publish/provenance.py makes the predicate of them).
    facts = {
        "builder_id": BUILDER_ID,
        "target": str(fs.address),
        "version": fs.version.value,
        "source_url": aegis.source_url or "",
        "git_sha": image.git_sha,
        "materials": materials,
        "invocation": ["pants", "publish", str(fs.address)],
        "training_run": image.registry,
    }
    provenance_digest = await Get(
        Digest, CreateDigest([FileContent("provenance.json", json.dumps(facts, sort_keys=True, default=thaw).encode())])
    )
    tool, environment = await MultiGet(
        Get(CoreToolPex, CoreToolPexRequest(CoreTool.PUBLISH, publish.resolve)),
        Get(EnvironmentVars, EnvironmentVarsRequest(PASSED_ENV)),
    )
    sboms = [f"{platform + '=' if image.is_index else ''}{image.platform_output_path(platform)}/sbom.cdx.json"
             for platform, _ in image.platforms]
    argv = [
        "--layout", f"{output_path}/oci", "--target", target, *(a for sbom in sboms for a in ("--sbom", sbom)),
        "--provenance", "provenance.json", "--signer-identity", aegis.signer_identity,
        "--signing", publish.signing.value,
        *(["--allow-plain-http"] if publish.allow_plain_http else []),
        *(["--sigstore-staging"] if publish.sigstore_staging else []),
    ]
    process = await Get(
        Process,
        VenvPexProcess(
            tool.pex,
            argv=argv,
            input_digest=await Get(Digest, MergeDigests([package.digest, provenance_digest])),
            description=f"Publishing {target}",
        ),
    )
    secrets = dict(environment)
    key_file = secrets.get("AEGIS_SIGNING_KEY_FILE")
    if key_file:  # the process runs in a temporary directory: a relative path means the repository's
        secrets["AEGIS_SIGNING_KEY_FILE"] = os.path.join(get_buildroot(), key_file)
    interactive = InteractiveProcess(
        argv=process.argv,
        env={**process.env, **secrets},
        input_digest=process.input_digest,
        append_only_caches=process.append_only_caches,
        immutable_input_digests=process.immutable_input_digests,
    )
    names = (target, *([f"{target}{REF_NAME_SUFFIX}"] if image.model_artifact_digest else []))
    return PublishProcesses([PublishPackages(names=names, process=interactive, description=target)])


def rules():
    return [*collect_rules(), *PublishModelFieldSet.rules()]
