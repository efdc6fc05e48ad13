"""Publish one packaged model image, and the ModelPack artifact `package` wrote beside it:

    python -m aegis_plugin.core.publish.cli --layout DIR --target REGISTRY/REPO:VERSION \
        --sbom [PLATFORM=]sbom.cdx.json --provenance provenance-facts.json --signer-identity ID \
        [--signing key|keyless] [--allow-plain-http]

In this order, so that a failure anywhere leaves no version tag on anything incomplete: check the tag is
free (or already this digest), push the blobs the registry lacks and the manifest by digest, attach the
signature, the attestations (CycloneDX SBOM, SLSA provenance) and the weights' OpenSSF model signature, and
only then tag the version. The artifact goes to the same repository, tagged `<version>_modelpack`: its blobs
are the image's, so only its config and manifest are uploaded; it gets its own signature, the same
attestations (whose subjects name both digests) and the same model signature.

An image index (a `model_package` of several platforms) is pushed as its platforms' manifests by digest,
then the index, as `cosign sign --recursive` sees it: the index and each platform's image get a signature.
Each platform's CycloneDX SBOM (`--sbom PLATFORM=PATH`, one per platform) is a statement about that image,
the index and the artifact, attached to each of them; the SLSA provenance names the index, every platform's
image and the artifact, and is attached to all. So `cosign verify-attestation` finds both on the index (what
a tag resolves to) and on each platform's digest (what a runtime pulls). The model signature goes on each
platform's image and the artifact, the manifests that carry the model files.

Signing (`--signing`): with a key, `AEGIS_SIGNING_KEY_FILE` (a path) or `AEGIS_SIGNING_KEY` (the PEM itself),
with `AEGIS_SIGNING_KEY_PASSWORD` for an encrypted key; keyless, the CI's OIDC identity through Sigstore (see
aegis_plugin/core/sign/keyless.py). Either way the signer identity in the signature must be the `signed_by`
of the image's manifest. Registry credentials: see aegis_plugin/core/registry/auth.py.
Exit status 2 with one `aegis: ...` line for anything the user must fix.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, replace
from typing import Callable, ContextManager, Dict, Iterator, List, Mapping, Optional, Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.oci import modelpack
from aegis_plugin.core.oci.layout import blob_path
from aegis_plugin.core.publish import model_signature, provenance
from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.push import LayoutImage, check_tag, push_image, tag_image
from aegis_plugin.core.registry.reference import Reference, parse
from aegis_plugin.core.sign import cosign, dsse, keyless, keys
from aegis_plugin.core.sign.attach import attach
from aegis_plugin.core.sign.identity import certificate_identity
from aegis_plugin.core.sign.signer import KeySigner, Signer

UNSIGNED = "unsigned"
KEY_FILE_ENV, KEY_ENV, PASSWORD_ENV = "AEGIS_SIGNING_KEY_FILE", "AEGIS_SIGNING_KEY", "AEGIS_SIGNING_KEY_PASSWORD"
_PLATFORM_SBOM = re.compile(r"(?P<platform>[a-z0-9]+/[a-z0-9_]+)=(?P<path>.+)")  # os/architecture=PATH


class PublishError(AegisError):
    pass


def signing_key(environ: Mapping[str, str]) -> Optional[ec.EllipticCurvePrivateKey]:
    path, inline = environ.get(KEY_FILE_ENV), environ.get(KEY_ENV)
    if path and inline:
        raise PublishError(f"set {KEY_FILE_ENV} or {KEY_ENV}, not both")
    if not (path or inline):
        return None
    password = environ.get(PASSWORD_ENV, "").encode() or None
    if path:
        try:
            with open(path, "rb") as f:
                return keys.load_private_key(f.read(), password, path)
        except OSError as e:
            raise PublishError(f"{KEY_FILE_ENV}: cannot read {path}: {e.strerror}") from None
    return keys.load_private_key(inline.encode(), password, KEY_ENV)


@dataclass(frozen=True)
class SigningPlan:
    """How the image will be signed, checked against its `signed_by` before anything is pushed."""

    key: Optional[ec.EllipticCurvePrivateKey] = None
    token: Optional[str] = None  # keyless: the CI's OIDC identity token


def plan_signing(args: argparse.Namespace, environ: Mapping[str, str]) -> SigningPlan:
    if args.signing == "keyless":
        if environ.get(KEY_FILE_ENV) or environ.get(KEY_ENV):
            raise PublishError(f"keyless signing is configured, but a signing key is set too: unset {KEY_FILE_ENV} "
                               f"and {KEY_ENV}, or set [aegis-publish].signing = \"key\"")
        token = keyless.identity_token(environ)
        identity = keyless.certificate_identity(keyless.claims(token))
        if identity != args.signer_identity:
            raise PublishError(
                f"keyless signing: the CI's identity is {identity!r}, but the image's manifest says signed_by "
                f"{args.signer_identity!r}: set [aegis].signer_identity to {identity!r} and package again"
            )
        return SigningPlan(token=token)
    key = signing_key(environ)
    if key is None and args.signer_identity != UNSIGNED:
        raise PublishError(
            f"the image's manifest says signed_by {args.signer_identity!r}, but no signing key is set: set "
            f"{KEY_FILE_ENV} (or {KEY_ENV}) and {PASSWORD_ENV}, or use keyless signing "
            f"([aegis-publish].signing = \"keyless\")"
        )
    if key is not None and args.signer_identity == UNSIGNED:
        raise PublishError(
            "a signing key is set, but the image's manifest says signed_by 'unsigned': set "
            "[aegis].signer_identity to the key's identity and package again"
        )
    return SigningPlan(key=key)


@contextlib.contextmanager
def open_signer(plan: SigningPlan, args: argparse.Namespace) -> Iterator[Optional[Signer]]:
    """The signer of the plan; a keyless one gets its short-lived certificate now, after the push."""
    if plan.token is not None:
        with keyless.sigstore_signer(plan.token, staging=args.sigstore_staging) as signer:
            yield signer
    else:
        yield KeySigner(plan.key) if plan.key is not None else None


def sbom_paths(values: Sequence[str], image: LayoutImage) -> Dict[str, str]:
    """The SBOM file of each of the image's platform images (by digest), from `--sbom [PLATFORM=]PATH`."""
    given: Dict[Optional[str], str] = {}
    for value in values:
        match = _PLATFORM_SBOM.fullmatch(value)
        platform, path = (match["platform"], match["path"]) if match else (None, value)
        if platform in given:
            raise PublishError(f"--sbom {value}: {'platform ' + platform if platform else 'the image'}'s SBOM "
                               f"is given twice")
        given[platform] = path
    images = image.images
    wanted = [i.platform for i in images] if image.is_index else [None]
    if sorted(given, key=str) != sorted(wanted, key=str):
        if image.is_index:
            raise PublishError(f"the image is an index over {', '.join(map(str, wanted))}: give one "
                               f"--sbom PLATFORM=PATH for each of them")
        raise PublishError("the image is of one platform: give one --sbom PATH")
    return {i.digest: given[i.platform if image.is_index else None] for i in images}


