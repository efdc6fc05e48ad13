"""Verify a published image offline: its signature (against a public key, or keyless: a certificate for an
expected identity and OIDC issuer, recorded in a trusted transparency log), the attestations it must carry,
that every one of them is about this very digest, and the weights' own model signature. What a deployment
checks before it runs a model.

Anyone who can push to the repository can add layers to the `.sig`, `.att` and `.msig` images. So each
layer is one entry judged on its own: one that is unreadable, of the wrong shape, badly signed or about
another image is skipped (a warning naming the layer's digest, when verification passes) and cannot block
the valid ones; verification passes if and only if the required signature, attestations and model signature
verify. Everything is read once: `Verified` holds the very bytes that were checked, for `promote` to copy.

An image index (one image for several platforms) verifies when it has its own signature and attestations and
every platform's image it lists verifies in full, model signature included: a runtime pulls the platform's
digest, and a deployment that checked only the index would trust images nobody checked.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.oci.layout import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, platform_of
from aegis_plugin.core.publish import model_signature
from aegis_plugin.core.registry.client import Registry
from aegis_plugin.core.registry.reference import Reference
from aegis_plugin.core.registry.transport import RegistryError
from aegis_plugin.core.sign import cosign, dsse
from aegis_plugin.core.sign.identity import IdentityError, TrustedRoot, verify_signer
from aegis_plugin.core.sign.tlog import LogEntry, LogEntryError

REQUIRED_ATTESTATIONS = (dsse.CYCLONEDX, dsse.SLSA_PROVENANCE_V1)
SUFFIXES = ("sig", "att", model_signature.SUFFIX)
# What reading an untrusted entry can raise (JSON, base64 and UTF-8 errors are ValueErrors).
_UNREADABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, UnsupportedAlgorithm,
               InvalidSignature, IdentityError, LogEntryError)


class VerificationError(AegisError):
    """Why the image must not be trusted, in one line."""


@dataclass(frozen=True)
class Skipped:
    """An entry that does not count and why, in one line. `layer` names it: its position (from 1) and digest
    (several layers may share a digest and differ in their annotations); None for the whole manifest."""

    layer: Optional[str]
    reason: str


@dataclass(frozen=True)
class Attached:
    """A `.sig`, `.att` or `.msig` image exactly as verify read it (by tag, once): its manifest and blobs."""

    tag: str
    media_type: str
    manifest: bytes
    blobs: Dict[str, bytes]  # config and layers, by digest (each checked against its digest when read)
    layers: List[Tuple[int, cosign.Layer]]  # the entries that could be read, with their positions (from 1)
    unreadable: List[Skipped]  # the others

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


@dataclass
class Verified:
    digest: str
    signed_by: Optional[str]
    attestations: Dict[str, dict]  # predicate type -> predicate
    image: Tuple[str, bytes]  # the image's manifest (media type, bytes), read by its digest
    attached: Dict[str, Attached]  # suffix -> the `.sig`, `.att`, `.msig` images verified
    platforms: List[Tuple[str, "Verified"]] = field(default_factory=list)  # an image index's images

    @property
    def is_index(self) -> bool:
        return bool(self.platforms)


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


class _Invalid(Exception):
    """Why one entry does not count, in one line."""


def _warn_on_stderr(line: str) -> None:
    print(f"aegis: warning: {line}", file=sys.stderr)


def verify(registry: Registry, ref: Reference, policy: Policy, required: Sequence[str] = REQUIRED_ATTESTATIONS,
           warn: Callable[[str], None] = _warn_on_stderr) -> Verified:
    """Raises VerificationError (one line, with the reasons) unless the image (or image index) verifies;
    then `warn`s once per skipped entry and returns what was verified."""
    warnings: List[str] = []
    with tempfile.TemporaryDirectory(prefix="aegis-verify-") as work:
        verified = _verify(registry, ref, policy, required, warnings, _LayerFiles(registry, ref.repository, work),
                           index_allowed=True)
    for line in warnings:
        warn(line)
    return verified


class _LayerFiles:
    """Layer blobs downloaded into `directory` for the model signature checks, each once: the platforms of an
    index share their model's layers (gigabytes of weights)."""

    def __init__(self, registry: Registry, repository: str, directory: str) -> None:
        self.registry, self.repository, self.directory = registry, repository, directory
        self._downloaded: Dict[str, str] = {}

    def path(self, digest: str) -> str:
        if digest not in self._downloaded:
            path = os.path.join(self.directory, digest.replace(":", "-"))
            self.registry.download_blob(self.repository, digest, path)
            self._downloaded[digest] = path
        return self._downloaded[digest]


