"""Who signs: a key the publisher holds, or (keyless) the CI's OIDC identity through Sigstore.

Both give the same two operations, so the cosign layers, the attestations and the model signature are made
one way: `sign_payload` signs bytes (ECDSA P-256, SHA-256) and `sign_statement` signs an in-toto statement
in a DSSE envelope. A keyless signature also carries its short-lived Fulcio certificate (which names the
identity) and its Rekor transparency-log entry, the proof that it was made while the certificate was valid.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Protocol, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aegis_plugin.core.errors import AegisError
from aegis_plugin.core.sign import dsse, keys, sigstore_internals
from aegis_plugin.core.sign.tlog import LogEntry


class SigningError(AegisError):
    pass


@dataclass(frozen=True)
class Signed:
    """A signature and, when keyless, what proves who made it."""

    signature: bytes  # DER ECDSA; empty for a DSSE envelope, which holds its own
    certificate: Optional[bytes] = None  # PEM of the Fulcio certificate
    chain: Optional[bytes] = None  # PEM of its issuing CA certificates, up to the root
    log_entry: Optional[LogEntry] = None


class Signer(Protocol):
    def sign_payload(self, payload: bytes) -> Signed: ...

    def sign_statement(self, statement: bytes) -> Tuple[bytes, Signed]:
        """(the DSSE envelope as stored, its verification material)."""


class KeySigner:
    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self.key = key

    def sign_payload(self, payload: bytes) -> Signed:
        return Signed(keys.sign(self.key, payload))

    def sign_statement(self, statement: bytes) -> Tuple[bytes, Signed]:
        return dsse.envelope(statement, self.key), Signed(b"")


class SigstoreSession(Protocol):
    """What `sigstore.sign.Signer` offers (and the tests' local Sigstore): sign, get a Sigstore bundle back."""

    def sign_artifact(self, input_: bytes) -> Any: ...

    def sign_dsse(self, input_: Any) -> Any: ...


class KeylessSigner:
    """Signs through a Sigstore session: a Fulcio certificate for the identity token, an entry in Rekor for
    every signature. `chain` is the PEM of the Fulcio CA certificates (cosign attaches it beside the
    certificate)."""

    def __init__(self, session: SigstoreSession, chain: bytes) -> None:
        self.session = session
        self.chain = chain

    def sign_payload(self, payload: bytes) -> Signed:
        bundle = json.loads(_logged(self.session.sign_artifact, payload).to_json())
        signature = base64.b64decode(bundle["messageSignature"]["signature"])
        return self._signed(bundle, signature, hashlib.sha256(payload).hexdigest())

    def sign_statement(self, statement: bytes) -> Tuple[bytes, Signed]:
        from sigstore.dsse import Statement  # only a keyless publish needs sigstore loaded

        bundle_object = _logged(self.session.sign_dsse, Statement(statement))
        bundle = json.loads(bundle_object.to_json())
        envelope = sigstore_internals.dsse_envelope_bytes(bundle_object)
        return envelope, self._signed(bundle, b"", hashlib.sha256(envelope).hexdigest())

    def _signed(self, bundle: Mapping[str, Any], signature: bytes, logged_hash: str) -> Signed:
        certificate = leaf_certificate(bundle)
        entry = LogEntry.from_bundle(bundle)
        if entry.signed_hash() != logged_hash:
            raise SigningError("the transparency log entry is not about what was signed")
        return Signed(signature, certificate.public_bytes(serialization.Encoding.PEM), self.chain, entry)


def _logged(sign: Any, content: Any) -> Any:
    """Runs one Sigstore signing call (it writes to the transparency log), with its errors in one line."""
    from sigstore.errors import Error

    try:
        return sign(content)
    except Error as e:
        raise SigningError(f"keyless signing: Sigstore refused or could not be reached: {e}") from None


def leaf_certificate(bundle: Mapping[str, Any]) -> x509.Certificate:
    """The signing certificate of a Sigstore bundle (v0.3 `certificate`, or the first of v0.1/v0.2's chain)."""
    material = bundle["verificationMaterial"]
    raw = (material.get("certificate") or material["x509CertificateChain"]["certificates"][0])["rawBytes"]
    return x509.load_der_x509_certificate(base64.b64decode(raw))
