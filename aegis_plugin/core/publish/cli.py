"""Publish one packaged model image:

    python -m aegis_plugin.core.publish.cli --layout DIR --target REGISTRY/REPO:VERSION \
        --sbom sbom.cdx.json --provenance provenance-facts.json --signer-identity ID [--allow-plain-http]

In this order, so that a failure anywhere leaves no version tag on anything incomplete: check the tag is
free (or already this digest), push the blobs the registry lacks and the manifest by digest, attach the
signature, the attestations (CycloneDX SBOM, SLSA provenance) and the weights' OpenSSF model signature, and
only then tag the version.

Signing key: `AEGIS_SIGNING_KEY_FILE` (a path) or `AEGIS_SIGNING_KEY` (the PEM itself), with
`AEGIS_SIGNING_KEY_PASSWORD` for an encrypted key; the signer identity in the signature must be the
`signed_by` of the image's manifest. Registry credentials: see aegis_plugin/core/registry/auth.py.
Exit status 2 with one `aegis: ...` line for anything the user must fix.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Mapping, Optional, Sequence

from cryptography.hazmat.primitives.asymmetric import ec

from aegis_plugin.core.publish import model_signature, provenance
from aegis_plugin.core.registry.auth import AuthError
from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.push import (
    LayoutImage,
    TagConflictError,
    blob_path,
    check_tag,
    push_image,
    tag_image,
)
from aegis_plugin.core.registry.reference import Reference, ReferenceError, parse
from aegis_plugin.core.registry.transport import RegistryError
from aegis_plugin.core.sign import cosign, dsse, keys
from aegis_plugin.core.sign.attach import attach

UNSIGNED = "unsigned"
KEY_FILE_ENV, KEY_ENV, PASSWORD_ENV = "AEGIS_SIGNING_KEY_FILE", "AEGIS_SIGNING_KEY", "AEGIS_SIGNING_KEY_PASSWORD"


class PublishError(Exception):
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


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def publish(args: argparse.Namespace, environ: Mapping[str, str]) -> Sequence[str]:
    target = parse(args.target)
    if not target.tag or target.digest:
        raise PublishError(f"{args.target}: the target must be REGISTRY/REPOSITORY:VERSION")
    key = signing_key(environ)
    if key is None and args.signer_identity != UNSIGNED:
        raise PublishError(
            f"the image's manifest says signed_by {args.signer_identity!r}, but no signing key is set: set "
            f"{KEY_FILE_ENV} (or {KEY_ENV}) and {PASSWORD_ENV}"
        )
    if key is not None and args.signer_identity == UNSIGNED:
        raise PublishError(
            "a signing key is set, but the image's manifest says signed_by 'unsigned': set "
            "[aegis].signer_identity to the key's identity and package again"
        )
    image = LayoutImage.read(args.layout)
    registry = Registry.for_reference(target, allow_plain_http=args.allow_plain_http)
    check_tag(registry, target, image.digest)  # fail before uploading anything
    report = push_image(registry, image, target.with_digest(image.digest))
    lines = [f"pushed {report.summary()}"]
    if key is not None:
        lines += sign_and_attest(registry, target, image, key, args)
    else:
        lines.append("not signed: [aegis].signer_identity is 'unsigned'")
    created = tag_image(registry, target, image)
    lines.append(f"{target} {'->' if created else 'already ->'} {image.digest}")
    return lines


def sign_and_attest(registry: Registry, target: Reference, image: LayoutImage, key: ec.EllipticCurvePrivateKey,
                    args: argparse.Namespace) -> List[str]:
    """The signature, the two attestations and the weights' model signature, attached to the digest."""
    digest, repository = image.digest, target.repository
    optional = {"signed_by": args.signer_identity, "version": target.tag or ""}
    added = attach(registry, repository, digest, "sig", cosign.signature_layer(target.name, digest, key, optional))
    lines = [f"signature {'attached' if added else 'already attached'} as {cosign.tag_for(digest, 'sig')}"]
    with open(args.sbom, encoding="utf-8") as f:
        sbom = json.load(f)
    with open(args.provenance, encoding="utf-8") as f:
        build = provenance.predicate(**json.load(f))
    for predicate_type, predicate in ((dsse.CYCLONEDX, sbom), (dsse.SLSA_PROVENANCE_V1, build)):
        added = attach(registry, repository, digest, "att",
                       cosign.attestation_layer(target.name, digest, predicate_type, predicate, key))
        lines.append(f"attestation {predicate_type} {'attached' if added else 'already attached'}")
    # The weights' own signature. Its bundle is not deterministic, and the digest fixes the files: one
    # already attached stays.
    model_tag = cosign.tag_for(digest, model_signature.SUFFIX)
    if registry.get_manifest(repository, model_tag) is not None:
        return [*lines, f"model signature already attached as {model_tag}"]
    files = model_signature.model_files(
        _read(blob_path(image.layout, d)) for d in model_signature.layer_digests_top_first(image.manifest)
    )
    attach(registry, repository, digest, model_signature.SUFFIX,
           cosign.Layer(model_signature.BUNDLE_MEDIA_TYPE, model_signature.sign(files, key), {}))
    return [*lines, f"model signature (OpenSSF model-signing, {len(files)} files) attached as {model_tag}"]


def main(argv: Optional[Sequence[str]] = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(prog="aegis-publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", required=True, help="the image's OCI layout directory")
    parser.add_argument("--target", required=True, help="REGISTRY/REPOSITORY:VERSION")
    parser.add_argument("--sbom", required=True, help="the CycloneDX SBOM to attest")
    parser.add_argument("--provenance", required=True,
                        help="the facts of the SLSA v1 provenance to attest (provenance.predicate's arguments)")
    parser.add_argument("--signer-identity", required=True, help="the image manifest's signed_by")
    parser.add_argument("--allow-plain-http", action="store_true", help="plain HTTP to a non-loopback registry")
    args = parser.parse_args(argv)
    try:
        for line in publish(args, environ):
            print(line)
    except (PublishError, ReferenceError, RegistryError, AuthError, TagConflictError, keys.SigningKeyError,
            model_signature.ModelSignatureError) as e:
        print(f"aegis: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