def _verify(registry: Registry, ref: Reference, policy: Policy, required: Sequence[str], warnings: List[str],
            layer_files: _LayerFiles, index_allowed: bool) -> Verified:
    """`verify`, adding its warnings to `warnings`; an index's platforms are verified with `index_allowed` False."""
    if not ref.digest:
        raise VerificationError(f"{ref}: verify an image by digest (REPOSITORY@sha256:...), never by tag")
    digest, repository = ref.digest, ref.repository
    image = registry.get_manifest(repository, digest)
    if image is None:
        raise VerificationError(f"{ref}: no such image in the registry")
    children = _index_entries(ref, image[0], image[1])
    if children is not None and not index_allowed:
        raise VerificationError(f"{ref}: an image index, not an image: an image index may list only images")
    sig = _read_attached(registry, repository, cosign.tag_for(digest, "sig"))
    att = _read_attached(registry, repository, cosign.tag_for(digest, "att"))
    # An index carries no model files, so no model signature: one attached to it would be checked by nobody.
    msig = None if children is not None else _read_attached(registry, repository,
                                                            cosign.tag_for(digest, model_signature.SUFFIX))

    if sig is None:
        raise VerificationError(f"{ref}: no signature is attached ({cosign.tag_for(digest, 'sig')} does not exist)")
    signers, skipped = _judge(sig, lambda layer: _signature(policy, digest, layer))
    if not signers:
        raise VerificationError(f"{ref}: no valid signature: {_summary(skipped)}")
    warnings += [_warning(ref, sig.tag, s) for s in skipped]

    found: Dict[str, dict] = {}
    attestations, skipped = _judge(att, lambda layer: _attestation(policy, digest, layer)) if att else ([], [])
    for predicate_type, predicate in attestations:
        found.setdefault(predicate_type, predicate)
    missing = [t for t in required if t not in found]
    if missing:
        why = f" (skipped: {_summary(skipped)})" if skipped else ""
        raise VerificationError(f"{ref}: missing signed attestation(s): {', '.join(missing)}{why}")
    if att:
        warnings += [_warning(ref, att.tag, s) for s in skipped]

    platforms = []
    if children is not None:  # the model files are in the platforms' images, each verified in full
        for platform, child in children:
            try:
                platforms.append((platform, _verify(registry, ref.with_digest(child), policy, required,
                                                    warnings, layer_files, index_allowed=False)))
            except VerificationError as e:
                raise VerificationError(f"{ref}: the image index's {platform} image does not verify: {e}") from None
    elif msig is None:
        raise VerificationError(f"{ref}: no model signature is attached "
                                f"({cosign.tag_for(digest, model_signature.SUFFIX)} does not exist)")
    else:
        skipped = _verify_model_signature(ref, image[1], policy, msig, layer_files)
        warnings += [_warning(ref, msig.tag, s) for s in skipped]
    attached = {suffix: a for suffix, a in zip(SUFFIXES, (sig, att, msig)) if a is not None}
    return Verified(digest, signers[0], found, image[:2], attached, platforms)


def _index_entries(ref: Reference, media_type: str, manifest: bytes) -> Optional[List[Tuple[str, str]]]:
    """(platform, digest) of each image an image index lists, each once; None for an image's manifest."""
    try:
        data = _json_object(manifest, "the manifest")
        if not {media_type.split(";")[0].strip(), data.get("mediaType")} & set(INDEX_MEDIA_TYPES):
            return None
        entries: Dict[str, str] = {}
        for entry in _member(data, "manifests", list):
            if _member(entry, "mediaType", str) not in MANIFEST_MEDIA_TYPES:
                raise _Invalid(f"it lists a {entry['mediaType']!r}, not an image manifest")
            _member(entry, "platform", dict)
            entries.setdefault(_digest_of(entry), platform_of(entry))
    except _Invalid as e:
        raise VerificationError(f"{ref}: not a readable image index: {e}") from None
    if not entries:
        raise VerificationError(f"{ref}: the image index lists no image")
    return [(platform, digest) for digest, platform in entries.items()]