def publish(args: argparse.Namespace, environ: Mapping[str, str],
            signer_factory: Callable[..., ContextManager[Optional[Signer]]] = open_signer) -> Sequence[str]:
    target = parse(args.target)
    if not target.tag or target.digest:
        raise PublishError(f"{args.target}: the target must be REGISTRY/REPOSITORY:VERSION")
    plan = plan_signing(args, environ)
    image = LayoutImage.read(args.layout)
    sboms = sbom_paths(args.sbom, image)
    # The model's ModelPack artifact beside the image, when `package` wrote one: pushed to the same
    # repository under `<version>_modelpack`, signed and attested with the image.
    model = LayoutImage.read_artifact(args.layout, modelpack.ARTIFACT_TYPE)
    model_target = replace(target, tag=f"{target.tag}{modelpack.REF_NAME_SUFFIX}") if model else None
    registry = Registry.for_reference(target, allow_plain_http=args.allow_plain_http)
    check_tag(registry, target, image.digest)  # fail before uploading anything
    if model is not None and model_target is not None:
        check_tag(registry, model_target, model.digest)
    report = push_image(registry, image, target.with_digest(image.digest))
    lines = [f"pushed {report.summary()}"]
    if image.is_index:
        lines += [f"  {i.platform}: {i.digest}" for i in image.images]
    if model is not None and model_target is not None:
        model_report = push_image(registry, model, model_target.with_digest(model.digest))
        lines.append(f"pushed the ModelPack artifact {model_report.summary()}")
    with signer_factory(plan, args) as signer:
        if signer is not None:
            lines += sign_and_attest(registry, target, image, signer, args, sboms, model)
        else:
            lines.append("not signed: [aegis].signer_identity is 'unsigned'")
    for subject, reference in ((model, model_target), (image, target)):
        if subject is not None and reference is not None:
            created = tag_image(registry, reference, subject)
            lines.append(f"{reference} {'->' if created else 'already ->'} {subject.digest}")
    return lines


