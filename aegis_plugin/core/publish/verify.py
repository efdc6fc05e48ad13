"""Verify a published image offline: its signature (against a public key, or keyless: a certificate for an
expected identity and OIDC issuer, recorded in a trusted transparency log), the attestations it must carry,
that every one of them is about this very digest, and the weights' own model signature. What a deployment
checks before it runs a model."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aegis_plugin.core.publish import model_signature
from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.reference import Reference
from aegis_plugin.core.sign import cosign, dsse
from aegis_plugin.core.sign.identity import IdentityError, TrustedRoot, verify_signer
from aegis_plugin.core.sign.tlog import LogEntry, LogEntryError

REQUIRED_ATTESTATIONS = (dsse.CYCLONEDX, dsse.SLSA_PROVENANCE_V1)


class VerificationError(Exception):
    """Why the image must not be trusted, in one line."""


@dataclass
class Verified:
    digest: str
    signed_by: Optional[str]
    attestations: Dict[str, dict] = field(default_factory=dict)  # predicate type -> predicate


def load_public_key(data: bytes, origin: str) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise VerificationError(f"{origin}: not a PEM public key ({e})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerificationError(f"{origin}: expected an ECDSA public key (what cosign generates)")
    return key


@dataclass(frozen=True)
class KeyPolicy:
    """Signed with this key (and, when `identity` is set, naming it as `signed_by`)."""

    key: ec.EllipticCurvePublicKey
    identity: Optional[str] = None


@dataclass(frozen=True)
class KeylessPolicy:
    """Signed keyless by `identity`, vouched for by `issuer`, under the CAs and logs of `trust`."""

    trust: TrustedRoot
    identity: str
    issuer: str


Policy = Union[KeyPolicy, KeylessPolicy]


def _valid(key: ec.EllipticCurvePublicKey, signature_b64: str, data: bytes) -> bool:
    try:
        key.verify(base64.b64decode(signature_b64), data, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False


def _signature_problem(policy: Policy, layer: cosign.Layer, signature_b64: str, signed: bytes) -> Optional[str]:
    """Why `signature_b64` over `signed` (from `layer`) does not satisfy `policy`; None when it does."""
    if isinstance(policy, KeyPolicy):
        return None if _valid(policy.key, signature_b64, signed) else "a signature does not verify with this key"
    certificate_pem = layer.annotations.get(cosign.CERTIFICATE_ANNOTATION, "").encode()
    log_annotation = layer.annotations.get(cosign.BUNDLE_ANNOTATION)
    if not certificate_pem or not log_annotation:
        return "a signature has no keyless certificate or transparency-log entry"
    try:
        entry = LogEntry.from_cosign(log_annotation)
        certificate = verify_signer(policy.trust, certificate_pem, entry, policy.identity, policy.issuer)
        if entry.signed_hash() != hashlib.sha256(layer.data).hexdigest():
            return "a transparency-log entry is about other content"
    except (IdentityError, LogEntryError, ValueError) as e:
        return str(e)
    key = certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return None if _valid(key, signature_b64, signed) else "a signature does not verify with its certificate"


def verify(registry: Registry, ref: Reference, policy: Policy,
           required: Sequence[str] = REQUIRED_ATTESTATIONS) -> Verified:
    if not ref.digest:
        raise VerificationError(f"{ref}: verify an image by digest (REPOSITORY@sha256:...), never by tag")
    digest, repository = ref.digest, ref.repository
    if registry.get_manifest(repository, digest) is None:
        raise VerificationError(f"{ref}: no such image in the registry")
    signatures = _layers(registry, repository, digest, "sig")
    if not signatures:
        raise VerificationError(f"{ref}: no signature is attached ({cosign.tag_for(digest, 'sig')} does not exist)")
    signed_by: Optional[str] = None
    problems = []
    identity = policy.identity
    for layer in signatures:
        problem = _signature_problem(policy, layer, layer.annotations.get(cosign.SIGNATURE_ANNOTATION, ""), layer.data)
        if problem:
            problems.append(problem)
            continue
        payload = json.loads(layer.data)
        if payload["critical"]["image"]["docker-manifest-digest"] != digest:
            problems.append("a valid signature is for another digest")
            continue
        signer = (payload.get("optional") or {}).get("signed_by")
        if identity is not None and signer != identity:
            problems.append(f"signed by {signer!r}, not {identity!r}")
            continue
        signed_by = signer
        break
    else:
        raise VerificationError(f"{ref}: no valid signature: {'; '.join(sorted(set(problems)))}")

    found: Dict[str, dict] = {}
    for layer in _layers(registry, repository, digest, "att"):
        envelope = json.loads(layer.data)
        payload = base64.b64decode(envelope["payload"])
        if all(_signature_problem(policy, layer, s.get("sig", ""), dsse.pae(envelope["payloadType"], payload))
               for s in envelope.get("signatures", [])):
            continue
        statement = json.loads(payload)
        subjects = {f"sha256:{s['digest'].get('sha256')}" for s in statement.get("subject", [])}
        if digest not in subjects:
            raise VerificationError(
                f"{ref}: the {statement.get('predicateType')} attestation is about {sorted(subjects)}, not this digest"
            )
        found[statement["predicateType"]] = statement["predicate"]
    missing = [t for t in required if t not in found]
    if missing:
        raise VerificationError(f"{ref}: missing signed attestation(s): {', '.join(missing)}")
    _verify_model_signature(registry, ref, policy)
    return Verified(digest, signed_by, found)


def _verify_model_signature(registry: Registry, ref: Reference, policy: Policy) -> None:
    """The weights' OpenSSF model signature must sign exactly the model files of this image."""
    digest, repository = ref.digest or "", ref.repository
    bundles = _layers(registry, repository, digest, model_signature.SUFFIX)
    if not bundles:
        raise VerificationError(f"{ref}: no model signature is attached "
                                f"({cosign.tag_for(digest, model_signature.SUFFIX)} does not exist)")
    _, manifest, _ = registry.get_manifest(repository, digest)  # type: ignore[misc]
    with tempfile.TemporaryDirectory(prefix="aegis-verify-") as work:

        def layer_file(layer_digest: str) -> str:  # downloaded as the model is searched for, top layer first
            path = os.path.join(work, layer_digest.replace(":", "-"))
            registry.download_blob(repository, layer_digest, path)
            return path

        try:
            model_dir = model_signature.model_dir_of(work)
            model_signature.extract_model(manifest, layer_file, model_dir)
            if isinstance(policy, KeylessPolicy):
                model_signature.verify_keyless(model_dir, bundles[-1].data, policy.trust, policy.identity,
                                               policy.issuer)
            else:
                public_pem = policy.key.public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
                model_signature.verify(model_dir, bundles[-1].data, public_pem)
        except model_signature.ModelSignatureError as e:
            raise VerificationError(f"{ref}: {e}") from None


def _layers(registry: Registry, repository: str, digest: str, suffix: str) -> List[cosign.Layer]:
    manifest = registry.get_manifest(repository, cosign.tag_for(digest, suffix))
    if manifest is None:
        return []
    return cosign.existing_layers(manifest[1], lambda d: registry.get_blob(repository, d))