def _judge(attached: Attached, check: Callable[[cosign.Layer], Any]) -> Tuple[List[Any], List[Skipped]]:
    """`check` on each readable layer: (what the valid ones gave, the skipped entries)."""
    valid, skipped = [], list(attached.unreadable)
    for position, layer in attached.layers:
        try:
            valid.append(check(layer))
        except _Invalid as e:
            skipped.append(Skipped(f"#{position} {layer.digest}", str(e)))
    return valid, skipped


def _warning(ref: Reference, tag: str, skipped: Skipped) -> str:
    where = f"layer {skipped.layer}" if skipped.layer else "the manifest"
    return f"{ref}: skipped {where} of {tag}: {skipped.reason}"


def _summary(skipped: List[Skipped]) -> str:
    """The reasons, each once, with the layers it applies to: one line for an error."""
    layers: Dict[str, List[str]] = {}
    for s in skipped:
        layers.setdefault(s.reason, []).append(s.layer or "the manifest")
    if not layers:
        return "it has no layers"
    return "; ".join(f"{reason} ({'layer' if len(names) == 1 else 'layers'} {', '.join(names)})"
                     for reason, names in layers.items())


def _signature(policy: Policy, digest: str, layer: cosign.Layer) -> Optional[str]:
    """The `signed_by` of a valid simple-signing layer for `digest`."""
    _check_signature(policy, layer, layer.annotations.get(cosign.SIGNATURE_ANNOTATION), layer.data)
    payload = _json_object(layer.data, "the signed payload")
    image = _member(_member(payload, "critical", dict), "image", dict)
    if image.get("docker-manifest-digest") != digest:
        raise _Invalid("a valid signature is for another digest")
    optional = payload.get("optional") or {}
    signer = optional.get("signed_by") if isinstance(optional, dict) else None
    if signer is not None and not isinstance(signer, str):
        raise _Invalid("the signed payload's signed_by is not a string")
    if policy.identity is not None and signer != policy.identity:
        raise _Invalid(f"signed by {signer!r}, not {policy.identity!r}")
    return signer


def _attestation(policy: Policy, digest: str, layer: cosign.Layer) -> Tuple[str, dict]:
    """(predicate type, predicate) of a DSSE layer signed per `policy` whose statement is about `digest`."""
    envelope = _json_object(layer.data, "the DSSE envelope")
    payload_type = _member(envelope, "payloadType", str)
    if payload_type != dsse.PAYLOAD_TYPE:
        raise _Invalid(f"not an in-toto attestation (payloadType {payload_type!r})")
    payload = _base64(_member(envelope, "payload", str), "the envelope's payload")
    problems = []
    for signature in _member(envelope, "signatures", list):
        try:
            _check_signature(policy, layer, signature.get("sig") if isinstance(signature, dict) else None,
                             dsse.pae(payload_type, payload))
            break
        except _Invalid as e:
            problems.append(str(e))
    else:
        raise _Invalid("; ".join(sorted(set(problems))) or "the envelope has no signature")
    statement = _json_object(payload, "the statement")
    predicate_type = _member(statement, "predicateType", str)
    subjects = {f"sha256:{_member(s, 'digest', dict).get('sha256')}" for s in _member(statement, "subject", list)}
    if digest not in subjects:
        raise _Invalid(f"the {predicate_type} attestation is about {sorted(subjects)}, not this digest")
    return predicate_type, _member(statement, "predicate", dict)


def _check_signature(policy: Policy, layer: cosign.Layer, signature_b64: Any, signed: bytes) -> None:
    """Raises _Invalid unless `signature_b64` over `signed` (from `layer`) satisfies `policy`."""
    if not isinstance(signature_b64, str) or not signature_b64:
        raise _Invalid("a signature is missing")
    signature = _base64(signature_b64, "a signature")
    if isinstance(policy, KeyPolicy):
        key, which = policy.key, "this key"
    else:
        certificate_pem = layer.annotations.get(cosign.CERTIFICATE_ANNOTATION)
        log_annotation = layer.annotations.get(cosign.BUNDLE_ANNOTATION)
        if not certificate_pem or not log_annotation:
            raise _Invalid("a signature has no keyless certificate or transparency-log entry")
        try:
            entry = LogEntry.from_cosign(log_annotation)
            certificate = verify_signer(policy.trust, certificate_pem.encode(), entry, policy.identity, policy.issuer)
            if entry.signed_hash() != hashlib.sha256(layer.data).hexdigest():
                raise _Invalid("a transparency-log entry is about other content")
            key, which = certificate.public_key(), "its certificate"
        except _UNREADABLE as e:
            raise _Invalid(_reason(e)) from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise _Invalid("a signing certificate has no ECDSA key")
    try:
        key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise _Invalid(f"a signature does not verify with {which}") from None