@dataclass(frozen=True)
class _Attestation:
    """One statement: about `about`, naming `others` too, attached to each of `attach_to`."""

    predicate_type: str
    predicate: dict
    about: LayoutImage
    others: List[str]
    attach_to: List[LayoutImage]


def sign_and_attest(registry: Registry, target: Reference, image: LayoutImage, signer: Signer,
                    args: argparse.Namespace, sboms: Mapping[str, str],
                    model: Optional[LayoutImage] = None) -> List[str]:
    """The signatures, the attestations and the weights' model signature (see the module's docstring), each
    attached to every manifest it is about: the image, an index's platform images, the ModelPack artifact
    (`model`). `sboms`: the CycloneDX SBOM file of each platform image, by digest."""
    index = [image] if image.is_index else []
    images = image.images
    extra = [model] if model is not None else []
    subjects = [*index, *images, *extra]
    names = {s.digest: _name(s, image, model) for s in subjects}
    lines = [_sign(registry, target, subject, signer, args.signer_identity, names[subject.digest])
             for subject in subjects]
    with open(args.provenance, encoding="utf-8") as f:
        build = provenance.predicate(**json.load(f))
    statements = []
    for platform_image in images:
        with open(sboms[platform_image.digest], encoding="utf-8") as f:
            sbom = json.load(f)
        statements.append(_Attestation(dsse.CYCLONEDX, sbom, platform_image, [s.digest for s in index + extra],
                                       [platform_image, *index, *extra]))
    statements.append(_Attestation(dsse.SLSA_PROVENANCE_V1, build, image, [s.digest for s in subjects[1:]], subjects))
    for attestation in statements:
        lines += _attest(registry, target, attestation, signer, args.signer_identity, names)
    return [*lines, *_model_signature(registry, target.repository, [*images, *extra], signer, names),
            _referrers_line(registry, target.repository, image.digest)]


def _name(subject: LayoutImage, image: LayoutImage, model: Optional[LayoutImage]) -> str:
    """How the output names a manifest that gets signatures."""
    if model is not None and subject.digest == model.digest:
        return "the ModelPack artifact"
    if subject.digest == image.digest:
        return "the image index" if image.is_index else "the image"
    return f"the {subject.platform} image"


def _attest(registry: Registry, target: Reference, attestation: _Attestation, signer: Signer, identity: str,
            names: Mapping[str, str]) -> List[str]:
    predicate_type, predicate, about = attestation.predicate_type, attestation.predicate, attestation.about
    statement = dsse.statement(target.name, about.digest, predicate_type, predicate, attestation.others)
    layer, lines = None, []
    for subject in attestation.attach_to:
        if _keyless_signed(registry, target.repository, subject.digest, "att", identity,
                           lambda found: base64.b64decode(json.loads(found.data)["payload"]) == statement):
            added = False
        else:
            layer = layer or cosign.attestation_layer(target.name, about.digest, predicate_type, predicate, signer,
                                                      attestation.others)
            added = attach(registry, target.repository, subject.descriptor, "att", layer)
        about_text = f" (about {names[about.digest]})" if about.digest != subject.digest and about.platform else ""
        lines.append(f"attestation {predicate_type}{about_text} {'attached' if added else 'already attached'} "
                     f"to {names[subject.digest]}")
    return lines


def _sign(registry: Registry, target: Reference, subject: LayoutImage, signer: Signer, identity: str,
          name: str) -> str:
    digest = subject.digest
    optional = {"signed_by": identity, "version": target.tag or ""}
    payload = cosign.simple_signing_payload(target.name, digest, optional)
    if _keyless_signed(registry, target.repository, digest, "sig", identity, lambda layer: layer.data == payload):
        added = False
    else:
        layer = cosign.signature_layer(target.name, digest, signer, optional)
        _check_certificate(layer, identity)  # before anything is attached
        added = attach(registry, target.repository, subject.descriptor, "sig", layer)
    return f"signature {'attached' if added else 'already attached'} to {name} as {cosign.tag_for(digest, 'sig')}"


