"""Signatures and attestations as cosign stores them in a registry (its "tag schema").

For an image `repo@sha256:<hex>`, cosign keeps an OCI image tagged `sha256-<hex>.sig` whose layers are
simple-signing payloads (media type `application/vnd.dev.cosign.simplesigning.v1+json`), each signature in
the layer's `dev.cosignproject.cosign/signature` annotation (base64 DER ECDSA); and one tagged
`sha256-<hex>.att` whose layers are DSSE envelopes (`application/vnd.dsse.envelope.v1+json`) annotated with
their `predicateType`. Registries without the OCI 1.1 referrers API (docker-registry 2.8) need exactly this.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from aegis_plugin.core.sign import dsse
from aegis_plugin.core.sign.signer import Signed, Signer

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
# Keyless signatures: the Fulcio certificate, its CA chain and the Rekor entry (cosign's names).
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
# cosign's empty-image config times (Go's zero time), so the same layers always give the same image.
_ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True)
class Layer:
    media_type: str
    data: bytes
    annotations: Mapping[str, str]

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Artifact:
    """A small image to push: its blobs by digest and its manifest."""

    blobs: Dict[str, bytes]
    manifest: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


def tag_for(image_digest: str, suffix: str) -> str:
    """`sha256:abc…` -> `sha256-abc….sig` (suffix "sig") or `….att` (suffix "att")."""
    return image_digest.replace(":", "-") + "." + suffix


def simple_signing_payload(docker_reference: str, image_digest: str,
                           optional: Optional[Mapping[str, str]] = None) -> bytes:
    return json.dumps({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": image_digest},
            "type": "cosign container image signature",
        },
        "optional": dict(optional) if optional else None,
    }, sort_keys=True, separators=(",", ":")).encode()


def signature_layer(docker_reference: str, image_digest: str, signer: Signer,
                    optional: Optional[Mapping[str, str]] = None) -> Layer:
    payload = simple_signing_payload(docker_reference, image_digest, optional)
    return Layer(SIMPLE_SIGNING, payload, annotations(signer.sign_payload(payload)))


def attestation_layer(docker_reference: str, image_digest: str, predicate_type: str,
                      predicate: Mapping[str, object], signer: Signer, also: Sequence[str] = ()) -> Layer:
    statement = dsse.statement(docker_reference, image_digest, predicate_type, predicate, also)
    envelope, signed = signer.sign_statement(statement)
    return Layer(DSSE_ENVELOPE, envelope, {**annotations(signed), "predicateType": predicate_type})


def annotations(signed: Signed) -> Dict[str, str]:
    """cosign's layer annotations for a signature (with a keyless signer's certificate, chain and log entry)."""
    found = {SIGNATURE_ANNOTATION: base64.b64encode(signed.signature).decode()}
    if signed.certificate:
        found[CERTIFICATE_ANNOTATION] = signed.certificate.decode()
    if signed.chain:
        found[CHAIN_ANNOTATION] = signed.chain.decode()
    if signed.log_entry:
        found[BUNDLE_ANNOTATION] = signed.log_entry.cosign_annotation()
    return found


def artifact(layers: List[Layer], subject: Optional[Mapping[str, object]] = None) -> Artifact:
    """The image holding `layers` (existing ones first, as cosign appends), with cosign's config. `subject`
    (the signed image's descriptor) makes registries with the OCI 1.1 referrers API list it as a referrer of
    the image; the others ignore it and find it by its tag."""
    config = json.dumps({
        "architecture": "", "os": "", "created": _ZERO_TIME, "config": {},
        "history": [{"created": _ZERO_TIME} for _ in layers],
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
    }, sort_keys=True, separators=(",", ":")).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "size": len(config), "digest": config_digest},
        "layers": [{"mediaType": layer.media_type, "size": len(layer.data), "digest": layer.digest,
                    "annotations": dict(layer.annotations)} for layer in layers],
        **({"subject": dict(subject)} if subject else {}),
    }, sort_keys=True, separators=(",", ":")).encode()
    blobs = {config_digest: config, **{layer.digest: layer.data for layer in layers}}
    return Artifact(blobs, manifest)


def existing_layers(manifest: bytes, fetch_blob) -> List[Layer]:
    """The layers of a `.sig`/`.att` image already in the registry, so new ones are appended, not lost."""
    data = json.loads(manifest)
    return [Layer(d["mediaType"], fetch_blob(d["digest"]), d.get("annotations") or {}) for d in data["layers"]]


def merged(existing: List[Layer], new: Layer) -> Tuple[List[Layer], bool]:
    """`existing` plus `new` unless an identical layer is there already (then nothing changes)."""
    if any(layer.digest == new.digest and dict(layer.annotations) == dict(new.annotations) for layer in existing):
        return existing, False
    return [*existing, new], True