def _verify_model_signature(ref: Reference, manifest: bytes, policy: Policy, msig: Attached,
                            layer_files: _LayerFiles) -> List[Skipped]:
    """One of the `.msig` layers, the weights' OpenSSF model signature, must sign exactly the model files of
    this image. Returns the layers skipped. Layers are downloaded as the model is searched for, top first."""
    with tempfile.TemporaryDirectory(prefix="model-", dir=layer_files.directory) as work:
        try:
            model_dir = model_signature.model_dir_of(work)
            model_signature.extract_model(manifest, layer_files.path, model_dir)
        except model_signature.ModelSignatureError as e:
            raise VerificationError(f"{ref}: {e}") from None
        valid, skipped = _judge(msig, lambda layer: _check_model_signature(model_dir, layer.data, policy))
    if not valid:
        raise VerificationError(f"{ref}: no valid model signature: {_summary(skipped)}")
    return skipped


def _check_model_signature(model_dir: str, bundle: bytes, policy: Policy) -> None:
    try:
        if isinstance(policy, KeylessPolicy):
            model_signature.verify_keyless(model_dir, bundle, policy.trust, policy.identity, policy.issuer)
        else:
            public_pem = policy.key.public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
            model_signature.verify(model_dir, bundle, public_pem)
    except model_signature.ModelSignatureError as e:
        raise _Invalid(_one_line(str(e))) from None
    except _UNREADABLE as e:
        raise _Invalid(f"the model signature does not verify ({_reason(e)})") from None


def _read_attached(registry: Registry, repository: str, tag: str) -> Optional[Attached]:
    """The image tagged `tag`, read once; None if there is none. Layers that cannot be read are skipped."""
    found = registry.get_manifest(repository, tag)
    if found is None:
        return None
    media_type, manifest, _ = found
    try:
        data = _json_object(manifest, "the manifest")
        config = _digest_of(_member(data, "config", dict))
        descriptors = _member(data, "layers", list)
    except _Invalid as e:
        return Attached(tag, media_type, manifest, {}, [], [Skipped(None, str(e))])
    blobs = {config: registry.get_blob(repository, config)}
    layers, unreadable = [], []
    for position, descriptor in enumerate(descriptors, 1):
        try:
            layer_digest = _digest_of(descriptor)
            annotations = descriptor.get("annotations") or {}
            if not isinstance(annotations, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
                raise _Invalid("its annotations are not strings")
            blobs[layer_digest] = registry.get_blob(repository, layer_digest)
            layers.append((position, cosign.Layer(str(descriptor.get("mediaType", "")), blobs[layer_digest],
                                                  annotations)))
        except (_Invalid, RegistryError) as e:
            name = descriptor.get("digest") if isinstance(descriptor, dict) else None
            unreadable.append(Skipped(f"#{position} {name[:80] if isinstance(name, str) else '(no digest)'}",
                                      _reason(e)))
    return Attached(tag, media_type, manifest, blobs, layers, unreadable)


def _digest_of(descriptor: Any) -> str:
    digest = _member(descriptor, "digest", str)
    algorithm, _, hex_digest = digest.partition(":")
    if algorithm != "sha256" or len(hex_digest) != 64 or any(c not in "0123456789abcdef" for c in hex_digest):
        raise _Invalid(f"not a sha256 digest: {digest[:80]!r}")
    return digest


_KINDS = {dict: "an object", list: "a list", str: "a string"}


def _member(value: Any, key: str, kind: type) -> Any:
    if not isinstance(value, dict) or not isinstance(value.get(key), kind):
        raise _Invalid(f"{key!r} is missing or not {_KINDS[kind]}")
    return value[key]


def _json_object(data: bytes, what: str) -> Mapping[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise _Invalid(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise _Invalid(f"{what} is not a JSON object")
    return value


def _base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise _Invalid(f"{what} is not base64") from None


def _reason(error: Exception) -> str:
    if isinstance(error, (_Invalid, IdentityError, LogEntryError, RegistryError)):
        return _one_line(str(error))
    return _one_line(f"unreadable ({type(error).__name__}: {error})")


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 300 else line[:297] + "..."