def _model_signature(registry: Registry, repository: str, subjects: List[LayoutImage], signer: Signer,
                     names: Mapping[str, str]) -> List[str]:
    """The weights' own OpenSSF model signature: the model files are signed once, and the one bundle is
    attached to each manifest that carries them (every platform's image, the ModelPack artifact). Its bundle
    is not deterministic, and the digest fixes the files: one already attached stays."""
    lines, bundle = [], None
    for subject in subjects:
        model_tag = cosign.tag_for(subject.digest, model_signature.SUFFIX)
        if registry.get_manifest(repository, model_tag) is not None:
            lines.append(f"model signature already attached to {names[subject.digest]} as {model_tag}")
            continue
        if bundle is None:
            with tempfile.TemporaryDirectory(prefix="aegis-model-") as work:
                model_dir = model_signature.model_dir_of(work)
                image = subjects[0]  # an image: the platforms' images carry the same model files
                files = model_signature.extract_model(image.manifest, lambda d: blob_path(image.layout, d), model_dir)
                bundle = model_signature.sign(model_dir, signer)
        attach(registry, repository, subject.descriptor, model_signature.SUFFIX,
               cosign.Layer(model_signature.BUNDLE_MEDIA_TYPE, bundle, {}))
        lines.append(f"model signature (OpenSSF model-signing, {len(files)} files) attached to "
                     f"{names[subject.digest]} as {model_tag}")
    return lines


def _referrers_line(registry: Registry, repository: str, digest: str) -> str:
    """Signatures and attestations name the image as their `subject`: a registry with the OCI 1.1 referrers
    API lists them as its referrers; every registry (and cosign) finds them by their tags."""
    found = registry.referrers(repository, digest)
    if found is None:
        return "referrers: the registry has no OCI 1.1 referrers API; attached by cosign's tag schema"
    return f"referrers: the registry lists {len(found)} referrer(s) of the image (OCI 1.1), and the tags"


def _check_certificate(layer: cosign.Layer, identity: str) -> None:
    """A keyless signature's certificate must name the manifest's `signed_by`."""
    pem = layer.annotations.get(cosign.CERTIFICATE_ANNOTATION)
    if pem:
        found = certificate_identity(x509.load_pem_x509_certificate(pem.encode()))
        if found != identity:
            raise PublishError(f"keyless signing: the certificate names {found!r}, not signed_by {identity!r}")


def _keyless_signed(registry: Registry, repository: str, digest: str, suffix: str, identity: str,
                    same_content: Callable[[cosign.Layer], bool]) -> bool:
    """Whether a keyless signature of this content by `identity` is attached already. Keyless signatures
    differ every time (a new key each run), so a re-publish must not pile up new ones."""
    found = registry.get_manifest(repository, cosign.tag_for(digest, suffix))
    if found is None:
        return False
    for layer in cosign.existing_layers(found[1], lambda d: registry.get_blob(repository, d)):
        pem = layer.annotations.get(cosign.CERTIFICATE_ANNOTATION)
        if pem and same_content(layer) and certificate_identity(x509.load_pem_x509_certificate(pem.encode())) == identity:
            return True
    return False


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aegis-publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", required=True, help="the image's OCI layout directory")
    parser.add_argument("--target", required=True, help="REGISTRY/REPOSITORY:VERSION")
    parser.add_argument("--sbom", required=True, action="append",
                        help="the CycloneDX SBOM to attest; for an image index, PLATFORM=PATH for each platform "
                             "(e.g. linux/arm64=linux-arm64/sbom.cdx.json)")
    parser.add_argument("--provenance", required=True,
                        help="the facts of the SLSA v1 provenance to attest (provenance.predicate's arguments)")
    parser.add_argument("--signer-identity", required=True, help="the image manifest's signed_by")
    parser.add_argument("--allow-plain-http", action="store_true", help="plain HTTP to a non-loopback registry")
    parser.add_argument("--signing", choices=("key", "keyless"), default="key",
                        help="sign with a key (AEGIS_SIGNING_KEY_FILE/AEGIS_SIGNING_KEY) or keyless through Sigstore "
                             f"(the CI's OIDC identity; {keyless.TOKEN_ENV} or ambient credentials)")
    parser.add_argument("--sigstore-staging", action="store_true", help="keyless: Sigstore's staging instance")
    return parser


def main(argv: Optional[Sequence[str]] = None, environ: Mapping[str, str] = os.environ) -> int:
    args = parser().parse_args(argv)
    try:
        for line in publish(args, environ):
            print(line)
    except AegisError as e:
        print(f"aegis: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
